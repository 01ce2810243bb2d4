"""The pipeline: its parameters, steps and quality gate, and the graph its references make."""

from __future__ import annotations

import graphlib
import math
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args

from pydantic import Field, model_validator

from pipelines.spec.automl import AutoMLSpec
from pipelines.spec.base import NAME, PARAM, Model
from pipelines.spec.deploy import DeploySpec
from pipelines.spec.evaluation import EvaluationSpec
from pipelines.spec.processing import ProcessingSpec
from pipelines.spec.register import RegisterSpec
from pipelines.spec.training import TrainingSpec
from pipelines.spec.transform import TransformSpec
from pipelines.spec.tuning import TuningSpec
from pipelines.suggest import suggest

if TYPE_CHECKING:
    from pipelines.spec.checks import Checks

# The spec union: one line per step kind, discriminated by `kind` (a kind equals its module's name)
StepSpec = Annotated[
    Union[  # noqa: UP007 - one line per kind, so adding one is one line
        ProcessingSpec,
        TrainingSpec,
        TuningSpec,
        EvaluationSpec,
        RegisterSpec,
        DeploySpec,
        AutoMLSpec,
        TransformSpec,
    ],
    Field(discriminator="kind"),
]


def step_kinds() -> list[str]:
    """Every step ``kind`` a spec may use, in the union's order."""
    union = get_args(StepSpec)[0]
    return [get_args(model.model_fields["kind"].annotation)[0] for model in get_args(union)]

_PYTHON_TYPES = {"String": (str,), "Integer": (int,), "Float": (int, float), "Boolean": (bool,)}


