"""``AutoML``: an Autopilot job, described once: its best candidate, and every candidate as a child job (the
leaderboard), read with ListCandidatesForAutoMLJob."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.remote.jobs.base import RemoteStep
from pipelines.report.view import child_record, seconds

if TYPE_CHECKING:
    from pipelines.remote import Remote
    from pipelines.report.view import RunView


def candidates(sm: Any, job_name: str) -> list[dict[str, Any]]:
    """Every candidate of an AutoML job, best first (by its final objective value)."""
    paginator = sm.get_paginator("list_candidates_for_auto_ml_job")
    pages = paginator.paginate(AutoMLJobName=job_name, SortBy="FinalObjectiveMetricValue")
    return [c for page in pages for c in page.get("Candidates", [])]


def candidate_record(candidate: dict[str, Any]) -> dict[str, Any]:
    """A candidate as every view reads a child job: its algorithm and when it ended, ranked by the objective."""
    metric = candidate.get("FinalAutoMLJobObjectiveMetric", {})
    started, ended = seconds(candidate.get("CreationTime")), seconds(candidate.get("EndTime"))
    algorithm = candidate.get("Algorithm") or next(
        (s.get("CandidateStepName", "") for s in candidate.get("CandidateSteps", [])
         if s.get("CandidateStepType") == "AWS::SageMaker::TrainingJob"), "")  # fmt: skip
    return child_record(
        candidate["CandidateName"], candidate.get("CandidateStatus", ""), {"algorithm": algorithm},
        metric.get("MetricName", "objective"), metric.get("Value"), Started=started, Ended=ended,
        DurationSeconds=(ended - started) if started and ended else None, FailureReason=candidate.get("FailureReason"),
    )  # fmt: skip


class AutoMLJob(RemoteStep):
    metadata = "AutoMLJob"
    operation = "CreateAutoMLJob"
    supplied = ("AutoMLJobName",)

    def describe(self, remote: Remote, view: RunView, step: dict[str, Any]) -> dict[str, Any]:
        name = self.job_name(step)
        if not name:
            return {}
        job = dict(remote.sm.describe_auto_ml_job(AutoMLJobName=name))
        job["Candidates"] = candidates(remote.sm, name)
        view.children[step["StepName"]] = [candidate_record(c) for c in job["Candidates"]]
        return job

    def downloads(self, result: dict[str, Any]) -> dict[str, str]:
        containers = result.get("BestCandidate", {}).get("InferenceContainers", [])
        return {"model.tar.gz": containers[0]["ModelDataUrl"]} if containers else {}
