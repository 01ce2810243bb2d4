"""``Tuning``: the best training job's model and hyperparameters, and every training job it ran (its child
jobs, in ``RunView.children``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.report.outcomes.base import Outcome, artifact_line, as_number, metrics_text, number
from pipelines.report.outcomes.training import job_outputs

if TYPE_CHECKING:
    from pipelines.report.view import RunView, StepView


class TuningOutcome(Outcome):
    color = "#ede7f6"
    child_label = "training job"
    children_title = "Tuning"

    def model_artifact(self, result: dict[str, Any]) -> str | None:
        uri = result.get("BestTrainingJob", {}).get("ModelArtifacts", {}).get("S3ModelArtifacts")
        return str(uri) if uri else None

    def published(self, result: dict[str, Any]) -> list[str]:
        """Every training job's archives: ``<output path>/<job>/output/...``, the best one's included."""
        path = (result.get("TrainingJobDefinition") or {}).get("OutputDataConfig", {}).get("S3OutputPath", "")
        names = [s["TrainingJobName"] for s in result.get("TrainingJobSummaries", [])]
        out = [uri for name in names if path for uri in job_outputs(f"{path.rstrip('/')}/{name}/output/model.tar.gz")]
        best = self.model_artifact(result)
        return out or (job_outputs(best) if best else [])

    def summary(self, name: str, step: StepView, view: RunView) -> list[str]:
        result = step.result
        best = result.get("BestTrainingJob", {})
        objective = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
        children = view.children.get(name, [])
        record = next((c for c in children if c.get("Name") == best.get("TrainingJobName")), {})
        finals = {k: v[-1] for k, v in (record.get("Curves") or {}).items() if v}
        hps = ", ".join(f"{k}={number(as_number(v))}" for k, v in best.get("TunedHyperParameters", {}).items())
        counts = result.get("ObjectiveStatusCounters") or result.get("TrainingJobStatusCounters") or {}
        total = sum(v for v in counts.values() if isinstance(v, int)) or len(children)
        out = [
            f"{name}: best of {total} training job(s) {best.get('TrainingJobName')}: "
            f"{objective.get('MetricName')}={number(objective.get('Value'))} ({hps})"
        ]
        if finals:
            out.append(f"    final metrics: {metrics_text(finals)}")
        return out + artifact_line(name, view)
