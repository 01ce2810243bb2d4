"""``Processing``: the outputs a processing job uploaded; an evaluation step's report is among them."""

from __future__ import annotations

from typing import Any

from pipelines.report.outcomes.base import Outcome


class ProcessingOutcome(Outcome):
    color = "#e3f2fd"

    def published(self, result: dict[str, Any]) -> list[str]:
        return [o["S3Output"]["S3Uri"] for o in result.get("ProcessingOutputConfig", {}).get("Outputs", [])]

    def report_uris(self, result: dict[str, Any]) -> list[str]:
        return self.published(result)
