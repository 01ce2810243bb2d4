"""``RegisterModel``: the model package version a registration made."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.report.outcomes.base import Outcome

if TYPE_CHECKING:
    from pipelines.report.view import RunView, StepView


class RegisterModelOutcome(Outcome):
    color = "#e8f5e9"

    def summary(self, name: str, step: StepView, view: RunView) -> list[str]:
        result = step.result
        if "ModelPackageArn" not in result:
            return []
        version = result.get("ModelPackageVersion") or result["ModelPackageArn"].rsplit("/", 1)[-1]
        status = result.get("ModelApprovalStatus", "")
        return [f"registered: {result.get('ModelPackageGroupName', '')} version {version} ({status})".strip()]

    def next_steps(self, result: dict[str, Any], where: str) -> list[str]:
        if "ModelPackageArn" not in result:
            return []
        package = f"{result['ModelPackageGroupName']}:{result['ModelPackageVersion']}"
        return [f"inspect it: python -m pipelines registry describe {package}{where}"]