class ParameterSpec(Model):
    type: Literal["String", "Integer", "Float", "Boolean"]
    default: str | int | float | bool
    description: str | None = None
    min: float | None = Field(None, description="Integer/Float: the smallest value allowed")
    max: float | None = Field(None, description="Integer/Float: the largest value allowed")
    choices: list[str | int | float] | None = Field(None, min_length=1, description="the only values allowed")

    @model_validator(mode="after")
    def _default_matches_type(self) -> ParameterSpec:
        for key in ("default", "min", "max"):
            value = getattr(self, key)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{key} {value!r} is not a finite number")
        ok = isinstance(self.default, _PYTHON_TYPES[self.type])
        if self.type in ("Integer", "Float") and isinstance(self.default, bool):
            ok = False
        if not ok:
            raise ValueError(f"default {self.default!r} is not a {self.type}")
        if (self.min is not None or self.max is not None) and self.type not in ("Integer", "Float"):
            raise ValueError(f"min/max bound numbers; a {self.type} parameter takes choices: [...] instead")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        if self.choices is not None and self.type == "Boolean":
            raise ValueError("a Boolean parameter has two values already; drop choices")
        wrong = [c for c in self.choices or [] if not isinstance(c, _PYTHON_TYPES[self.type]) or isinstance(c, bool)]
        if wrong:
            raise ValueError(f"choices {wrong} are not {self.type} values")
        problem = self.refuse(self.default)
        if problem:
            raise ValueError(f"default {problem}")
        return self

    def refuse(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (None when it is): the rule and what is."""
        if self.choices is not None and value not in self.choices:
            return f"{value!r} is not one of the choices {self.choices}"
        if self.min is not None and isinstance(value, int | float) and value < self.min:
            return f"{value!r} is below the minimum {self.min:g}"
        if self.max is not None and isinstance(value, int | float) and value > self.max:
            return f"{value!r} is above the maximum {self.max:g}"
        return None


class GateSpec(Model):
    """Register and deploy run only when ``metric`` passes ``threshold``; otherwise the execution fails."""

    metric: str = Field(
        description="<step>.<metric>: an evaluation step's metric (evaluate.weighted_recall), or an automl step's "
        "objective (automl.objective)"
    )
    threshold: Annotated[str | float, PARAM] = Field(description="a number, or $Param")
    comparison: Literal[">=", ">", "<=", "<"] = ">="

    def check(self, checks: Checks) -> None:
        spec = checks.spec
        step_name, _, metric = self.metric.partition(".")
        target = spec.step(step_name)
        readable = [s.name for s in spec.steps if s.gate_metrics()]
        if target is None or not target.gate_metrics():
            checks.add(
                ("gate", "metric"),
                f"'{step_name}' is not a step whose metrics a gate reads (an evaluation or an automl step)",
                suggest(step_name, readable) or "add an evaluation step",
            )
        elif metric not in target.gate_metrics():
            checks.add(
                ("gate", "metric"),
                f"{target.kind} step '{step_name}' produces no metric '{metric}'",
                suggest(metric, target.gate_metrics()) or "list it under the evaluation step's metrics:",
            )
        if isinstance(self.threshold, str):
            declared = checks.parameter_type(self.threshold)
            if not self.threshold.startswith("$"):
                checks.add(
                    ("gate", "threshold"),
                    f"{self.threshold!r} is neither a number nor $Param",
                    "write 0.9 or $AccuracyThreshold",
                )
            elif declared is not None and declared not in ("Float", "Integer"):
                checks.add(
                    ("gate", "threshold"), f"parameter '{self.threshold[1:]}' is not a number", "declare it type: Float"
                )


# botocore, MlflowConfig.MlflowResourceArn: a tracking server's or an MLflow app's ARN
MLFLOW_ARN = r"^arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:mlflow-[a-zA-Z-]*/.*$"


class TrackingSpec(Model):
    """Experiment tracking in MLflow. Locally every run records into the run root's own MLflow store; on
    SageMaker, ``mlflow`` names the managed MLflow resource (tracking server or app) the jobs log to."""

    mlflow: Annotated[str, PARAM] | None = Field(
        None, description="SageMaker managed MLflow: arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/NAME "
        "(or an mlflow-app ARN), or $Param; omitted: tracking is local only",
    )
    # SageMaker's AIMlflowConfig.MlflowExperimentName pattern (API reference), less a leading '.' or '/'
    experiment: str | None = Field(
        None, min_length=1, max_length=256, pattern=r"^[a-zA-Z0-9_\-][a-zA-Z0-9\-_./]*$",
        description="the MLflow experiment (letters, digits, - _ . /); default: the pipeline's name",
    )

    def check(self, checks: Checks) -> None:
        value = self.mlflow
        if value is None:
            return
        if value.startswith("$"):
            declared = checks.parameter_type(value)
            if declared is not None and declared != "String":
                checks.add(("tracking", "mlflow"), f"parameter '{value[1:]}' is not a String",
                           "declare it type: String")  # fmt: skip
            default = checks.spec.parameters.get(value[1:])
            value = str(default.default) if default is not None else ""
            if not value:
                return
        if not re.match(MLFLOW_ARN, value):
            checks.add(
                ("tracking", "mlflow"),
                f"{value!r} is not a SageMaker MLflow ARN (MlflowConfig.MlflowResourceArn, botocore's pattern "
                "arn:aws:sagemaker:<region>:<account>:mlflow-<kind>/<name>)",
                "use the tracking server's ARN (aws sagemaker describe-mlflow-tracking-server), or omit mlflow: "
                "for local tracking only",
            )


class PipelineSpec(Model):
    name: Annotated[str, Field(pattern=NAME)]
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    parameters: dict[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$")], ParameterSpec] = Field(
        default_factory=dict
    )
    steps: list[StepSpec] = Field(min_length=1)
    gate: GateSpec | None = None
    tracking: TrackingSpec = TrackingSpec()

    @property
    def experiment(self) -> str:
        """The MLflow experiment executions record into."""
        return self.tracking.experiment or self.name

    def refuse_overrides(self, overrides: dict[str, Any]) -> list[str]:
        """Each override outside its parameter's min/max/choices, as a message naming the rule."""
        return [
            f"parameter '{name}': {problem}"
            for name, value in overrides.items()
            if name in self.parameters and (problem := self.parameters[name].refuse(value))
        ]

    def step(self, name: str) -> StepSpec | None:
        return next((s for s in self.steps if s.name == name), None)

    def dependencies(self, step: StepSpec) -> list[str]:
        """Names of the steps a step reads from or depends on, in the order they are named."""
        deps = [ref.step[0] for ref in step.references() if ref.step is not None]
        return list(dict.fromkeys(d for d in deps if d != step.name))

    def execution_order(self) -> list[str]:
        """Step names, each after everything it depends on; raises `graphlib.CycleError` on a cycle."""
        graph = {s.name: self.dependencies(s) for s in self.steps}
        return list(graphlib.TopologicalSorter(graph).static_order())
