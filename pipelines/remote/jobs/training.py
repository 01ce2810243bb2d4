"""``Training``: a training job, its logs, its curves read back from its log with its own metric regexes,
and its model."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pipelines.remote.jobs.base import TRAINING_LOGS, RemoteStep

if TYPE_CHECKING:
    from pipelines.remote import Remote
    from pipelines.report.view import RunView


def curves_from_log(remote: Remote, job: dict[str, Any]) -> dict[str, list[float]]:
    """Every value each metric regex of a training job captured in its first host's log, in order."""
    regexes = [
        (m["Name"], re.compile(m["Regex"])) for m in job.get("AlgorithmSpecification", {}).get("MetricDefinitions", [])
    ]
    streams = sorted(remote.log_streams(TRAINING_LOGS, job["TrainingJobName"]))
    series: dict[str, list[float]] = {}
    if not regexes or not streams:
        return series
    for line in remote.log_events(TRAINING_LOGS, streams[0]):
        for name, regex in regexes:
            match = regex.search(line)
            if match:
                try:
                    series.setdefault(name, []).append(float(match.group(1)))
                except (ValueError, IndexError):
                    continue
    return series


class TrainingJob(RemoteStep):
    metadata = "TrainingJob"
    operation = "CreateTrainingJob"
    supplied = ("TrainingJobName",)
    log_group = TRAINING_LOGS

    def describe(self, remote: Remote, view: RunView, step: dict[str, Any]) -> dict[str, Any]:
        name = self.job_name(step)
        if not name:
            return {}
        job = dict(remote.sm.describe_training_job(TrainingJobName=name))
        view.curves[name] = curves_from_log(remote, job)
        return job

    def downloads(self, result: dict[str, Any]) -> dict[str, str]:
        artifact = result.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        return {"model.tar.gz": artifact} if artifact else {}
