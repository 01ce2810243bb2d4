"""``Tuning``: a hyperparameter tuning job, described once: its best training job, every training job as a
child job (with the curves of the first ones), their logs, and the best model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.remote.jobs.base import TRAINING_LOGS, RemoteStep
from pipelines.remote.jobs.training import TrainingJob, curves_from_log
from pipelines.report.view import child_record, seconds

if TYPE_CHECKING:
    from pipelines.remote import Remote
    from pipelines.report.view import RunView

CURVE_JOBS = 20  # a tuning step's curves are read for at most this many training jobs


def trials(sm: Any, tuning_job: str, status: str | None = None) -> list[dict[str, Any]]:
    """A tuning job's training job summaries, in the order they were created."""
    paginator = sm.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job")
    kwargs: dict[str, Any] = {
        "HyperParameterTuningJobName": tuning_job,
        "SortBy": "CreationTime",
        "SortOrder": "Ascending",
    }
    if status:
        kwargs["StatusEquals"] = status
    return [s for page in paginator.paginate(**kwargs) for s in page.get("TrainingJobSummaries", [])]


class TuningJob(RemoteStep):
    metadata = "TuningJob"
    operation = "CreateHyperParameterTuningJob"
    supplied = ("HyperParameterTuningJobName",)
    log_group = TRAINING_LOGS

    def log_jobs(self, sm: Any, job_name: str, failed_only: bool = False) -> list[str]:
        return [s["TrainingJobName"] for s in trials(sm, job_name, "Failed" if failed_only else None)]

    def describe(self, remote: Remote, view: RunView, step: dict[str, Any]) -> dict[str, Any]:
        name = self.job_name(step)
        if not name:
            return {}
        sm = remote.sm
        tuning = dict(sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name))
        best = tuning.get("BestTrainingJob", {}).get("TrainingJobName")
        objective = tuning["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
        records = []
        for n, summary in enumerate(trials(sm, name)):
            job_name = summary["TrainingJobName"]
            started, ended = seconds(summary.get("TrainingStartTime")), seconds(summary.get("TrainingEndTime"))
            record = child_record(
                job_name, summary["TrainingJobStatus"], summary.get("TunedHyperParameters", {}), objective,
                summary.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value"), Started=started,
                Ended=ended, DurationSeconds=(ended - started) if started and ended else None,
                FailureReason=summary.get("FailureReason"),
            )  # fmt: skip
            if n < CURVE_JOBS or job_name == best:
                job = sm.describe_training_job(TrainingJobName=job_name)
                record["Curves"] = view.curves[job_name] = curves_from_log(remote, job)
                if job_name == best:
                    tuning["BestTrainingJob"]["ModelArtifacts"] = job.get("ModelArtifacts", {})
            records.append(record)
        view.children[step["StepName"]] = records
        return tuning

    def downloads(self, result: dict[str, Any]) -> dict[str, str]:
        return TrainingJob().downloads(result.get("BestTrainingJob", {}))
