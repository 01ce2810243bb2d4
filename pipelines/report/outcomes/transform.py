"""``Transform``: where a batch transform job wrote its predictions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.report.outcomes.base import Outcome

if TYPE_CHECKING:
    from pipelines.report.view import RunView, StepView


class TransformOutcome(Outcome):
    color = "#fff3e0"

    def published(self, result: dict[str, Any]) -> list[str]:
        uri = result.get("TransformOutput", {}).get("S3OutputPath")
        return [str(uri)] if uri else []

    def summary(self, name: str, step: StepView, view: RunView) -> list[str]:
        result = step.result
        return [f"{name}: transform job {result.get('TransformJobName')}: predictions in "
                f"{result.get('TransformOutput', {}).get('S3OutputPath')}"]  # fmt: skip
