"""``Callback`` (the echo kind's): what it said, and the object it wrote."""

from __future__ import annotations

from typing import Any

from pipelines.report.outcomes.base import Outcome


class EchoOutcome(Outcome):
    color = "#fce4ec"

    def published(self, result: dict[str, Any]) -> list[str]:
        return [result["Output"]] if result.get("Output") else []

    def summary(self, name: str, step: Any, view: Any) -> list[str]:
        return [f"{name}: echoed {step.result.get('Description')!r} under {step.result.get('ExperimentName')}"]
