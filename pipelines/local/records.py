"""Execution records: ``<run root>/executions/<id>/execution.json`` (status, timings, per-step summary),
rewritten atomically on every change, and read back by later processes (`local list|describe|logs`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.files import write_atomic


class RecordError(Exception):
    pass


def write_record(directory: Path, record: dict[str, Any]) -> None:
    write_atomic(directory / "execution.json", json.dumps(record, indent=2))


def list_executions(root: Path) -> list[dict[str, Any]]:
    """Every readable record under a run root, newest first."""
    out = []
    for path in sorted((Path(root) / "executions").glob("*/execution.json"), reverse=True):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return out


LATEST = "latest"


def resolve_id(root: Path, execution_id: str) -> str:
    """An execution id as given, or ``latest``: the newest execution under the run root."""
    if execution_id != LATEST:
        return execution_id
    ids = sorted(p.parent.name for p in (Path(root) / "executions").glob("*/execution.json"))
    if not ids:
        raise RecordError(f"no executions under {root} yet: 'latest' names none (make pipeline-local starts one)")
    return ids[-1]


def load_execution(root: Path, execution_id: str) -> dict[str, Any]:
    """The record of an execution id (or ``latest``)."""
    execution_id = resolve_id(root, execution_id)
    path = Path(root) / "executions" / execution_id / "execution.json"
    if not path.exists():
        known = [e["id"] for e in list_executions(root)][:5]
        raise RecordError(
            f"no execution '{execution_id}' under {root}" + (f"; recent: {', '.join(known)}" if known else "")
        )
    record: dict[str, Any] = json.loads(path.read_text())
    return record
