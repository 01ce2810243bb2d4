"""``Training``: a training job's model, its final metrics, and the archives it published."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.report.outcomes.base import Outcome, artifact_line, metrics_text

if TYPE_CHECKING:
    from pipelines.report.view import RunView, StepView


def final_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The last value each metric regex captured (DescribeTrainingJob's FinalMetricDataList)."""
    return {m["MetricName"]: m["Value"] for m in result.get("FinalMetricDataList", [])}


def job_outputs(artifact: str) -> list[str]:
    """What a training job uploads beside its model: ``<output path>/<job>/output/`` holds model.tar.gz and
    output.tar.gz (SM_OUTPUT_DATA_DIR)."""
    prefix = artifact.rsplit("/", 1)[0]
    return [artifact, f"{prefix}/output.tar.gz"]


class TrainingOutcome(Outcome):
    color = "#ede7f6"

    def model_artifact(self, result: dict[str, Any]) -> str | None:
        uri = result.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        return str(uri) if uri else None

    def published(self, result: dict[str, Any]) -> list[str]:
        artifact = self.model_artifact(result)
        return job_outputs(artifact) if artifact else []

    def summary(self, name: str, step: StepView, view: RunView) -> list[str]:
        result = step.result
        line = f"{name}: training job {result.get('TrainingJobName')}: {metrics_text(final_metrics(result))}"
        return [line, *artifact_line(name, view)]
