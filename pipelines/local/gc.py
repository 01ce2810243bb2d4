"""``local gc``: free the run root of old executions without breaking what still depends on them.

An execution goes when it is beyond the newest ``keep`` or older than ``older_than`` (both when both
are given), unless it is still running. With it go its directory (records, logs, job sandboxes) and the
outputs its steps published in the local object store, except any output that something kept still
reads: what a kept execution's results published (a cache hit reuses an older run's outputs), a cache
entry, a registered model package, a local model or endpoint configuration. What a result published is its
Type's `Outcome.published`. Mounted buckets (the user's data) are never touched.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.local.records import list_executions
from pipelines.local.store import ObjectStore, StoreError
from pipelines.report.outcomes import outcome
from pipelines.report.view import seconds


@dataclass
class Plan:
    executions: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    kept_outputs: list[str] = field(default_factory=list)  # an old execution's outputs still needed
    bytes: int = 0


def _uris(value: Any) -> Iterator[str]:
    if isinstance(value, str) and value.startswith("s3://"):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _uris(v)
    elif isinstance(value, list):
        for v in value:
            yield from _uris(v)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


FIGURES = Path("cache") / "figures"  # the reports' drawn figures, kept by content (`report.html._memo`)


def _published(root: Path, record: dict[str, Any]) -> Iterator[str]:
    """Every location an execution's steps published, as each step's Type's `Outcome` reads its result."""
    directory = root / "executions" / record["id"]
    for name, step in record.get("steps", {}).items():
        result = _json(directory / "steps" / name / "result.json")
        if isinstance(result, dict):
            yield from outcome(step.get("type", "")).published(result)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def plan(root: Path, store: ObjectStore, keep: int | None, older_than_days: float | None) -> Plan:
    root = Path(root)
    records = list_executions(root)  # newest first
    now = time.time()
    doomed = []
    for index, record in enumerate(records):
        beyond = keep is not None and index >= keep
        old = older_than_days is not None and (seconds(record.get("started")) or now) < now - older_than_days * 86400
        selected = (beyond or keep is None) and (old or older_than_days is None)
        if selected and (keep is not None or older_than_days is not None) and record["status"] != "Executing":
            doomed.append(record["id"])
    live: set[str] = set()
    for record in records:
        if record["id"] not in doomed:
            live |= set(_published(root, record))
    for path in (root / "cache").glob("*.json"):  # what a cache hit would serve
        entry = _json(path)
        live |= set(entry.get("outputs", [])) if isinstance(entry, dict) else set()
    for folder in ("models", "endpoint-configs", "endpoints"):
        for path in (root / folder).rglob("*.json") if (root / folder).exists() else []:
            live |= set(_uris(_json(path)))
    if (root / "registry.db").exists():
        from pipelines.local.registry import LocalRegistry

        live |= set(_uris(LocalRegistry(root).list()))
    out = Plan(executions=doomed)
    if doomed and (root / FIGURES).exists():  # drawn report figures: drawn again when a report needs them
        out.bytes += _size(root / FIGURES)
    by_id = {record["id"]: record for record in records}
    for execution_id in doomed:
        directory = root / "executions" / execution_id
        out.bytes += _size(directory)
        for uri in dict.fromkeys(_published(root, by_id[execution_id])):
            if any(uri.startswith(u) or u.startswith(uri) for u in live):
                out.kept_outputs.append(uri)
                continue
            try:
                path = store.path(uri)
            except StoreError:
                continue
            if path.exists() and path.is_relative_to(store.root) and uri not in out.outputs:
                out.outputs.append(uri)
                out.bytes += _size(path)
    return out


def collect(root: Path, store: ObjectStore, garbage: Plan) -> None:
    for uri in garbage.outputs:
        path = store.path(uri)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    for execution_id in garbage.executions:
        shutil.rmtree(Path(root) / "executions" / execution_id, ignore_errors=True)
    if garbage.executions:  # their MLflow runs point at what went: deleted too (a kept execution's stay)
        from pipelines.report.tracking import forget

        forget(Path(root), garbage.executions)
    if garbage.executions:
        shutil.rmtree(Path(root) / FIGURES, ignore_errors=True)
