"""What each definition Type's result means to people, from an explicit table (`OUTCOMES`).

A new Type: a module here with an `Outcome` subclass, and one line below. A Type the table lacks shows its
status and nothing more. See `pipelines.report.outcomes.base` for what an `Outcome` answers.
"""

from __future__ import annotations

from pipelines.report.outcomes.automl import AutoMLOutcome
from pipelines.report.outcomes.base import Outcome
from pipelines.report.outcomes.condition import ConditionOutcome, FailOutcome
from pipelines.report.outcomes.endpoint import EndpointConfigOutcome, EndpointOutcome, ModelOutcome
from pipelines.report.outcomes.processing import ProcessingOutcome
from pipelines.report.outcomes.register import RegisterModelOutcome
from pipelines.report.outcomes.training import TrainingOutcome
from pipelines.report.outcomes.transform import TransformOutcome
from pipelines.report.outcomes.tuning import TuningOutcome

__all__ = ["OUTCOMES", "Outcome", "outcome"]

# definition Type -> how its result shows
OUTCOMES: dict[str, Outcome] = {
    "Processing": ProcessingOutcome(),  # processing and evaluation steps: their outputs (and reports)
    "Training": TrainingOutcome(),
    "Tuning": TuningOutcome(),  # the best training job, and every training job as a child job
    "Condition": ConditionOutcome(),  # the quality gate's comparisons
    "Fail": FailOutcome(),
    "RegisterModel": RegisterModelOutcome(),
    "Model": ModelOutcome(),
    "EndpointConfig": EndpointConfigOutcome(),
    "Endpoint": EndpointOutcome(),
    "AutoML": AutoMLOutcome(),
    "Transform": TransformOutcome(),
}

_NOTHING = Outcome()


def outcome(step_type: str) -> Outcome:
    """The Type's `Outcome` (a Type without one shows its status alone)."""
    return OUTCOMES.get(step_type, _NOTHING)
