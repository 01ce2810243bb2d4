"""A local execution as a `RunView`: the record, the definition, each step's result, the curves its jobs
printed, the jobs a step ran on its own (tuning trials) and the evaluation files, read from the run root.
What a result holds (its model, its reports) is asked of its Type's `Outcome`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.definition import find_step
from pipelines.local.records import load_execution
from pipelines.local.runners.base import CHILDREN_FILE, CURVES_FILE
from pipelines.local.store import ObjectStore, StoreError
from pipelines.report.outcomes import outcome
from pipelines.report.view import Evaluation, RunView, StepView, seconds

REPORT = "report.html"


def _json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return default


TRACKING_FILE = "tracking.json"  # where the execution is recorded in MLflow (`pipelines.local.track`)


def load_view(root: Path, execution_id: str, store: ObjectStore | None = None) -> RunView:
    root = Path(root)
    record = load_execution(root, execution_id)
    directory = root / "executions" / record["id"]
    store = store or ObjectStore(root / "s3")
    definition = _json(directory / "definition.json", {})
    view = RunView(
        pipeline=record["pipeline"], id=record["id"], status=record["status"], definition=definition,
        parameters=record.get("parameters", {}), steps={}, started=seconds(record.get("started")),
        ended=seconds(record.get("ended")), failure=record.get("failure"),
    )  # fmt: skip
    tracked = _json(directory / TRACKING_FILE)
    if isinstance(tracked, dict) and tracked.get("parent"):
        view.tracking = tracked
    for name, summary in record["steps"].items():
        step_dir = directory / "steps" / name
        step = StepView(
            name=name, type=summary["type"], status=summary["status"],
            display_name=(find_step(definition, name) or {}).get("DisplayName"),
            started=seconds(summary.get("started")), ended=seconds(summary.get("ended")),
            cache_hit=summary.get("cache_hit", False), attempts=summary.get("attempts", []),
            failure_reason=summary.get("failure_reason"), result=_json(step_dir / "result.json", {}) or {},
            log=step_dir / "log.txt" if (step_dir / "log.txt").exists() else None,
            cache_note=summary.get("cache_note"),
        )  # fmt: skip
        view.steps[name] = step
        view.curves |= _json(step_dir / CURVES_FILE) or {}
        children = _json(step_dir / CHILDREN_FILE)
        if children:
            view.children[name] = children
            view.curves |= {child["Name"]: child["Curves"] for child in children if child.get("Curves")}
        shown = outcome(step.type)
        artifact = shown.model_artifact(step.result)
        if artifact:
            view.artifacts[name] = {"uri": artifact, "path": _shown(_local(store, artifact))}
        for uri in shown.report_uris(step.result):
            path = _local(store, uri)
            if path and (path / "evaluation.json").is_file():
                view.evaluations[name] = Evaluation(name, path)
    if (directory / REPORT).exists():
        view.report = directory / REPORT
    return view


def _shown(path: Path | None) -> str:
    """A path as the user would type it: relative to the working directory when under it."""
    if path is None:
        return ""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _local(store: ObjectStore, uri: str) -> Path | None:
    try:
        return store.path(uri)
    except StoreError:
        return None
