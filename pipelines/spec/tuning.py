"""``kind: tuning``: Bayesian (or other) hyperparameter search over a training job's hyperparameters."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipelines.spec.base import Model
from pipelines.spec.training import TrainingSpec


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
        return self


class CategoricalRange(Model):
    type: Literal["categorical"]
    values: list[str | int | float] = Field(min_length=1)


Range = Annotated[ContinuousRange | IntegerRange | CategoricalRange, Field(discriminator="type")]


class Objective(Model):
    metric: str
    type: Literal["Maximize", "Minimize"] = "Maximize"


class TuningSpec(TrainingSpec):
    kind: Literal["tuning"]  # type: ignore[assignment]
    objective: Objective
    ranges: dict[str, Range] = Field(min_length=1)
    strategy: Literal["Bayesian", "Random", "Hyperband", "Grid"] = "Bayesian"
    max_jobs: int = Field(8, ge=1)
    max_parallel_jobs: int = Field(2, ge=1)
    early_stopping: Literal["Off", "Auto"] = "Off"

    @model_validator(mode="after")
    def _parallel_within_total(self) -> TuningSpec:
        if self.max_parallel_jobs > self.max_jobs:
            raise ValueError(f"max_parallel_jobs ({self.max_parallel_jobs}) exceeds max_jobs ({self.max_jobs})")
        return self
