"""Pipeline specs: pydantic models, frozen, unknown keys rejected. One module per step kind.

A new kind: ``spec/<kind>.py`` (its model, ``output_names``, ``script_options_used`` and ``check``),
one line in the `StepSpec` union (``spec/pipeline.py``), one in `COMPILERS`, and a runner per
definition ``Type`` it compiles to (`RUNNERS`). See docs/design.md.
"""

from pipelines.spec.automl import AutoMLSpec
from pipelines.spec.base import Cache, Image, Instance, Reference, Retry, walk_references
from pipelines.spec.checks import Problem, check_pipeline
from pipelines.spec.deploy import DeploySpec
from pipelines.spec.evaluation import EvaluationSpec
from pipelines.spec.pipeline import GateSpec, ParameterSpec, PipelineSpec, StepSpec, TrackingSpec
from pipelines.spec.processing import ProcessingSpec
from pipelines.spec.register import RegisterSpec
from pipelines.spec.training import Spot, TrainingSpec
from pipelines.spec.transform import TransformSpec
from pipelines.spec.tuning import TuningSpec

__all__ = [
    "AutoMLSpec",
    "Cache",
    "DeploySpec",
    "EvaluationSpec",
    "GateSpec",
    "Image",
    "Instance",
    "ParameterSpec",
    "PipelineSpec",
    "Problem",
    "ProcessingSpec",
    "Reference",
    "RegisterSpec",
    "Retry",
    "Spot",
    "StepSpec",
    "TrackingSpec",
    "TrainingSpec",
    "TransformSpec",
    "TuningSpec",
    "check_pipeline",
    "walk_references",
]
