"""``kind: evaluation``: a processing job that publishes ``evaluation.json`` as a property file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from pipelines.spec.base import Path_
from pipelines.spec.processing import ProcessingSpec

if TYPE_CHECKING:
    from pipelines.spec.checks import Checks


class EvaluationSpec(ProcessingSpec):
    kind: Literal["evaluation"]  # type: ignore[assignment]
    script: str = "evaluate.py"
    outputs: list[str] = Field(default_factory=lambda: ["evaluation"])
    report: str = Field("evaluation.json", description="the report file in the 'evaluation' output")
    metrics: list[str] = Field(
        default_factory=lambda: ["weighted_recall"],
        description="metric names the report holds ({'metrics': {name: {'value': x}}}); the gate may use them",
    )

    def output_names(self) -> list[str]:
        return list(dict.fromkeys(["evaluation", *self.outputs]))

    def gate_metrics(self) -> list[str]:
        return list(self.metrics)

    def script_options_used(self, here: Path_) -> list[tuple[Path_, str, str]]:
        used = super().script_options_used(here)
        if "evaluation" not in self.outputs:  # always mounted, even when the spec lists other outputs only
            used.append(((*here, "outputs"), "evaluation", " to receive the report"))
        return used

    def check(self, checks: Checks, here: Path_) -> None:
        from pipelines.spec.scripts import check_reported_metrics

        super().check(checks, here)
        check_reported_metrics(self.script, self.metrics, checks, here)
