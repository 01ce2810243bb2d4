"""``Fail``: ends the execution Failed with its error message."""

from __future__ import annotations

from typing import Any

from pipelines.local.expressions import text
from pipelines.local.runners.base import Job, Runner, StepFailed


class FailRunner(Runner):
    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        message = text(args.get("ErrorMessage", "")) or f"Fail step {job.step_name}"
        job.log(message)
        raise StepFailed(message, "Fail")
