"""What experiment tracking costs: ``python bench/run.py --only tracking`` (named apart from steps/tracking.py).

* The quickstart (``config/digits.yaml``, ``Epochs=2``): ``python -m pipelines local run`` in a fresh process on a
  fresh run root (nothing cached; its MLflow store already created, as after a first run) with ``--tracking off``,
  ``background`` (the default: the record is written
  by a process of its own once the run ended) and ``wait`` (the command returns once it is written), paired
  (off, background, wait; `ROUNDS` times), the median of each. The background writer's own time is read from
  its log's timestamps.
* A 100-epoch toy job: `steps/tracking.py`'s ``Tracker`` logging 8 metrics an epoch into a SQLite store, the
  time each epoch's call takes on the training thread (asynchronous: MLflow's async logging), and the wait for
  them all at the end; next to it the same with synchronous calls.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "tracking"
ROUNDS = 3
EPOCHS = 100

TOY = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
from tracking import Tracker
uri, synchronous, EPOCHS = sys.argv[1], sys.argv[2] == "sync", int(sys.argv[4])
tracker = Tracker({"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "toy", "TRAINING_JOB_NAME": "toy"}, print)
tracker.start({"lr": 0.01, "epochs": EPOCHS})
if synchronous:  # the same numbers, each call waiting for its write
    from mlflow.entities import Metric
calls = []
for epoch in range(1, EPOCHS + 1):
    metrics = {f"m{i}": epoch * 0.01 + i for i in range(8)}
    t0 = time.perf_counter()
    if synchronous:
        at = int(time.time() * 1000)
        tracker.client.log_batch(tracker.run_id, metrics=[Metric(k, v, at, epoch) for k, v in metrics.items()])
    else:
        tracker.metrics(metrics, epoch)
    calls.append(time.perf_counter() - t0)
    time.sleep(0.01)  # the epoch's own work
t0 = time.perf_counter()
tracker.finish()
print(json.dumps({"per_epoch_ms": 1000 * sum(calls) / len(calls), "finish_s": time.perf_counter() - t0}))
"""


def _quickstart(mode: str, data: Path, measured: Callable[..., tuple[float, float, str]]) -> tuple[float, float]:
    """(the command's wall time, the background writer's own seconds or 0)."""
    root = OUT / f"runs-{mode}"
    subprocess.run([sys.executable, "-m", "pipelines", "endpoints", "stop", "all", "--root", str(root)], cwd=ROOT,
                   capture_output=True)  # fmt: skip
    # a fresh run root but for its MLflow store, as a user's second run finds it (the first recording into a
    # new root also creates the store's tables: MLflow's migrations, about 2 s, once per run root)
    for item in root.iterdir() if root.exists() else []:
        if item.name != "mlflow":
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    if mode != "off" and not (root / "mlflow" / "mlflow.db").exists():
        (root / "mlflow").mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-c", "from mlflow.tracking import MlflowClient; import sys; "
                        "MlflowClient(sys.argv[1]).search_experiments()", f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"],
                       check=True, capture_output=True)  # fmt: skip
    cmd = [sys.executable, "-m", "pipelines", "local", "run", "config/digits.yaml", "--root", str(root), "--mount",
           f"sm-pipelines-data={data}", "Epochs=2", "--tracking", mode]  # fmt: skip
    wall, _, _ = measured(cmd, env={"SMP_TRACKING": mode}, cwd=ROOT)
    writer = 0.0
    if mode == "background":
        execution = next((root / "executions").glob("*/execution.json")).parent
        deadline = time.time() + 300
        while "parent" not in json.loads((execution / "tracking.json").read_text()):
            if time.time() > deadline:
                raise RuntimeError((execution / "tracking.log").read_text())
            time.sleep(0.2)
        settings = json.loads((execution / "tracking.json").read_text())
        writer = settings["recorded_at"] - settings["requested_at"]  # the writer's start to its last write
    subprocess.run([sys.executable, "-m", "pipelines", "endpoints", "stop", "all", "--root", str(root)], cwd=ROOT,
                   capture_output=True)  # fmt: skip
    return wall, writer


def bench_tracking(args: object, measured: Callable[..., tuple[float, float, str]]) -> str:
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / "data"
    if not (data / "digits" / "digits.parquet").exists():
        target = str(data / "digits")
        code = f"import pathlib, tests.tools.datasets as d\nd.write_digits(pathlib.Path({target!r}))"
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    walls: dict[str, list[float]] = {"off": [], "background": [], "wait": []}
    writers = []
    for round_ in range(ROUNDS):
        for mode in walls:
            print(f"bench: tracking: quickstart round {round_ + 1}, --tracking {mode} ...", flush=True)
            wall, writer = _quickstart(mode, data, measured)
            walls[mode].append(wall)
            if writer:
                writers.append(writer)
    off, background, wait = (statistics.median(walls[m]) for m in ("off", "background", "wait"))
    toys = {}
    for mode in ("async", "sync"):
        store = OUT / f"toy-{mode}.db"
        store.unlink(missing_ok=True)
        done = subprocess.run([sys.executable, "-c", TOY, f"sqlite:///{store}", mode, str(ROOT / "steps"), str(EPOCHS)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        toys[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    return "\n".join([
        f"The quickstart (`config/digits.yaml`, Epochs=2, nothing cached; the run root's MLflow store already made, "
        f"as after a first run), `python -m pipelines local run` in a fresh process, paired (off, background, wait; "
        f"{ROUNDS} rounds, the median):",
        "",
        "| `--tracking` | wall (s) | over off |",
        "|---|---:|---:|",
        f"| off | {off:.2f} | |",
        f"| background (default) | {background:.2f} | {background / off - 1:+.1%} |",
        f"| wait | {wait:.2f} | {wait / off - 1:+.1%} |",
        "",
        f"Per round (s): off {', '.join(f'{w:.1f}' for w in walls['off'])}; background "
        f"{', '.join(f'{w:.1f}' for w in walls['background'])}; wait {', '.join(f'{w:.1f}' for w in walls['wait'])} "
        "(on this shared 2-core machine one command's wall time varies by up to a third between runs: the "
        "comparison of walls is within that noise; the writer's own time below is the cost).",
        "",
        f"The background writer itself (a process of its own: MLflow's import, the SQLite store, the tree, the report "
        f"written again) took {statistics.median(writers):.2f} s from its start to its last write (median), "
        f"{statistics.median(writers) / off:.1%} of the quickstart's wall time, after the command returned. "
        "Target: tracking's overhead on the quickstart at most 3% of its wall time.",
        "",
        f"A {EPOCHS}-epoch toy job logging 8 metrics an epoch through `steps/tracking.py` into a SQLite store: "
        f"{toys['async']['per_epoch_ms']:.3f} ms per epoch on the training thread (asynchronous), "
        f"{toys['async']['finish_s']:.2f} s waiting for the writes at the end; synchronous calls would cost "
        f"{toys['sync']['per_epoch_ms']:.2f} ms per epoch. Target: at most 1 ms per logged epoch.",
    ])  # fmt: skip
