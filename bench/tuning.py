"""Tuning benchmarks: Bayesian against Random search at an equal budget, through the real Tuning runner,
and the cost of a tuning job's training job against the same training run directly."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
BRANIN_MINIMUM = 0.397887

# Branin-Hoo as a "training job": one epoch, its value printed as the metric line train.py prints
BRANIN = """
    import argparse, math
    p = argparse.ArgumentParser()
    p.add_argument("--x1", type=float, required=True)
    p.add_argument("--x2", type=float, required=True)
    a = p.parse_args()
    b, c, r, s, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    value = (a.x2 - b * a.x1 ** 2 + c * a.x1 - r) ** 2 + s * (1 - t) * math.cos(a.x1) + s
    print(f"epoch=1 loss={value:.8f}", flush=True)
"""


def branin_definition(strategy: str, seed: int, budget: int) -> dict[str, Any]:
    ranges = [
        {"Name": "x1", "MinValue": "-5", "MaxValue": "10", "ScalingType": "Linear"},
        {"Name": "x2", "MinValue": "0", "MaxValue": "15", "ScalingType": "Linear"},
    ]
    config = {
        "Strategy": strategy,
        "RandomSeed": seed,
        "HyperParameterTuningJobObjective": {"MetricName": "loss", "Type": "Minimize"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": budget, "MaxParallelTrainingJobs": 1},
        "ParameterRanges": {"ContinuousParameterRanges": ranges},
        "TrainingJobEarlyStoppingType": "Off",
    }
    definition = {
        "AlgorithmSpecification": {
            "TrainingImage": "image",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "loss", "Regex": "loss=([0-9.eE+-]+)"}],
        },
        "StaticHyperParameters": {
            "sagemaker_program": json.dumps("branin.py"),
            "sagemaker_submit_directory": json.dumps("s3://b/code/branin.tar.gz"),
        },
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "HyperParameterTuningResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "RoleArn": "arn:aws:iam::000000000000:role/r",
    }
    step = {"Name": "tune", "Type": "Tuning",
            "Arguments": {"HyperParameterTuningJobConfig": config, "TrainingJobDefinition": definition}}  # fmt: skip
    return {"Version": "2020-12-01", "Parameters": [], "Steps": [step]}


def run_tuning(root: Path, definition: dict[str, Any], overrides: dict[str, Any] | None = None, **kw: Any) -> Any:
    from pipelines.local.engine import Execution, LocalOptions
    from pipelines.local.store import ObjectStore

    store = kw.pop("store", None) or ObjectStore(root / "s3")
    execution = Execution(root, definition, overrides or {}, store, LocalOptions(**kw), pipeline_name="bench")
    if execution.run() != "Succeeded":
        raise RuntimeError(f"tuning run {execution.id} failed: {execution.failure}")
    return execution


def bench_branin(seeds: int, budget: int) -> tuple[list[str], dict[str, float]]:
    from pipelines.local.store import ObjectStore
    from tests.tools.archives import put_source_archive

    regrets: dict[str, list[float]] = {"Bayesian": [], "Random": []}
    seconds: dict[str, float] = {"Bayesian": 0.0, "Random": 0.0}
    for seed in range(seeds):
        for strategy in regrets:
            root = OUT / f"branin-{strategy}-{seed}"
            shutil.rmtree(root, ignore_errors=True)
            store = ObjectStore(root / "s3")
            put_source_archive(store, "s3://b/code/branin.tar.gz", "branin.py", BRANIN)
            t0 = time.perf_counter()
            execution = run_tuning(root, branin_definition(strategy, seed, budget), store=store)
            seconds[strategy] += time.perf_counter() - t0
            best = execution.states["tune"].result["BestTrainingJob"]
            regrets[strategy].append(best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] - BRANIN_MINIMUM)
    medians = {s: statistics.median(r) for s, r in regrets.items()}
    rows = [
        f"| {s} | {medians[s]:.4f} | {statistics.mean(r):.4f} | {max(r):.4f} | {seconds[s] / seeds:.1f} |"
        for s, r in regrets.items()
    ]
    return rows, medians


def _training_variant(spec_path: Path) -> Path:
    """The quickstart up to its gate, its tuning step as one plain training job (lr 0.003, dropout 0)."""
    import yaml

    spec = yaml.safe_load(spec_path.read_text())
    spec["parameters"].pop("TuningJobs", None)
    spec["parameters"].pop("ModelApprovalStatus", None)
    # up to the gate, as the scripts run directly go: no registration, no endpoint left running
    spec["steps"] = [s for s in spec["steps"] if s["kind"] not in ("register", "deploy")]
    for step in spec["steps"]:
        if step["kind"] == "tuning":
            for key in ("objective", "ranges", "strategy", "max_jobs", "max_parallel_jobs", "early_stopping"):
                step.pop(key, None)
            step.update(kind="training", name="train", display_name="Train (DDP)")
            step["hyperparameters"]["lr"] = 0.003
        for name, source in step.get("inputs", {}).items():
            step["inputs"][name] = source.replace("tune.", "train.")
    out = OUT / "digits-training.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def bench_quickstart_strategies(trials: int, epochs: int) -> list[str]:
    """Both strategies on the quickstart's own objective (validation weighted recall), same budget."""
    from pipelines.compiler import compile_pipeline
    from pipelines.loader import load_spec
    from pipelines.local.store import ObjectStore
    from tests.tools.datasets import write_digits

    data = OUT / "local-data"
    if not (data / "digits" / "digits.parquet").exists():
        write_digits(data / "digits")
    compiled = compile_pipeline(load_spec(ROOT / "config" / "digits.yaml"))
    rows = []
    for strategy in ("Bayesian", "Random"):
        definition = json.loads(compiled.definition)
        tune = next(s for s in definition["Steps"] if s["Type"] == "Tuning")
        tune["Arguments"]["HyperParameterTuningJobConfig"]["Strategy"] = strategy
        root = OUT / f"quickstart-{strategy}"
        shutil.rmtree(root, ignore_errors=True)
        store = ObjectStore(root / "s3", {"sm-pipelines-data": data})
        for uri, blob in compiled.uploads().items():
            store.put_bytes(uri, blob)
        t0 = time.perf_counter()
        execution = run_tuning(root, definition, {"TuningJobs": trials, "Epochs": epochs}, store=store, until=["tune"])
        wall = time.perf_counter() - t0
        summaries = execution.states["tune"].result["TrainingJobSummaries"]
        key = "FinalHyperParameterTuningJobObjectiveMetric"
        values = [s[key]["Value"] for s in summaries if key in s]
        best = summaries[0]
        rows.append(
            f"| {strategy} | {values[0]:.4f} | {statistics.median(values):.4f} | "
            f"{float(best['TunedHyperParameters']['lr']):.4g} | {wall:.0f} |"
        )
    return rows


