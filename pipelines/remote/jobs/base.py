"""What the remote client knows about one definition ``Type``: the base every Type's `RemoteStep` extends.

A `RemoteStep` names the API call the step's ``Arguments`` are the request of (every request is checked
against botocore's service model with it, before anything is sent), the members the pipeline service fills
in itself, the key of the step's ``Metadata`` in ListPipelineExecutionSteps, where its jobs log, which jobs
explain a failure, how its result is read back (Describe-shaped, once) and what to download for the user.
The client, the remote view and the request checks ask the Type's `RemoteStep`; none names a Type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.remote import Remote
    from pipelines.report.view import RunView

TRAINING_LOGS = "/aws/sagemaker/TrainingJobs"
PROCESSING_LOGS = "/aws/sagemaker/ProcessingJobs"


class RemoteStep:
    """Defaults for a Type that runs no job: nothing to log, describe or download."""

    metadata = ""  # the step's key in ListPipelineExecutionSteps' Metadata ("TrainingJob", "Condition")
    operation: str | None = None  # the API call its Arguments are the request of
    supplied: tuple[str, ...] = ()  # request members the pipeline service fills in when it makes the call
    log_group: str | None = None  # CloudWatch log group of its jobs

    def job_name(self, step: dict[str, Any]) -> str | None:
        """The name of the job (or resource) the step made, from its Metadata entry's ARN."""
        meta = step.get("Metadata", {}).get(self.metadata)
        return str(meta["Arn"]).rsplit("/", 1)[-1] if isinstance(meta, dict) and "Arn" in meta else None

    def log_jobs(self, sm: Any, job_name: str, failed_only: bool = False) -> list[str]:
        """The jobs whose logs belong to this step (a tuning step's: its training jobs; ``failed_only``: the ones
        that explain a failure)."""
        return [job_name] if self.log_group else []

    def describe(self, remote: Remote, view: RunView, step: dict[str, Any]) -> dict[str, Any]:
        """The step's result as its Describe call returns it (what property references read); may add the
        curves and the child jobs it ran to ``view``."""
        return {}

    def downloads(self, result: dict[str, Any]) -> dict[str, str]:
        """File name -> S3 URI of what a finished step leaves for the user (its model, its reports)."""
        return {}
