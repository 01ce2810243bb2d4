"""The rules SageMaker applies that botocore's service model does not carry, in one table, each with its source.

`pipelines.requests` checks every definition step against the model (types, enums, lengths, patterns) and
against `RULES` here, and reports each violation at the spec line that set the value. The local engine
applies the same functions (`grid_size`, `hyperband_max_resource`) when it runs a tuning step, so a run that
bypasses the check (a definition run directly) fails as SageMaker would, never with a silent adjustment.

A rule reads a step's arguments with the pipeline parameters resolved; a value only the running execution
knows (another step's output) is not an ``int``/``str`` here and is skipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Path_ = tuple[str | int, ...]

# StoppingCondition.MaxRuntimeInSeconds (botocore's documentation of the member, from the API reference):
# "The default value is 1 day. The maximum value is 28 days."
TRAINING_MAX_RUNTIME = 28 * 24 * 3600

# HyperbandStrategyConfig.MaxResource (API reference): "If a value for MaxResource is not provided, and Hyperband
# is selected as the hyperparameter tuning strategy, HyperbandTraining attempts to infer MaxResource from the
# following keys (if present) in StaticsHyperParameters: epochs, numepochs, n-epochs, n_epochs, num_epochs. If
# HyperbandStrategyConfig is unable to infer a value for MaxResource, it generates a validation error. The
# maximum value is 20,000 epochs."
HYPERBAND_RESOURCE_KEYS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")
HYPERBAND_MAX_RESOURCE = 20_000

# ParameterRanges (API reference): "The maximum number of items specified for Array Members refers to the maximum
# number of hyperparameters for each range and also the maximum for the hyperparameter tuning job itself. That
# is, the sum of the number of hyperparameters for all the ranges can't exceed the maximum number specified."
# Each of the three arrays takes at most 30 items (botocore's model).
MAX_TUNED_HYPERPARAMETERS = 30

# What SageMaker Pipelines refuses in a step that the API itself accepts: the SDK's client-side argument
# validation (sagemaker-python-sdk commit 34b16d3dc, v2.257.6; dropped from the SDK in 2.257.7, the service
# still refuses them): "DataCaptureConfig"/"ExplainerConfig" in an EndpointConfig step, "DeploymentConfig" in
# an Endpoint step.
REFUSED_IN_PIPELINES = {"EndpointConfig": ("DataCaptureConfig", "ExplainerConfig"), "Endpoint": ("DeploymentConfig",)}


@dataclass(frozen=True)
class Broken:
    """One rule a step's arguments break: where, what, how to fix it, and the rule's source."""

    path: Path_
    rule: str
    fix: str
    source: str


def _int(value: Any) -> int | None:
    """An integer the definition holds (a literal or a resolved parameter), else None (only the run knows)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):  # hyperparameters are strings, often JSON-encoded ("3" or "\"3\"")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        if isinstance(parsed, str) and parsed.strip().lstrip("-").isdigit() and parsed.isascii():
            return int(parsed)
        if isinstance(parsed, int) and not isinstance(parsed, bool):
            return parsed
    return None


def job_definitions(step_type: str, args: dict[str, Any]) -> Iterator[tuple[Path_, dict[str, Any]]]:
    """(path, training job definition) of every training job a step starts: its own request for a Training
    step, the tuning job's definition(s) for a Tuning step."""
    if step_type == "Training":
        yield (), args
        return
    if isinstance(args.get("TrainingJobDefinition"), dict):
        yield ("TrainingJobDefinition",), args["TrainingJobDefinition"]
    for i, definition in enumerate(args.get("TrainingJobDefinitions") or []):
        if isinstance(definition, dict):
            yield ("TrainingJobDefinitions", i), definition


# --------------------------------------------------------------------------- the rules

Check = Callable[[dict[str, Any]], Iterator[Broken]]
RUNTIME_SOURCE = "API reference, StoppingCondition.MaxRuntimeInSeconds: the maximum value is 28 days"
SPOT_SOURCE = ("API reference, StoppingCondition.MaxWaitTimeInSeconds: it must be equal to or greater than "
               "MaxRuntimeInSeconds")