def bench_trial_overhead(epochs: int) -> list[str]:
    """A tuning job's training job against the same training run by hand with the same arguments."""
    import os
    import subprocess

    from pipelines.compiler import compile_pipeline
    from pipelines.loader import load_spec
    from pipelines.local.store import ObjectStore
    from tests.tools.datasets import write_digits

    data = OUT / "local-data"
    if not (data / "digits" / "digits.parquet").exists():
        write_digits(data / "digits")
    compiled = compile_pipeline(load_spec(ROOT / "config" / "digits.yaml"))
    definition = json.loads(compiled.definition)
    tune = next(s for s in definition["Steps"] if s["Type"] == "Tuning")
    tune["Arguments"]["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxParallelTrainingJobs"] = 1
    rows, ratios = [], []
    for i in range(3):
        root = OUT / f"overhead-{i}"
        shutil.rmtree(root, ignore_errors=True)
        store = ObjectStore(root / "s3", {"sm-pipelines-data": data})
        for uri, blob in compiled.uploads().items():
            store.put_bytes(uri, blob)
        execution = run_tuning(root, definition, {"TuningJobs": 1, "Epochs": epochs}, store=store, until=["tune"])
        trial = json.loads((execution.step_dir("tune") / "children.json").read_text())[0]
        trial_dir = Path(trial["Log"]).parent
        sandbox = trial_dir / "sandbox" / "opt" / "ml"
        argv = [line for line in Path(trial["Log"]).read_text().splitlines() if line.startswith("$ ")][0][2:].split()
        work = OUT / f"overhead-direct-{i}"
        shutil.rmtree(work, ignore_errors=True)
        env = {
            **os.environ,
            "SM_CHANNEL_TRAIN": str(sandbox / "input" / "data" / "train"),
            "SM_CHANNEL_VALIDATION": str(sandbox / "input" / "data" / "validation"),
            "SM_MODEL_DIR": str(work / "model"),
            "SM_OUTPUT_DATA_DIR": str(work / "output"),
            "SM_CHECKPOINT_DIR": str(work / "checkpoints"),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
        }
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        direct = time.perf_counter() - t0
        ratios.append(trial["DurationSeconds"] / direct)
        rows.append(f"| {i + 1} | {trial['DurationSeconds']:.2f} | {direct:.2f} | {ratios[-1]:.2f}x |")
    rows.append(f"| median | | | {statistics.median(ratios):.2f}x |")
    return rows


def bench_tuning(args: argparse.Namespace) -> str:
    seeds, budget = 10, 15
    branin_rows, medians = bench_branin(seeds, budget)
    strategy_rows = bench_quickstart_strategies(trials=8, epochs=4)
    overhead_rows = bench_trial_overhead(epochs=4)
    verdict = "met" if medians["Bayesian"] < medians["Random"] else "NOT met"
    return "\n".join([
        f"**Bayesian vs Random, Branin** (minimum {BRANIN_MINIMUM}): the function is a one-epoch \"training job\" "
        f"printing `loss=...`, run through the real Tuning and Training runners; {budget} jobs per search, one at "
        f"a time, seeds 0-{seeds - 1} (`RandomSeed`). Regret = best value found - minimum.",
        "",
        "| strategy | median regret | mean regret | worst regret | seconds per search |",
        "|---|---:|---:|---:|---:|",
        *branin_rows,
        "",
        f"Target: Bayesian's median regret below Random's ({verdict}: {medians['Bayesian']:.4f} vs "
        f"{medians['Random']:.4f}).",
        "",
        "**The quickstart's objective** (validation weighted recall of the digits CNN, 4 epochs), 8 jobs, 2 at a "
        "time, one search per strategy:",
        "",
        "| strategy | best | median of jobs | best job's lr | wall (s) |",
        "|---|---:|---:|---:|---:|",
        *strategy_rows,
        "",
        "**Per-job overhead**: one job of the quickstart's search (4 epochs, torch_distributed with the same "
        "processes) against the same command run by hand on the same staged data:",
        "",
        "| run | job in the tuning step (s) | by hand (s) | ratio |",
        "|---|---:|---:|---:|",
        *overhead_rows,
        "",
        "Target: <= 1.1x.",
    ])  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(bench_tuning(argparse.Namespace()))
