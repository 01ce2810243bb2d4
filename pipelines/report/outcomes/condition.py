"""``Condition`` and ``Fail``: the comparisons a condition made (the quality gate), with both values and the
verdict, read from its result's ``Evaluations`` and the definition."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipelines.definition import find_step
from pipelines.report.outcomes.base import Outcome

if TYPE_CHECKING:
    from pipelines.report.view import RunView, StepView

COMPARISONS = {"GreaterThan": ">", "GreaterThanOrEqualTo": ">=", "LessThan": "<", "LessThanOrEqualTo": "<=",
               "Equals": "=="}  # fmt: skip


def property_file_step(expression: Any) -> str | None:
    """The step whose property file a ``Std:JsonGet`` operand reads (``evaluate``), else None."""
    spec = expression.get("Std:JsonGet") if isinstance(expression, dict) else None
    source = spec.get("PropertyFile") if isinstance(spec, dict) else None
    reference = str(source.get("Get", "")) if isinstance(source, dict) else ""
    return reference.split(".")[1] if reference.startswith("Steps.") else None


def describe_value(expression: Any) -> str:
    """A condition operand as people read it: ``evaluate weighted_recall``, ``AccuracyThreshold``, ``0.8``."""
    if isinstance(expression, dict):
        if "Get" in expression:
            reference = str(expression["Get"])
            if reference.startswith("Steps."):
                return " ".join(reference.split(".", 2)[1:])
            return reference.removeprefix("Parameters.").removeprefix("Execution.")
        if "Std:JsonGet" in expression:
            path = expression["Std:JsonGet"]["Path"].removeprefix("metrics.").removesuffix(".value")
            return f"{property_file_step(expression) or 'file'} {path}"
    return expression if isinstance(expression, str) else json.dumps(expression)


def is_literal(expression: Any) -> bool:
    return not isinstance(expression, dict)


class ConditionOutcome(Outcome):
    color = "#fff3e0"

    def comparisons(self, name: str, step: StepView, view: RunView) -> list[dict[str, Any]]:
        definition = find_step(view.definition, name) or {}
        conditions = definition.get("Arguments", {}).get("Conditions", [])
        evaluations = step.result.get("Evaluations") or [{} for _ in conditions]
        out = []
        for condition, evaluation in zip(conditions, evaluations, strict=False):
            if "LeftValue" not in condition:
                continue
            out.append({
                "step": name, "display": view.display(name), "type": condition["Type"],
                "op": COMPARISONS.get(condition["Type"], condition["Type"]),
                "left": describe_value(condition["LeftValue"]), "right": describe_value(condition["RightValue"]),
                "reads": {property_file_step(condition[side]) for side in ("LeftValue", "RightValue")} - {None},
                "left_value": None if is_literal(condition["LeftValue"]) else evaluation.get("LeftValue"),
                "right_value": None if is_literal(condition["RightValue"]) else evaluation.get("RightValue"),
                "outcome": evaluation.get("Outcome", step.result.get("Outcome") == "True") if step.result else None,
            })  # fmt: skip
        return out


class FailOutcome(Outcome):
    color = "#ffebee"
