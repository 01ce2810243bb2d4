"""``Model``, ``EndpointConfig`` and ``Endpoint``: the requests they make, and the endpoint as
DescribeEndpoint returns it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.remote.jobs.base import RemoteStep

if TYPE_CHECKING:
    from pipelines.remote import Remote
    from pipelines.report.view import RunView


class ModelStep(RemoteStep):
    metadata = "Model"
    operation = "CreateModel"
    supplied = ("ModelName",)


class EndpointConfigStep(RemoteStep):
    metadata = "EndpointConfig"
    operation = "CreateEndpointConfig"


class EndpointStep(RemoteStep):
    metadata = "Endpoint"
    operation = "CreateEndpoint"

    def describe(self, remote: Remote, view: RunView, step: dict[str, Any]) -> dict[str, Any]:
        name = self.job_name(step)
        return dict(remote.sm.describe_endpoint(EndpointName=name)) if name else {}
