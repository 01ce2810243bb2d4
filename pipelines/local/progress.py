"""A local run's progress as it happens: a live table of its steps on a terminal, one plain line per change
otherwise (what `local run` and `local retry` show; `pipelines.cli.printing` prints executions afterwards)."""

from __future__ import annotations

import sys
import threading
import time
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


class Progress:
    """Call `on_change` from the engine; use as a context manager around `Execution.run`."""

    def __init__(self, console: Console | None = None, live: bool | None = None):
        self.console = console or Console()
        self.live_mode = self.console.is_terminal if live is None else live
        self.execution: Execution | None = None
        self._live: Live | None = None
        self._lock = threading.Lock()

    def attach(self, execution: Execution) -> None:
        self.execution = execution

    def __enter__(self) -> Progress:
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
