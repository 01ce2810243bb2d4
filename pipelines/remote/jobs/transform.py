"""``Transform``: a batch transform job, its logs, and its predictions' location."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.remote.jobs.base import RemoteStep

if TYPE_CHECKING:
    from pipelines.remote import Remote
    from pipelines.report.view import RunView

TRANSFORM_LOGS = "/aws/sagemaker/TransformJobs"


class TransformJob(RemoteStep):
    metadata = "TransformJob"
    operation = "CreateTransformJob"
    supplied = ("TransformJobName",)
    log_group = TRANSFORM_LOGS

    def describe(self, remote: Remote, view: RunView, step: dict[str, Any]) -> dict[str, Any]:
        name = self.job_name(step)
        return dict(remote.sm.describe_transform_job(TransformJobName=name)) if name else {}
