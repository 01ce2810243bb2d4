"""``Model``, ``EndpointConfig`` and ``Endpoint``: what a deployment serves, and where."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.report.outcomes.base import Outcome

if TYPE_CHECKING:
    from pipelines.report.view import RunView, StepView


class ModelOutcome(Outcome):
    color = "#e0f2f1"


class EndpointConfigOutcome(Outcome):
    color = "#e0f2f1"


class EndpointOutcome(Outcome):
    color = "#e0f2f1"

    def summary(self, name: str, step: StepView, view: RunView) -> list[str]:
        result = step.result
        url = f" at {result['Url']}" if result.get("Url") else ""
        return [f"endpoint: {result.get('EndpointName', name)} {result.get('EndpointStatus', '')}{url}"]

    def next_steps(self, result: dict[str, Any], where: str) -> list[str]:
        if "EndpointStatus" not in result:
            return []
        name = result["EndpointName"]
        root = where.replace(" --local", "")
        return [f"call it: python -m pipelines invoke {name} FILE{where} (an image .png/.npy/.json; a table's rows "
                "as .csv, or one row as --body 'v1,v2,...')  "
                f"(stop it: python -m pipelines endpoints stop {name}{root})"]  # fmt: skip