def _training_runtime(step_type: str) -> Check:
    def check(args: dict[str, Any]) -> Iterator[Broken]:
        for prefix, definition in job_definitions(step_type, args):
            stopping = definition.get("StoppingCondition") or {}
            runtime, wait = _int(stopping.get("MaxRuntimeInSeconds")), _int(stopping.get("MaxWaitTimeInSeconds"))
            if runtime is not None and runtime > TRAINING_MAX_RUNTIME:
                yield Broken((*prefix, "StoppingCondition", "MaxRuntimeInSeconds"),
                             f"{runtime} s is over 28 days ({TRAINING_MAX_RUNTIME} s), the longest a training job runs",
                             f"at most {TRAINING_MAX_RUNTIME}; checkpoint, and resume in a second job",
                             RUNTIME_SOURCE)  # fmt: skip
            if runtime is not None and wait is not None and wait < runtime:
                yield Broken((*prefix, "StoppingCondition", "MaxWaitTimeInSeconds"),
                             f"a spot job's MaxWaitTimeInSeconds ({wait}) must be at least its MaxRuntimeInSeconds "
                             f"({runtime})", "raise max_wait_seconds or lower max_runtime_seconds",
                             SPOT_SOURCE)  # fmt: skip

    return check


def grid_size(ranges: dict[str, Any]) -> int:
    """The number of distinct combinations of a grid's categorical ranges (SageMaker's Grid search runs each
    once)."""
    return math.prod(len(dict.fromkeys(r.get("Values") or [])) for r in ranges.get("CategoricalParameterRanges", []))


def grid_jobs_problem(config: dict[str, Any]) -> str | None:
    """Why a Grid tuning config's MaxNumberOfTrainingJobs is refused, or None. "How Hyperparameter Tuning
    Works", grid search (SageMaker developer guide): "You do not need to specify the MaxNumberOfTrainingJobs.
    The number of training jobs created by the tuning job is automatically calculated to be the total number of
    distinct categorical combinations possible. If specified, the value of MaxNumberOfTrainingJobs should
    equal the total number of distinct categorical combinations possible." """
    given = _int((config.get("ResourceLimits") or {}).get("MaxNumberOfTrainingJobs"))
    size = grid_size(config.get("ParameterRanges") or {})
    if given is not None and given != size:
        return (f"Grid search runs each of the {size} distinct combination(s) of its categorical values once; "
                f"MaxNumberOfTrainingJobs, when given, must equal {size}, not {given}")  # fmt: skip
    return None


