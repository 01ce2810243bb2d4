"""Execution records: ``<run root>/executions/<id>/execution.json`` (status, timings, per-step summary),
rewritten atomically on every change, and read back by later processes (`local list|describe|logs`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.local.files import write_atomic


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


def load_execution(root: Path, execution_id: str) -> dict[str, Any]:
    path = Path(root) / "executions" / execution_id / "execution.json"
    if not path.exists():
        known = [e["id"] for e in list_executions(root)][:5]
        raise RecordError(
            f"no execution '{execution_id}' under {root}" + (f"; recent: {', '.join(known)}" if known else "")
        )
    record: dict[str, Any] = json.loads(path.read_text())
    return record
