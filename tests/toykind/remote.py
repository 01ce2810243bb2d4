"""``Callback`` (the echo kind's) on SageMaker: its request is CreateExperiment's, read back with DescribeExperiment."""

from __future__ import annotations

from typing import Any

from pipelines.definition import find_step
from pipelines.remote.jobs.base import RemoteStep


class EchoStep(RemoteStep):
    operation = "CreateExperiment"

    def describe(self, remote: Any, view: Any, step: dict[str, Any]) -> dict[str, Any]:
        found = find_step(view.definition, step["StepName"]) or {}
        name = found.get("Arguments", {}).get("ExperimentName")
        return dict(remote.sm.describe_experiment(ExperimentName=name)) if name else {}