def hyperband_max_resource(config: dict[str, Any], static: dict[str, Any]) -> int | None:
    """MaxResource as SageMaker takes it: HyperbandStrategyConfig's, else inferred from a static epochs-style
    hyperparameter (`HYPERBAND_RESOURCE_KEYS`); None when there is nothing to infer it from."""
    given = ((config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig") or {}).get("MaxResource")
    if given is not None:
        return _int(given)
    for key in HYPERBAND_RESOURCE_KEYS:
        if key in static and _int(static[key]) is not None:
            return _int(static[key])
    return None


GRID_SOURCE = "developer guide, How Hyperparameter Tuning Works, grid search"
HYPERBAND_SOURCE = "API reference, HyperParameterTuningJobConfig and HyperbandStrategyConfig"
RANGES_SOURCE = "API reference, ParameterRanges"


def _tuning(args: dict[str, Any]) -> Iterator[Broken]:
    config = args.get("HyperParameterTuningJobConfig") or {}
    here: Path_ = ("HyperParameterTuningJobConfig",)
    strategy = config.get("Strategy")
    ranges = config.get("ParameterRanges") or {}
    tuned = sum(len(ranges.get(k) or []) for k in
                ("CategoricalParameterRanges", "ContinuousParameterRanges", "IntegerParameterRanges"))  # fmt: skip
    if tuned > MAX_TUNED_HYPERPARAMETERS:
        yield Broken((*here, "ParameterRanges"), f"{tuned} tuned hyperparameters; a tuning job takes at most "
                     f"{MAX_TUNED_HYPERPARAMETERS} across all its ranges", "tune fewer hyperparameters",
                     RANGES_SOURCE)  # fmt: skip
    if strategy == "Grid":
        problem = grid_jobs_problem(config)
        if problem:
            size = grid_size(ranges)
            yield Broken((*here, "ResourceLimits", "MaxNumberOfTrainingJobs"), problem,
                         f"remove max_jobs (SageMaker then runs all {size}), or set it to {size}",
                         GRID_SOURCE)  # fmt: skip
    if strategy != "Hyperband":
        if config.get("StrategyConfig"):
            yield Broken((*here, "StrategyConfig"), f"StrategyConfig is for the Hyperband strategy only, not "
                         f"{strategy}", "remove hyperband:, or use strategy: Hyperband", HYPERBAND_SOURCE)  # fmt: skip
        return
    # HyperParameterTuningJobConfig.TrainingJobEarlyStoppingType (API reference): "Because the Hyperband strategy
    # has its own advanced internal early stopping mechanism, TrainingJobEarlyStoppingType must be OFF to use
    # Hyperband."
    if config.get("TrainingJobEarlyStoppingType", "Off") != "Off":
        yield Broken((*here, "TrainingJobEarlyStoppingType"),
                     "Hyperband stops trials itself: TrainingJobEarlyStoppingType must be Off",
                     "early_stopping: Off (or remove it)", HYPERBAND_SOURCE)  # fmt: skip
    for _, definition in job_definitions("Tuning", args):
        static = definition.get("StaticHyperParameters") or {}
        resource = hyperband_max_resource(config, static)
        if resource is None:
            yield Broken((*here, "Strategy"), "Hyperband needs a MaxResource (the epochs a trial may run): none "
                         f"is given and no static hyperparameter {'/'.join(HYPERBAND_RESOURCE_KEYS)} holds one",
                         "add hyperband: {max_resource: N} (N: the epochs of a full trial)",
                         HYPERBAND_SOURCE)  # fmt: skip
        elif not 1 <= resource <= HYPERBAND_MAX_RESOURCE:
            yield Broken((*here, "StrategyConfig", "HyperbandStrategyConfig", "MaxResource"),
                         f"Hyperband's MaxResource is {resource}; it must be between 1 and "
                         f"{HYPERBAND_MAX_RESOURCE:,}", f"hyperband: {{max_resource: N}} with N at most "
                         f"{HYPERBAND_MAX_RESOURCE}", HYPERBAND_SOURCE)  # fmt: skip


PIPELINES_SOURCE = "sagemaker-python-sdk 34b16d3dc (v2.257.6), the Pipelines service's argument validation"


def _refused_in_pipelines(step_type: str) -> Check:
    def check(args: dict[str, Any]) -> Iterator[Broken]:
        for member in REFUSED_IN_PIPELINES[step_type]:
            if args.get(member):
                fix = ("remove it, and switch capture on outside the pipeline once it deployed: python -m "
                       "pipelines deploy GROUP[:VERSION] ENDPOINT --data-capture PERCENT (UpdateEndpoint)")
                yield Broken((member,), f"SageMaker Pipelines refuses {member} in an {step_type} step",
                             fix if member == "DataCaptureConfig" else "remove it", PIPELINES_SOURCE)

    return check


# each definition step Type -> the checks of its arguments
RULES: dict[str, tuple[Check, ...]] = {
    "Training": (_training_runtime("Training"),),
    "Tuning": (_training_runtime("Tuning"), _tuning),
    "EndpointConfig": (_refused_in_pipelines("EndpointConfig"),),
    "Endpoint": (_refused_in_pipelines("Endpoint"),),
}


def broken(step_type: str, args: dict[str, Any]) -> list[Broken]:
    """Every rule of `RULES` a step of ``step_type`` with these (resolved) arguments breaks."""
    return [b for check in RULES.get(step_type, ()) for b in check(args)]
