"""The pipeline: its parameters, steps and quality gate."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipelines.spec.base import NAME, Model
from pipelines.spec.deploy import DeploySpec
from pipelines.spec.evaluation import EvaluationSpec
from pipelines.spec.processing import ProcessingSpec
from pipelines.spec.register import RegisterSpec
from pipelines.spec.training import TrainingSpec
from pipelines.spec.tuning import TuningSpec

StepSpec = Annotated[
    ProcessingSpec | TrainingSpec | TuningSpec | EvaluationSpec | RegisterSpec | DeploySpec,
    Field(discriminator="kind"),
]

_PYTHON_TYPES = {"String": (str,), "Integer": (int,), "Float": (int, float), "Boolean": (bool,)}


class ParameterSpec(Model):
    type: Literal["String", "Integer", "Float", "Boolean"]
    default: str | int | float | bool
    description: str | None = None

    @model_validator(mode="after")
    def _default_matches_type(self) -> ParameterSpec:
        ok = isinstance(self.default, _PYTHON_TYPES[self.type])
        if self.type in ("Integer", "Float") and isinstance(self.default, bool):
            ok = False
        if not ok:
            raise ValueError(f"default {self.default!r} is not a {self.type}")
        return self


class GateSpec(Model):
    """Register and deploy run only when ``metric`` passes ``threshold``; otherwise the execution fails."""

    metric: str = Field(description="<evaluation step>.<metric>, e.g. evaluate.weighted_recall")
    threshold: str | float = Field(description="a number, or $Param")
    comparison: Literal[">=", ">", "<=", "<"] = ">="


class PipelineSpec(Model):
    name: Annotated[str, Field(pattern=NAME)]
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    parameters: dict[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$")], ParameterSpec] = Field(
        default_factory=dict
    )
    steps: list[StepSpec] = Field(min_length=1)
    gate: GateSpec | None = None

    def step(self, name: str) -> StepSpec | None:
        return next((s for s in self.steps if s.name == name), None)
