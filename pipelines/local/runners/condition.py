"""``Condition``: evaluates its conditions; the branch it does not take is Skipped."""

from __future__ import annotations

import json
from typing import Any

from pipelines.definition import BRANCHES
from pipelines.local.runners.base import Job, Runner


class ConditionRunner(Runner):
    resolve_arguments = False  # its conditions are evaluated as it runs, not resolved up front

    def branches(self, step: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return {key: step["Arguments"].get(key, []) for key in BRANCHES}

    def reads(self, step: dict[str, Any]) -> Any:
        return step["Arguments"].get("Conditions", [])

    def branch_taken(self, result: dict[str, Any]) -> str | None:
        return "IfSteps" if result.get("Outcome") == "True" else "ElseSteps"

    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        evaluations = []
        for condition in step["Arguments"]["Conditions"]:
            entry: dict[str, Any] = {"Type": condition["Type"], "Outcome": job.resolver.condition(condition)}
            if "LeftValue" in condition:  # a comparison: keep both sides, for the summary and the report
                entry |= {"LeftValue": job.resolver(condition["LeftValue"]),
                          "RightValue": job.resolver(condition["RightValue"])}  # fmt: skip
            job.log(f"condition {json.dumps(entry)}")
            evaluations.append(entry)
        outcome = all(e["Outcome"] for e in evaluations)
        job.log(f"conditions evaluated to {outcome}")
        # SageMaker's step metadata holds the Outcome; the values are this engine's addition
        return {"Outcome": "True" if outcome else "False", "Evaluations": evaluations}
