"""What the remote client knows about each definition ``Type``, from an explicit table (`JOBS`).

A new Type: a module here with a `RemoteStep` subclass, and one line below. A Type the table lacks has no
API request to check, no logs and nothing to read back.
"""

from __future__ import annotations

from pipelines.remote.jobs.automl import AutoMLJob
from pipelines.remote.jobs.base import PROCESSING_LOGS, TRAINING_LOGS, RemoteStep
from pipelines.remote.jobs.condition import ConditionStep, FailStep
from pipelines.remote.jobs.endpoint import EndpointConfigStep, EndpointStep, ModelStep
from pipelines.remote.jobs.processing import ProcessingJob
from pipelines.remote.jobs.register import RegisterModelStep
from pipelines.remote.jobs.training import TrainingJob
from pipelines.remote.jobs.transform import TransformJob
from pipelines.remote.jobs.tuning import TuningJob, trials

__all__ = ["JOBS", "PROCESSING_LOGS", "TRAINING_LOGS", "RemoteStep", "by_metadata", "operations", "trials"]

# definition Type -> its remote side
JOBS: dict[str, RemoteStep] = {
    "Processing": ProcessingJob(),  # processing and evaluation steps
    "Training": TrainingJob(),
    "Tuning": TuningJob(),  # its training jobs log, and are read back as child jobs
    "Condition": ConditionStep(),
    "Fail": FailStep(),
    "RegisterModel": RegisterModelStep(),
    "Model": ModelStep(),
    "EndpointConfig": EndpointConfigStep(),
    "Endpoint": EndpointStep(),
    "AutoML": AutoMLJob(),  # its candidates are read back as child jobs
    "Transform": TransformJob(),
}


def operations() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Type -> (the API call its Arguments are the request of, the members the pipeline service supplies)."""
    return {name: (job.operation, job.supplied) for name, job in JOBS.items() if job.operation}


def by_metadata(step: dict[str, object]) -> tuple[str, RemoteStep] | None:
    """(Type, its `RemoteStep`) of a ListPipelineExecutionSteps entry, found by its Metadata key."""
    keys = set(step.get("Metadata") or {})  # type: ignore[call-overload]
    return next(((name, job) for name, job in JOBS.items() if job.metadata in keys), None)
