"""Local tuning: a real search over a Tuning step's ranges, with SageMaker's semantics.

The trials here run a tiny script through the real Training runner (source archive, hyperparameters,
metric regexes, artifacts), so what is pinned is the runner's behaviour, not a mock's.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import optuna
import pytest

from pipelines.local.engine import Execution, LocalOptions
from pipelines.local.runners.tuning import MedianStoppingRule, search_space
from pipelines.local.store import ObjectStore
from tests.tools.archives import put_source_archive

# prints one score per epoch; the score grows towards x, so a small x is clearly bad from the first epoch
TOY = """
    import argparse, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("-x", type=float, required=True)  # one letter: the toolkit passes it as -x
    p.add_argument("-n", type=int, default=1)
    p.add_argument("--mode", default="a")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--fail-below", type=float, default=-1.0)
    p.add_argument("--sleep", type=float, default=0.0)
    a = p.parse_args()
    if a.mode not in ("a", "b", "c") or not 1 <= a.n <= 5:
        sys.exit(f"bad value: mode={a.mode} n={a.n}")
    if a.x < a.fail_below:
        sys.exit(f"toy: x={a.x} is below {a.fail_below}")
    for epoch in range(1, a.epochs + 1):
        print(f"epoch={epoch} score={a.x * epoch / a.epochs:.6f}", flush=True)
        time.sleep(a.sleep)
