"""``AutoML``: the best candidate (its objective value and model), the leaderboard of every candidate (the
child jobs, in ``RunView.children``) and what the job published."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.report.outcomes.base import Outcome, artifact_line, number

if TYPE_CHECKING:
    from pipelines.report.view import RunView, StepView

LEADERS = 3  # candidates the closing summary lists


def _model(result: dict[str, Any]) -> str | None:
    containers = result.get("BestCandidate", {}).get("InferenceContainers") or [{}]
    uri = containers[0].get("ModelDataUrl")
    return str(uri) if isinstance(uri, str) else None


class AutoMLOutcome(Outcome):
    color = "#fff3e0"
    child_label = "candidate"
    children_title = "Candidates"

    def model_artifact(self, result: dict[str, Any]) -> str | None:
        return _model(result)

    def published(self, result: dict[str, Any]) -> list[str]:
        """The job's folder under its output path (the best model, the leaderboard)."""
        path = result.get("OutputDataConfig", {}).get("S3OutputPath")
        name = result.get("AutoMLJobName")
        return [f"{path.rstrip('/')}/{name}/"] if path and name else [u for u in [_model(result)] if u]

    def summary(self, name: str, step: StepView, view: RunView) -> list[str]:
        result = step.result
        best = result.get("BestCandidate", {})
        objective = best.get("FinalAutoMLJobObjectiveMetric", {})
        children = view.children.get(name, [])
        out = [
            f"{name}: best of {len(children) or len(result.get('Candidates', []))} candidate(s) "
            f"{best.get('CandidateName')}: {objective.get('MetricName')}={number(objective.get('Value'))} "
            f"({result.get('ProblemType') or result.get('ResolvedAttributes', {}).get('ProblemType', '')})"
        ]
        ranked = [c for c in children if c.get("Value") is not None]
        ranked.sort(key=lambda c: float(c["Value"]), reverse=objective.get("Type") != "Minimize")
        for child in ranked[:LEADERS]:
            algorithm = child.get("Parameters", {}).get("algorithm", "")
            out.append(f"    {child['Name']} ({algorithm}): {number(child['Value'])}")
        return out + artifact_line(name, view)
