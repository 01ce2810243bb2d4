"""``Condition`` and ``Fail``: a condition's outcome from its metadata, and the values it compared, read from
the execution's parameters and the evaluation reports already downloaded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.definition import find_step
from pipelines.remote.jobs.base import RemoteStep
from pipelines.report.outcomes.condition import property_file_step

if TYPE_CHECKING:
    from pipelines.remote import Remote
    from pipelines.report.view import RunView


def operand(view: RunView, expression: Any) -> Any:
    """A condition operand's value from the parameters or a downloaded property file (evaluation.json)."""
    if not isinstance(expression, dict):
        return expression
    if "Get" in expression and str(expression["Get"]).startswith("Parameters."):
        return view.parameters.get(expression["Get"].split(".", 1)[1])
    step = property_file_step(expression)
    if step not in view.evaluations:
        return None
    value: Any = view.evaluations[step].report
    for part in expression["Std:JsonGet"]["Path"].split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


class ConditionStep(RemoteStep):
    metadata = "Condition"

    def describe(self, remote: Remote, view: RunView, step: dict[str, Any]) -> dict[str, Any]:
        outcome = str(step.get("Metadata", {}).get(self.metadata, {}).get("Outcome", ""))
        found = find_step(view.definition, step["StepName"]) or {}
        evaluations = [
            {"Type": c["Type"], "LeftValue": operand(view, c.get("LeftValue")),
             "RightValue": operand(view, c.get("RightValue")), "Outcome": outcome == "True"}
            for c in found.get("Arguments", {}).get("Conditions", [])
        ]  # fmt: skip
        return {"Outcome": outcome, "Evaluations": evaluations}


class FailStep(RemoteStep):
    metadata = "Fail"
