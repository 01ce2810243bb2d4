"""``RegisterModel``: the model package version, as DescribeModelPackage returns it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.remote.jobs.base import RemoteStep

if TYPE_CHECKING:
    from pipelines.remote import Remote
    from pipelines.report.view import RunView


class RegisterModelStep(RemoteStep):
    metadata = "RegisterModel"
    operation = "CreateModelPackage"

    def describe(self, remote: Remote, view: RunView, step: dict[str, Any]) -> dict[str, Any]:
        arn = step.get("Metadata", {}).get(self.metadata, {}).get("Arn")
        return dict(remote.sm.describe_model_package(ModelPackageName=arn)) if arn else {}
