"""What the user sees of local runs: a live table on a terminal (plain lines otherwise) while one runs,
and the tables of `local list` and `local describe` afterwards."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipelines.local.engine import Execution, StepState

STYLES = {
    "Succeeded": "green", "Failed": "bold red", "Executing": "yellow", "Starting": "yellow", "Stopped": "red",
    "Skipped": "dim", "NotRun": "dim", "Pending": "dim",
}  # fmt: skip


def step_table(execution: Execution) -> Table:
    table = Table(title=f"{execution.pipeline}  execution {execution.id}  [{execution.status}]", title_justify="left")
    for column in ("step", "type", "status", "elapsed", "cache", "progress"):
        table.add_column(column, justify="right" if column == "elapsed" else "left")
    for state in execution.states.values():
        elapsed = f"{state.elapsed:.1f}s" if state.elapsed is not None else ""
        attempts = f" (attempt {len(state.attempts)})" if len(state.attempts) > 1 else ""
        table.add_row(
            state.name, state.type, f"[{STYLES.get(state.status, '')}]{state.status}[/]{attempts}", elapsed,
            "hit" if state.cache_hit else "", state.detail if state.status == "Executing" else "",
        )  # fmt: skip
    return table


class Display:
    """Call `on_change` from the engine; use as a context manager around `Execution.run`."""

    def __init__(self, console: Console | None = None, live: bool | None = None):
        self.console = console or Console()
        self.live_mode = self.console.is_terminal if live is None else live
        self.execution: Execution | None = None
        self._live: Live | None = None
        self._lock = threading.Lock()

    def attach(self, execution: Execution) -> None:
        self.execution = execution

    def __enter__(self) -> Display:
        if self.live_mode and self.execution is not None:
            execution = self.execution
            self._live = Live(get_renderable=lambda: step_table(execution), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def on_change(self, execution: Execution, state: StepState) -> None:
        if self.live_mode:
            return  # the live table redraws itself
        with self._lock:
            stamp = time.strftime("%H:%M:%S")
            extra = ""
            if state.status in ("Succeeded", "Failed", "Stopped") and state.elapsed is not None:
                extra = f" ({state.elapsed:.1f}s{', cache hit' if state.cache_hit else ''})"
            elif state.status == "Executing" and state.detail:
                extra = f": {state.detail}"
            print(f"[{stamp}] {state.name}: {state.status}{extra}", file=sys.stdout, flush=True)


def _console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=200)  # whole ids when piped


def print_executions(records: list[dict[str, Any]]) -> None:
    table = Table("execution", "pipeline", "status", "started", "failed step")
    for record in records:
        table.add_row(
            record["id"],
            record["pipeline"],
            record["status"],
            record["started"] or "",
            (record.get("failure") or {}).get("step", ""),
        )
    _console().print(table)


def print_execution(record: dict[str, Any], directory: Path | None = None) -> None:
    console = _console()
    console.print(
        f"execution {record['id']} of {record['pipeline']}: {record['status']} "
        f"(started {record['started']}, ended {record['ended']})"
    )
    console.print(f"parameters: {json.dumps(record['parameters'])}")
    table = Table("step", "type", "status", "elapsed", "cache", "attempts", "reason")
    for name, step in record["steps"].items():
        elapsed = f"{step['elapsed_seconds']:.1f}s" if step["elapsed_seconds"] is not None else ""
        table.add_row(
            name,
            step["type"],
            step["status"],
            elapsed,
            "hit" if step["cache_hit"] else "",
            str(len(step["attempts"])),
            step["failure_reason"] or "",
        )
    console.print(table)
    for name in record["steps"]:
        trials = directory / "steps" / name / "trials.json" if directory else None
        if trials and trials.exists():
            console.print(trials_table(name, json.loads(trials.read_text())))


def trials_table(step: str, trials: list[dict[str, Any]]) -> Table:
    """A tuning step's training jobs, in the order they started."""
    tuned = list(dict.fromkeys(k for t in trials for k in t["TunedHyperParameters"]))
    metric = trials[0]["ObjectiveMetric"] if trials else "objective"
    table = Table(title=f"{step}: {len(trials)} training job(s)", title_justify="left")
    for column in ("training job", "status", metric, "epochs", "duration", *tuned):
        table.add_column(column)
    for t in trials:
        value = t["FinalObjectiveValue"]
        table.add_row(
            t["TrainingJobName"], t["TrainingJobStatus"], f"{value:.4g}" if value is not None else "",
            str(len(t["Curves"].get(metric, []))), f"{t['DurationSeconds']:.1f}s",
            *(f"{float(v):.4g}" if _is_number(v) else v for v in (t["TunedHyperParameters"].get(k, "") for k in tuned)),
        )  # fmt: skip
    return table


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
