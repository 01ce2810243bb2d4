"""``Processing``: a processing job, its logs, and an evaluation step's report and files."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.remote.jobs.base import PROCESSING_LOGS, RemoteStep
from pipelines.report.view import EVALUATION_FILES

if TYPE_CHECKING:
    from pipelines.remote import Remote
    from pipelines.report.view import RunView

REPORT_OUTPUT = "evaluation"  # the output an evaluation step publishes its report under


class ProcessingJob(RemoteStep):
    metadata = "ProcessingJob"
    operation = "CreateProcessingJob"
    supplied = ("ProcessingJobName",)
    log_group = PROCESSING_LOGS

    def describe(self, remote: Remote, view: RunView, step: dict[str, Any]) -> dict[str, Any]:
        name = self.job_name(step)
        return dict(remote.sm.describe_processing_job(ProcessingJobName=name)) if name else {}

    def downloads(self, result: dict[str, Any]) -> dict[str, str]:
        for output in result.get("ProcessingOutputConfig", {}).get("Outputs", []):
            if output["OutputName"] == REPORT_OUTPUT:  # an evaluation step's report, predictions and images
                prefix = output["S3Output"]["S3Uri"].rstrip("/")
                return {name: f"{prefix}/{name}" for name in EVALUATION_FILES}
        return {}
