"""One runner per definition ``Type``, from an explicit table (`RUNNERS`).

A new Type: a module here with a `Runner` subclass, and one line below. The engine names no Type;
a definition holding a Type this table lacks is refused before anything runs.
"""

from __future__ import annotations

from pipelines.local.runners.automl import AutoMLRunner
from pipelines.local.runners.base import Job, Runner, StepFailed
from pipelines.local.runners.condition import ConditionRunner
from pipelines.local.runners.endpoint import EndpointConfigRunner, EndpointRunner, ModelRunner
from pipelines.local.runners.fail import FailRunner
from pipelines.local.runners.processing import ProcessingRunner
from pipelines.local.runners.register import RegisterModelRunner
from pipelines.local.runners.training import TrainingRunner
from pipelines.local.runners.transform import TransformRunner
from pipelines.local.runners.tuning import TuningRunner

__all__ = ["RUNNERS", "Job", "Runner", "StepFailed"]

# definition Type -> its runner; a definition that holds a Type not named here is refused before anything runs
RUNNERS: dict[str, Runner] = {
    "Processing": ProcessingRunner(),  # processing and evaluation steps
    "Training": TrainingRunner(),
    "Tuning": TuningRunner(),  # a search whose trials run through the Training runner
    "Condition": ConditionRunner(),  # the quality gate
    "Fail": FailRunner(),  # the gate's else branch
    "RegisterModel": RegisterModelRunner(),  # a version in the local model registry
    "Model": ModelRunner(),
    "EndpointConfig": EndpointConfigRunner(),
    "Endpoint": EndpointRunner(),  # a local HTTP endpoint, started or updated in place
    "AutoML": AutoMLRunner(),  # Autopilot's ENSEMBLING job, on AutoGluon
    "Transform": TransformRunner(),  # a batch transform through the model's inference program
}
