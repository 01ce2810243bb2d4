"""Execution records: ``<run root>/executions/<id>/execution.json`` (status, timings, per-step summary),
rewritten atomically on every change, and read back by later processes (`local list|describe|logs`)."""

from __future__ import annotations

import json
import os
import signal
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.errors import UserError
from pipelines.files import write_atomic
from pipelines.local.groups import signal_group

ENGINE_DIED = "engine stopped unexpectedly (killed, or the machine restarted) while the execution ran"


class RecordError(UserError):
    pass


def write_record(directory: Path, record: dict[str, Any]) -> None:
    write_atomic(directory / "execution.json", json.dumps(record, indent=2))


def process_start(pid: int) -> str | None:
    """When a process started (clock ticks since boot, from /proc): a pid reused later has another."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_engine() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": process_start(os.getpid())}


def engine_alive(engine: dict[str, Any] | None) -> bool:
    """Whether the engine that wrote a record still runs (unknowable on another host: assumed yes)."""
    if not engine or engine.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(engine["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return engine.get("started") is None or process_start(int(engine["pid"])) == engine.get("started")


def reap(directory: Path, record: dict[str, Any]) -> dict[str, Any]:
    """An *Executing* record whose engine is gone is a lie: end it *Failed*, kill the job process groups it
    left, and mark its running steps Failed and its waiting ones NotRun. Returns the record as it now is."""
    if record.get("status") != "Executing" or engine_alive(record.get("engine")):
        return record
    for pgid in record.get("processes", []):
        signal_group(int(pgid), signal.SIGKILL)
    now = datetime.now(UTC).isoformat()
    failed = None
    for name, step in record["steps"].items():
        if step["status"] in ("Executing", "Starting"):
            step.update(status="Failed", failure_reason=ENGINE_DIED, ended=now)
            failed = failed or name
        elif step["status"] == "Pending":
            step["status"] = "NotRun"
    record.update(status="Failed", ended=now, processes=[])
    log = str(directory / "steps" / str(failed) / "log.txt") if failed else ""
    record["failure"] = record.get("failure") or {"step": failed, "reason": ENGINE_DIED, "log": log, "excerpt": []}
    write_record(directory, record)
    return record


def read_record(directory: Path) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = json.loads((directory / "execution.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return reap(directory, record)


def list_executions(root: Path) -> list[dict[str, Any]]:
    """Every readable record under a run root, newest first by its start time (two started within one second have
    ids that sort by their random part; one whose engine died is ended first)."""
    out = []
    for path in (Path(root) / "executions").glob("*/execution.json"):
        record = read_record(path.parent)
        if record is not None:
            out.append(record)
    return sorted(out, key=lambda r: (r.get("started") or "", r["id"]), reverse=True)


LATEST = "latest"


def resolve_id(root: Path, execution_id: str) -> str:
    """An execution id as given, or ``latest``: the execution started last under the run root."""
    if execution_id != LATEST:
        return execution_id
    found = list_executions(root)
    if not found:
        raise RecordError(f"no executions under {root} yet: 'latest' names none (make pipeline-local starts one)")
    return str(found[0]["id"])


def load_execution(root: Path, execution_id: str) -> dict[str, Any]:
    """The record of an execution id (or ``latest``)."""
    execution_id = resolve_id(root, execution_id)
    path = Path(root) / "executions" / execution_id / "execution.json"
    if not path.exists():
        known = [e["id"] for e in list_executions(root)][:5]
        raise RecordError(
            f"no execution '{execution_id}' under {root}" + (f"; recent: {', '.join(known)}" if known else "")
        )
    record = read_record(path.parent)
    if record is None:
        raise RecordError(f"{path} is unreadable (truncated by a crash?); the execution's logs are beside it")
    return record
