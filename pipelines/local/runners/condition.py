"""``Condition``: evaluates its conditions; the branch it does not take is Skipped."""

from __future__ import annotations

from typing import Any

from pipelines.local.runners.base import Job, Runner

BRANCHES = ("IfSteps", "ElseSteps")


class ConditionRunner(Runner):
    resolve_arguments = False  # its conditions are evaluated as it runs, not resolved up front

    def branches(self, step: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return {key: step["Arguments"].get(key, []) for key in BRANCHES}

    def reads(self, step: dict[str, Any]) -> Any:
        return step["Arguments"].get("Conditions", [])

    def branch_taken(self, result: dict[str, Any]) -> str | None:
        return "IfSteps" if result.get("Outcome") == "True" else "ElseSteps"

    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        outcome = all(job.resolver.condition(c) for c in step["Arguments"]["Conditions"])
        job.log(f"conditions evaluated to {outcome}")
        return {"Outcome": "True" if outcome else "False"}
