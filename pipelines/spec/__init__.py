"""Pipeline specs: pydantic models, frozen, unknown keys rejected. One module per step kind."""

from pipelines.spec.base import Cache, Image, Instance, Retry
from pipelines.spec.deploy import DeploySpec
from pipelines.spec.evaluation import EvaluationSpec
from pipelines.spec.pipeline import GateSpec, ParameterSpec, PipelineSpec, StepSpec
from pipelines.spec.processing import ProcessingSpec
from pipelines.spec.register import RegisterSpec
from pipelines.spec.training import Spot, TrainingSpec
from pipelines.spec.tuning import TuningSpec

__all__ = [
    "Cache",
    "DeploySpec",
    "EvaluationSpec",
    "GateSpec",
    "Image",
    "Instance",
    "ParameterSpec",
    "PipelineSpec",
    "ProcessingSpec",
    "RegisterSpec",
    "Retry",
    "Spot",
    "StepSpec",
    "TrainingSpec",
    "TuningSpec",
]
