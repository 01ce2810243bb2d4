"""Recording a local execution into the run root's MLflow store (``<root>/mlflow/mlflow.db``, SQLite; artifacts
in the local object store under ``s3://mlflow/``), then writing its report again with a link per run.

The CLI starts it once an execution ended (``python -m pipelines.local.track ROOT ID``, in the background: MLflow's
import and its store cost one to two seconds, which a run does not wait for; ``--wait-tracking`` waits), or
``python -m pipelines track ID`` does it in the foreground. ``executions/<id>/tracking.json`` holds what the
CLI knew (the experiment, the spec's SHA-256, the git commit) and, once recorded, the run ids. Writers take a
file lock: two executions recording at once lose nothing.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from pipelines.files import write_atomic
from pipelines.local.gc import FIGURES
from pipelines.local.view import REPORT, TRACKING_FILE, load_view
from pipelines.report.tracking import STORE_DIR, artifact_location, store_uri

__all__ = ["STORE_DIR", "main", "read_settings", "record", "settings_path", "store_uri"]

UI = "http://127.0.0.1:5000"  # where `python -m pipelines ui` serves MLflow's UI by default


def settings_path(root: Path, execution_id: str) -> Path:
    return Path(root) / "executions" / execution_id / TRACKING_FILE


def read_settings(root: Path, execution_id: str) -> dict[str, Any]:
    try:
        found = json.loads(settings_path(root, execution_id).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def record(root: Path, execution_id: str) -> dict[str, Any]:
    """Record the execution's tree (`pipelines.report.tracking.Recorder`), keep its run ids beside the record
    and write the report again with their links; returns what ``tracking.json`` holds."""
    from filelock import FileLock

    from pipelines.report.html import write_report
    from pipelines.report.tracking import Recorder

    root = Path(root)
    view = load_view(root, execution_id)
    settings = read_settings(root, view.id)
    experiment = settings.get("experiment") or view.pipeline
    (root / STORE_DIR).mkdir(parents=True, exist_ok=True)
    extra = {k: str(settings[k]) for k in ("smp.spec_sha256", "smp.git_commit", "smp.spec") if settings.get(k)}
    definition = root / "executions" / view.id / "definition.json"
    with FileLock(root / STORE_DIR / ".lock", timeout=600):
        recorder = Recorder(store_uri(root), experiment, artifact_location(root, experiment))
        runs = recorder.record(view, extra, definition.read_text() if definition.is_file() else None)
    settings |= {"experiment": experiment, **runs, "ui": settings.get("ui", UI), "recorded_at": time.time()}
    write_atomic(settings_path(root, view.id), json.dumps(settings, indent=2))
    view.tracking = settings
    write_report(view, root / "executions" / view.id / REPORT, root / FIGURES)
    return settings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root, execution_id = Path(argv[0]), argv[1]
    try:
        done = record(root, execution_id)
    except Exception as exc:  # noqa: BLE001 - a background writer: the reason goes to its log, once
        print(f"tracking: the execution was not recorded in MLflow: {type(exc).__name__}: {exc}", file=sys.stderr)
        traceback.print_exc()
        return 1
    print(f"tracking: recorded {execution_id} in {store_uri(root)} (experiment {done['experiment']}, run "
          f"{done['parent']})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
