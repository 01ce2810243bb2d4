"""``kind: tuning``: Bayesian (or other) hyperparameter search over a training job's hyperparameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from pipelines.spec.base import PARAM, Model, Path_
from pipelines.spec.training import TrainingSpec
from pipelines.suggest import suggest

if TYPE_CHECKING:
    from pipelines.spec.checks import Checks


class ContinuousRange(Model):
    type: Literal["continuous"]
    min: float
    max: float
    scaling: Literal["auto", "linear", "log", "reverse_log"] = "auto"

    @model_validator(mode="after")
    def _ordered(self) -> ContinuousRange:
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        if self.scaling == "log" and self.min <= 0:
            raise ValueError("a log-scaled range needs min > 0")
        if self.scaling == "reverse_log" and self.max >= 1:
            raise ValueError("a reverse_log-scaled range needs max < 1 (SageMaker samples 1 - value on a log scale)")
        return self


class IntegerRange(Model):
    type: Literal["integer"]
    min: int
    max: int
    scaling: Literal["auto", "linear", "log"] = "auto"

    @model_validator(mode="after")
    def _ordered(self) -> IntegerRange:
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        if self.scaling == "log" and self.min <= 0:
            raise ValueError("a log-scaled range needs min > 0")
        return self


class CategoricalRange(Model):
    type: Literal["categorical"]
    values: list[str | int | float] = Field(min_length=1)


Range = Annotated[ContinuousRange | IntegerRange | CategoricalRange, Field(discriminator="type")]


class Objective(Model):
    metric: str
    type: Literal["Maximize", "Minimize"] = "Maximize"


class Hyperband(Model):
    """SageMaker's HyperbandStrategyConfig: the fewest and the most epochs a trial runs."""

    min_resource: int = Field(1, ge=1, description="epochs every trial runs before Hyperband may stop it")
    max_resource: int = Field(ge=1, le=20_000, description="the epochs of a full trial (at most 20,000)")

    @model_validator(mode="after")
    def _ordered(self) -> Hyperband:
        if self.min_resource > self.max_resource:
            raise ValueError(f"min_resource ({self.min_resource}) exceeds max_resource ({self.max_resource})")
        return self


DEFAULT_MAX_JOBS = 8  # every strategy but Grid, which runs each combination once


class TuningSpec(TrainingSpec):
    REQUEST_FIELDS = {**TrainingSpec.REQUEST_FIELDS, "MaxNumberOfTrainingJobs": ("max_jobs",),
                      "MaxParallelTrainingJobs": ("max_parallel_jobs",), "Strategy": ("strategy",),
                      "TrainingJobEarlyStoppingType": ("early_stopping",), "StrategyConfig": ("hyperband",),
                      "MaxResource": ("hyperband", "max_resource"), "ParameterRanges": ("ranges",)}  # fmt: skip

    kind: Literal["tuning"]  # type: ignore[assignment]
    objective: Objective
    ranges: dict[str, Range] = Field(min_length=1)
    strategy: Literal["Bayesian", "Random", "Hyperband", "Grid"] = "Bayesian"
    max_jobs: Annotated[Annotated[int, Field(ge=1)] | str, PARAM] | None = Field(
        None, description="a number, or $Param; default 8, and for Grid the number of combinations"
    )
    max_parallel_jobs: Annotated[Annotated[int, Field(ge=1)] | str, PARAM] = Field(2, description="a number, or $Param")
    early_stopping: Literal["Off", "Auto"] = "Off"
    hyperband: Hyperband | None = Field(None, description="Hyperband's min and max epochs per trial")

    @property
    def jobs(self) -> int | str | None:
        """MaxNumberOfTrainingJobs as compiled: the spec's, else 8; for Grid unset unless given (SageMaker
        then runs every combination)."""
        if self.max_jobs is None and self.strategy != "Grid":
            return DEFAULT_MAX_JOBS
        return self.max_jobs

    def grid_size(self) -> int:
        """Distinct combinations of the categorical values (what a Grid search runs)."""
        size = 1
        for r in self.ranges.values():
            size *= len(dict.fromkeys(str(v) for v in r.values)) if r.type == "categorical" else 1
        return size

    @model_validator(mode="after")
    def _parallel_within_total(self) -> TuningSpec:
        total = self.grid_size() if self.strategy == "Grid" and self.max_jobs is None else self.jobs
        if isinstance(total, int) and isinstance(self.max_parallel_jobs, int) and self.max_parallel_jobs > total:
            raise ValueError(f"max_parallel_jobs ({self.max_parallel_jobs}) exceeds max_jobs ({total})")
        return self

    def script_options_used(self, here: Path_) -> list[tuple[Path_, str, str]]:
        return super().script_options_used(here) + [((*here, "ranges", n), n, " to tune") for n in self.ranges]

    def check(self, checks: Checks, here: Path_) -> None:
        super().check(checks, here)
        for i, policy in enumerate(self.retry):
            if "SageMaker.JOB_INTERNAL_ERROR" in policy.errors:
                checks.add(
                    (*here, "retry", i, "errors"),
                    "a tuning step never retries SageMaker.JOB_INTERNAL_ERROR (its training jobs retry internally; "
                    "SageMaker ignores the policy for it)",
                    "remove it; a tuning step's policy can retry SageMaker.CAPACITY_ERROR, SageMaker.RESOURCE_LIMIT, "
                    "Step.SERVICE_FAULT and Step.THROTTLING",
                )
        if self.objective.metric not in self.metrics:
            checks.add(
                (*here, "objective", "metric"),
                f"no metric definition produces the objective '{self.objective.metric}'",
                suggest(self.objective.metric, self.metrics) or "add it under metrics: with a regex",
            )
        for name in self.ranges:
            if name in self.hyperparameters:
                checks.add(
                    (*here, "ranges", name),
                    f"'{name}' is both a fixed hyperparameter and a tuned range",
                    "remove it from hyperparameters",
                )
        for key in ("max_jobs", "max_parallel_jobs"):
            value = getattr(self, key)
            if isinstance(value, str) and checks.parameter_type(value) not in (None, "Integer"):
                checks.add(
                    (*here, key), f"{key} takes an Integer parameter; {value} is not one", "declare it type: Integer"
                )
            elif isinstance(value, str) and not value.startswith("$"):
                checks.add((*here, key), f"{value!r} is neither a number nor $Param", "write a number, e.g. 8")
        if self.hyperband is not None and self.strategy != "Hyperband":
            checks.add((*here, "hyperband"), f"hyperband: configures the Hyperband strategy, not {self.strategy}",
                       "remove hyperband:, or set strategy: Hyperband")  # fmt: skip
        if self.strategy == "Grid":
            for name, r in self.ranges.items():
                if r.type != "categorical":
                    checks.add(
                        (*here, "ranges", name, "type"),
                        f"Grid search takes categorical ranges only; '{name}' is {r.type}",
                        "list its values as {type: categorical, values: [...]}, or use strategy: Bayesian",
                    )