"""


def source_archive(store: ObjectStore, uri: str) -> None:
    put_source_archive(store, uri, "toy.py", TOY)


def tuning_definition(
    ranges: dict[str, list[dict[str, Any]]],
    strategy: str = "Random",
    max_jobs: int | None = 4,
    parallel: int = 1,
    early_stopping: str = "Off",
    seed: int = 7,
    static: dict[str, str] | None = None,
    strategy_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ranges = {"ContinuousParameterRanges": [], "IntegerParameterRanges": [], "CategoricalParameterRanges": []} | ranges
    hyperparameters = {
        "sagemaker_program": json.dumps("toy.py"),
        "sagemaker_submit_directory": json.dumps("s3://b/code/sourcedir.tar.gz"),
        **(static or {}),
    }
    return {
        "Version": "2020-12-01",
        "Parameters": [],
        "Steps": [
            {
                "Name": "tune",
                "Type": "Tuning",
                "Arguments": {
                    "HyperParameterTuningJobConfig": {
                        "Strategy": strategy,
                        "RandomSeed": seed,
                        "HyperParameterTuningJobObjective": {"MetricName": "score", "Type": "Maximize"},
                        "ResourceLimits": {"MaxParallelTrainingJobs": parallel}
                        | ({} if max_jobs is None else {"MaxNumberOfTrainingJobs": max_jobs}),
                        "ParameterRanges": ranges,
                        "TrainingJobEarlyStoppingType": early_stopping,
                    }
                    | ({"StrategyConfig": strategy_config} if strategy_config else {}),
                    "TrainingJobDefinition": {
                        "AlgorithmSpecification": {
                            "TrainingImage": "image",
                            "TrainingInputMode": "File",
                            "MetricDefinitions": [{"Name": "score", "Regex": "score=([0-9.]+)"}],
                        },
                        "StaticHyperParameters": hyperparameters,
                        "OutputDataConfig": {"S3OutputPath": "s3://b/out/tune"},
                        "HyperParameterTuningResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large"},
                        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
                        "RoleArn": "arn:aws:iam::000000000000:role/r",
                    },
                },
            }
        ],
    }


def run(tmp_path: Path, definition: dict[str, Any]) -> Execution:
    store = ObjectStore(tmp_path / "s3")
    source_archive(store, "s3://b/code/sourcedir.tar.gz")
    execution = Execution(tmp_path, definition, {}, store, LocalOptions())
    execution.run()
    return execution


def trials(execution: Execution) -> list[dict[str, Any]]:
    return json.loads((execution.step_dir("tune") / "children.json").read_text())


X = {"Name": "x", "MinValue": "0.0", "MaxValue": "1.0", "ScalingType": "Linear"}


# --------------------------------------------------------------------------- the result SageMaker's paths read


def test_the_result_lists_trials_best_first_and_the_best_model_is_the_best_trials(tmp_path: Path) -> None:
    execution = run(tmp_path, tuning_definition({"ContinuousParameterRanges": [X]}, max_jobs=4, parallel=2))
    assert execution.status == "Succeeded"
    result = execution.states["tune"].result
    assert result is not None
    summaries = result["TrainingJobSummaries"]
    values = [s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for s in summaries]
    assert len(summaries) == 4 and values == sorted(values, reverse=True)
    # a trial's objective is the last value it printed; each trial's x reached the script
    for s in summaries:
        assert s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == pytest.approx(
            float(s["TunedHyperParameters"]["x"]), abs=1e-6
        )
        assert s["TrainingJobName"].startswith(result["HyperParameterTuningJobName"] + "-")
        assert len(s["TrainingJobName"]) <= 63 and len(result["HyperParameterTuningJobName"]) <= 32
    best = summaries[0]["TrainingJobName"]
    assert result["BestTrainingJob"]["TrainingJobName"] == best
    store = ObjectStore(tmp_path / "s3")
    assert store.path(f"s3://b/out/tune/{best}/output/model.tar.gz").is_file()
    # what the compiler's top-model property path resolves to
    path = {"Std:Join": {"On": "/", "Values": ["s3:/", "b", "out/tune",
                                               {"Get": "Steps.tune.TrainingJobSummaries[0].TrainingJobName"},
                                               "output/model.tar.gz"]}}  # fmt: skip
    assert execution.resolver(path) == f"s3://b/out/tune/{best}/output/model.tar.gz"
    assert result["TrainingJobStatusCounters"]["Completed"] == 4


def test_each_trial_is_recorded_with_its_curve_status_duration_and_log(tmp_path: Path) -> None:
    execution = run(tmp_path, tuning_definition({"ContinuousParameterRanges": [X]}, max_jobs=2))
    for t in trials(execution):
        assert t["Status"] == "Completed" and len(t["Curves"]["score"]) == 4
        assert t["DurationSeconds"] > 0 and "epoch=4" in Path(t["Log"]).read_text()
        hyperparameters = json.loads(
            (Path(t["Log"]).parent / "sandbox/opt/ml/input/config/hyperparameters.json").read_text()
        )
        assert hyperparameters["_tuning_objective_metric"] == "score"  # as SageMaker writes it for a trial
        assert "--_tuning_objective_metric" not in Path(t["Log"]).read_text()  # the toolkit keeps it back


# --------------------------------------------------------------------------- scaling and valid values


def _samples(ranges: dict[str, Any], n: int = 2000) -> dict[str, list[Any]]:
    dims = search_space(ranges)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out: dict[str, list[Any]] = {d.name: [] for d in dims}
    for _ in range(n):
        trial = study.ask({d.name: d.distribution for d in dims})
        for d in dims:
            out[d.name].append(d.to_value(trial.params[d.name]))
        study.tell(trial, 0.0)
    return out


def test_log_scaled_samples_spread_over_the_decades_of_the_range() -> None:
    values = _samples({"ContinuousParameterRanges": [
        {"Name": "lr", "MinValue": "0.0001", "MaxValue": "1", "ScalingType": "Logarithmic"}]})["lr"]  # fmt: skip
    per_decade = [sum(10**k <= v < 10 ** (k + 1) for v in values) / len(values) for k in range(-4, 0)]
    assert all(0.2 <= share <= 0.3 for share in per_decade), per_decade  # a quarter each; linear gives 0.01%


def test_reverse_log_concentrates_near_the_maximum() -> None:
    beta = {"Name": "beta", "MinValue": "0.9", "MaxValue": "0.999", "ScalingType": "ReverseLogarithmic"}
    values = _samples({"ContinuousParameterRanges": [beta]})["beta"]
    assert all(0.9 <= v <= 0.999 for v in values)
    assert statistics.median(values) == pytest.approx(1 - math.sqrt(0.1 * 0.001), abs=0.003)  # 0.99, not 0.95


def test_linear_integer_and_categorical_ranges_sample_only_valid_values() -> None:
    values = _samples({
        "ContinuousParameterRanges": [X],
        "IntegerParameterRanges": [{"Name": "n", "MinValue": "1", "MaxValue": "5", "ScalingType": "Linear"}],
        "CategoricalParameterRanges": [{"Name": "mode", "Values": ["a", "b", "c"]}],
    })  # fmt: skip
    assert statistics.median(values["x"]) == pytest.approx(0.5, abs=0.05)
    assert set(values["n"]) == {1, 2, 3, 4, 5} and set(values["mode"]) == {"a", "b", "c"}


def test_integer_and_categorical_values_reach_the_script_as_sagemaker_passes_them(tmp_path: Path) -> None:
    definition = tuning_definition(
        {
            "ContinuousParameterRanges": [X],
            "IntegerParameterRanges": [{"Name": "n", "MinValue": "1", "MaxValue": "5", "ScalingType": "Auto"}],
            "CategoricalParameterRanges": [{"Name": "mode", "Values": ["a", "b", "c"]}],
        },
        strategy="Bayesian",
        max_jobs=5,
    )
    execution = run(tmp_path, definition)
    assert execution.status == "Succeeded"
    for t in trials(execution):
        assert t["Status"] == "Completed", t["FailureReason"]
        assert t["Parameters"]["n"] in {"1", "2", "3", "4", "5"}
        assert t["Parameters"]["mode"] in {"a", "b", "c"}
    log = (execution.step_dir("tune") / "log.txt").read_text()
    assert "Gaussian-process sampler" in log and "ScalingType Auto is searched on a linear scale" in log


GRID = {"CategoricalParameterRanges": [{"Name": "mode", "Values": ["a", "b", "a"]},
                                       {"Name": "x", "Values": ["0.2", "0.7"]}]}  # fmt: skip


def test_grid_search_runs_every_distinct_combination_once(tmp_path: Path) -> None:
    execution = run(tmp_path, tuning_definition(GRID, strategy="Grid", max_jobs=None))
    combos = {(t["Parameters"]["mode"], t["Parameters"]["x"]) for t in trials(execution)}
    assert len(trials(execution)) == 4 and combos == {("a", "0.2"), ("a", "0.7"), ("b", "0.2"), ("b", "0.7")}


@pytest.mark.parametrize(
    ("strategy", "max_jobs", "early_stopping", "static", "strategy_config", "reason"),
    [
        ("Grid", 10, "Off", None, None, "MaxNumberOfTrainingJobs, when given, must equal 4, not 10"),
        ("Hyperband", 4, "Auto", {"epochs": "3"}, None, "TrainingJobEarlyStoppingType must be Off"),
        ("Hyperband", 4, "Off", None, None, "Hyperband needs a MaxResource"),
    ],
    ids=["grid-jobs-not-the-combinations", "hyperband-with-early-stopping", "hyperband-without-max-resource"],
)
def test_a_strategy_setting_sagemaker_refuses_fails_the_step_as_a_client_error_never_adjusted(
    tmp_path: Path, strategy: str, max_jobs: int, early_stopping: str, static: dict[str, str] | None,
    strategy_config: dict[str, Any] | None, reason: str,
) -> None:  # fmt: skip
    ranges = GRID if strategy == "Grid" else {"ContinuousParameterRanges": [X]}
    definition = tuning_definition(ranges, strategy=strategy, max_jobs=max_jobs, early_stopping=early_stopping,
                                   static=static, strategy_config=strategy_config)  # fmt: skip
    execution = run(tmp_path, definition)
    state = execution.states["tune"]
    assert execution.status == "Failed" and state.failure_reason and reason in state.failure_reason
    assert (state.failure_reason or "").startswith("ClientError")
    assert not (execution.step_dir("tune") / "trials").exists()  # refused before any training job


def test_hyperband_takes_its_resources_from_the_strategy_config(tmp_path: Path) -> None:
    definition = tuning_definition({"ContinuousParameterRanges": [X]}, strategy="Hyperband", max_jobs=3,
                                   static={"epochs": "2"},
                                   strategy_config={"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 2}})
    execution = run(tmp_path, definition)
    assert execution.status == "Succeeded"
    assert "Hyperband pruner, 1 to 2 epochs" in (execution.step_dir("tune") / "log.txt").read_text()


# --------------------------------------------------------------------------- early stopping


@pytest.mark.parametrize(("strategy", "early_stopping", "jobs"), [("Random", "Auto", 8), ("Hyperband", "Off", 12)])
def test_a_clearly_bad_trial_is_stopped_before_its_last_epoch(
    tmp_path: Path, strategy: str, early_stopping: str, jobs: int
) -> None:
    definition = tuning_definition(
        {"ContinuousParameterRanges": [X]},
        strategy=strategy,
        max_jobs=jobs,
        early_stopping=early_stopping,
        static={"epochs": "6", "sleep": "0.25"},
    )
    execution = run(tmp_path, definition)
    assert execution.status == "Succeeded"
    recorded = trials(execution)
    stopped = [t for t in recorded if t["Status"] == "Stopped"]
    assert stopped, [(t["Parameters"], t["Status"]) for t in recorded]
    best = max(float(t["Parameters"]["x"]) for t in recorded)
    for t in stopped:
        assert len(t["Curves"]["score"]) < 6  # fewer epochs than it was given
        assert float(t["Parameters"]["x"]) < best
        assert "stopped early" in Path(t["Log"]).read_text()
    result = execution.states["tune"].result
    assert result is not None and result["TrainingJobStatusCounters"]["Stopped"] == len(stopped)
    assert result["BestTrainingJob"]["TrainingJobStatus"] == "Completed"


def test_the_median_rule_compares_with_running_averages_of_earlier_trials_at_the_same_epoch() -> None:
    study = optuna.create_study(direction="maximize")
    for curve in ([0.2, 0.4, 0.6], [0.4, 0.6, 0.8], [0.6, 0.8, 1.0]):  # running averages at epoch 2: 0.3 0.5 0.7
        t = study.ask()
        for epoch, value in enumerate(curve, 1):
            t.report(value, epoch)
        study.tell(t, curve[-1])
    rule = MedianStoppingRule(min_trials=3)
    trial = study.ask()
    trial.report(0.1, 1)
    trial.report(0.49, 2)
    assert rule.prune(study, study.trials[-1])  # 0.49 < median 0.5
    trial = study.ask()
    trial.report(0.1, 1)
    trial.report(0.51, 2)
    assert not rule.prune(study, study.trials[-1])


# --------------------------------------------------------------------------- failures


def test_a_failing_trial_does_not_end_the_search(tmp_path: Path) -> None:
    definition = tuning_definition({"ContinuousParameterRanges": [X]}, max_jobs=6, static={"fail-below": "0.5"})
    execution = run(tmp_path, definition)
    statuses = [t["Status"] for t in trials(execution)]
    assert execution.status == "Succeeded" and len(statuses) == 6
    assert "Failed" in statuses and "Completed" in statuses
    result = execution.states["tune"].result
    assert result is not None and result["BestTrainingJob"]["TrainingJobStatus"] == "Completed"
    assert result["TrainingJobSummaries"][-1]["TrainingJobStatus"] == "Failed"  # ranked after every completed one


def test_when_every_trial_fails_the_step_fails_with_their_reasons(tmp_path: Path) -> None:
    definition = tuning_definition({"ContinuousParameterRanges": [X]}, max_jobs=3, static={"fail-below": "2"})
    execution = run(tmp_path, definition)
    assert execution.status == "Failed"
    reason = execution.states["tune"].failure_reason or ""
    assert reason.startswith("every training job of tuning job ")
    assert reason.count("toy.py exited with status 1") == 3
    log = (execution.step_dir("tune") / "log.txt").read_text()
    assert log.count(" Failed: AlgorithmError") == 3


def test_stopping_the_execution_stops_every_running_trial(tmp_path: Path) -> None:
    import threading

    definition = tuning_definition(
        {"ContinuousParameterRanges": [X]}, max_jobs=6, parallel=2, static={"epochs": "50", "sleep": "0.2"}
    )
    store = ObjectStore(tmp_path / "s3")
    source_archive(store, "s3://b/code/sourcedir.tar.gz")
    execution = Execution(tmp_path, definition, {}, store, LocalOptions())
    threading.Timer(2.0, execution.stop).start()
    assert execution.run() == "Stopped"
    assert execution.states["tune"].status == "Stopped"
    recorded = trials(execution) if (execution.step_dir("tune") / "children.json").exists() else []
    assert len(recorded) <= 2  # nothing new started once stopping
    assert all(t["Status"] == "Stopped" for t in recorded)
    assert not execution.processes  # every trial's process group is gone
