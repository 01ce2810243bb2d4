"""What the remote client knows about each kind of job a pipeline step runs, keyed by the step's
``Metadata`` entry in ListPipelineExecutionSteps: where its logs are, and which results to fetch.

One class per job kind; `JOBS` is the table. A kind not in it has no logs or results to fetch.
"""

from __future__ import annotations

from typing import Any, Protocol

from pipelines.report.view import EVALUATION_FILES

TRAINING_LOGS = "/aws/sagemaker/TrainingJobs"
PROCESSING_LOGS = "/aws/sagemaker/ProcessingJobs"


class JobKind(Protocol):
    log_group: str

    def log_jobs(self, sm: Any, job_name: str) -> list[str]:
        """The jobs whose logs explain this step (a tuning step's are its training jobs)."""
        ...

    def results(self, sm: Any, job_name: str) -> dict[str, str]:
        """File name -> S3 URI of what a finished step leaves for the user."""
        ...


class TrainingJob:
    log_group = TRAINING_LOGS

    def log_jobs(self, sm: Any, job_name: str) -> list[str]:
        return [job_name]

    def results(self, sm: Any, job_name: str) -> dict[str, str]:
        job = sm.describe_training_job(TrainingJobName=job_name)
        return {"model.tar.gz": job["ModelArtifacts"]["S3ModelArtifacts"]}


class TuningJob:
    log_group = TRAINING_LOGS

    def log_jobs(self, sm: Any, job_name: str, status: str | None = "Failed") -> list[str]:
        """Its training jobs (by default the failed ones, which explain a failure)."""
        return [s["TrainingJobName"] for s in trials(sm, job_name, status)]

    def results(self, sm: Any, job_name: str) -> dict[str, str]:
        tuning = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=job_name)
        best = tuning.get("BestTrainingJob", {}).get("TrainingJobName")
        return TrainingJob().results(sm, best) if best else {}


class ProcessingJob:
    log_group = PROCESSING_LOGS

    def log_jobs(self, sm: Any, job_name: str) -> list[str]:
        return [job_name]

    def results(self, sm: Any, job_name: str) -> dict[str, str]:
        job = sm.describe_processing_job(ProcessingJobName=job_name)
        for output in job.get("ProcessingOutputConfig", {}).get("Outputs", []):
            if output["OutputName"] == "evaluation":  # an evaluation step's report, predictions and images
                prefix = output["S3Output"]["S3Uri"].rstrip("/")
                return {name: f"{prefix}/{name}" for name in EVALUATION_FILES}
        return {}


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


# Metadata key of a pipeline step -> what its job leaves behind
JOBS: dict[str, JobKind] = {
    "TrainingJob": TrainingJob(),
    "TuningJob": TuningJob(),
    "ProcessingJob": ProcessingJob(),
}
