"""Tracking commands: record an execution in MLflow (``track``), serve MLflow's UI over the run root's store
(``ui``), and compare executions side by side (``compare``); and `start`, which `local run` calls once an
execution ended."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from pipelines.cli.common import JSON, LOCAL_EXECUTION, ROOT, Group, UsageError, option, root_flags, run_root

group = Group()

# `local run` / `local retry`: background (default; SMP_TRACKING sets another), wait, or off
MODES = ("background", "wait", "off")
TRACKING = option("--tracking", choices=MODES, default=None,
                  help="record the execution in the run root's MLflow store: in the background once it ended "
                  "(default; SMP_TRACKING sets another), waiting for it, or not at all")  # fmt: skip


def tracking_mode(args: argparse.Namespace) -> str:
    """``--tracking``, else ``SMP_TRACKING``, else background (exit 2 for anything else)."""
    mode = getattr(args, "tracking", None) or os.environ.get("SMP_TRACKING") or "background"
    if mode not in MODES:
        raise UsageError(f"SMP_TRACKING={mode!r}: use one of {', '.join(MODES)}")
    return str(mode)


def start(args: argparse.Namespace, execution_id: str, settings: dict[str, Any]) -> None:
    """Record an ended execution in MLflow as ``--tracking`` says; ``settings`` (the experiment, the spec's
    digest, the git commit) are kept beside its record for the writer."""
    from pipelines.files import write_atomic
    from pipelines.local.track import read_settings, settings_path, store_uri

    mode = tracking_mode(args)
    if mode == "off":
        return
    root = run_root(args)
    merged = read_settings(root, execution_id) | {k: v for k, v in settings.items() if v} | {
        "requested_at": time.time()}  # fmt: skip
    write_atomic(settings_path(root, execution_id), json.dumps(merged, indent=2))
    if mode == "wait":
        from pipelines.local.track import record

        done = record(root, execution_id)
        print(f"tracking: recorded in {store_uri(root)} (experiment {done['experiment']}); "
              f"python -m pipelines ui{root_flags(args, local=False)}")  # fmt: skip
        return
    log = root / "executions" / execution_id / "tracking.log"
    with open(log, "a") as out:  # the engine's own writer (not a job): it outlives this command, in its session
        subprocess.Popen([sys.executable, "-m", "pipelines.local.track", str(root), execution_id], stdout=out,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    print(f"tracking: recording in MLflow in the background (python -m pipelines ui{root_flags(args, local=False)}; "
          f"its log: {log})")  # fmt: skip


@group.command("track", "record a local execution in the run root's MLflow store now (an id, or latest)",
               LOCAL_EXECUTION, ROOT)  # fmt: skip
def track(args: argparse.Namespace) -> int:
    from pipelines.local.records import resolve_id
    from pipelines.local.track import record, store_uri

    execution_id = resolve_id(run_root(args), args.execution)
    done = record(run_root(args), execution_id)
    print(f"recorded {execution_id} in {store_uri(run_root(args))}: experiment {done['experiment']}, run "
          f"{done['parent']}, {len(done['runs'])} job run(s)")  # fmt: skip
    return 0


@group.command("ui", "serve MLflow's UI over the run root's tracking store, on 127.0.0.1 (make mlflow-ui)", ROOT,
               option("--port", type=int, default=5000), option("--host", default="127.0.0.1",
                                                                 help="the address to bind (default: loopback only)"))
def ui(args: argparse.Namespace) -> int:  # fmt: skip
    from pipelines.local.track import STORE_DIR, store_uri

    root = run_root(args)
    if not (root / STORE_DIR / "mlflow.db").exists():
        raise UsageError(f"no MLflow store under {root} yet: run a pipeline (make pipeline-local) first")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store_uri(root), "--host", args.host,
           "--port", str(args.port)]  # fmt: skip
    print(f"MLflow UI on http://{args.host}:{args.port} over {store_uri(root)} (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130


@group.command("compare", "executions side by side: their parameters, gate, best job's hyperparameters and metrics",
               ROOT, option("--experiment", help="one experiment (default: every one)"),
               option("--last", type=int, default=5, help="how many executions, newest first (default 5)"),
               option("--tracking-uri", help="another MLflow store (default: the run root's)"), JSON)
def compare(args: argparse.Namespace) -> int:  # fmt: skip
    from pipelines.cli.printing import print_comparison
    from pipelines.local.track import STORE_DIR, store_uri
    from pipelines.report.tracking import executions

    root = run_root(args)
    uri = args.tracking_uri or store_uri(root)
    if not args.tracking_uri and not (root / STORE_DIR / "mlflow.db").exists():
        raise UsageError(f"no MLflow store under {root} yet: run a pipeline (make pipeline-local) first")
    found = executions(uri, args.experiment, args.last)
    if args.json:
        print(json.dumps(found, indent=2, default=str))
    elif not found:
        print("no executions recorded" + (f" in experiment {args.experiment}" if args.experiment else ""))
    else:
        print_comparison(found)
    return 0

