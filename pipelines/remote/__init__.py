"""SageMaker Pipelines, for real: upload the code, create or update the pipeline, start and follow executions.

The only module besides the compiler that talks to AWS (through boto3; the definition was compiled
offline). Failures print the failing step, its reason and the tail of its CloudWatch logs from every
host; successes download the model artifact and the evaluation report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipelines.errors import UserError
from pipelines.parameters import as_api_value
from pipelines.remote.jobs import RemoteStep, by_metadata
from pipelines.settings import PLACEHOLDER_BUCKET, Settings

TERMINAL = ("Succeeded", "Failed", "Stopped")


class RemoteError(UserError):
    """A problem the user can fix (settings, parameters); the CLI prints it and exits 2."""


def require_settings(settings: Settings) -> None:
    """Upsert and run need a real role, bucket and region before any call is made."""
    missing = []
    if not settings.role_arn:
        missing.append("SMP_ROLE_ARN (the pipeline's execution role ARN)")
    if not settings.default_bucket or settings.default_bucket == PLACEHOLDER_BUCKET:
        missing.append("SMP_DEFAULT_BUCKET (bucket for code, outputs and checkpoints)")
    if not settings.region:
        missing.append("SMP_REGION or AWS_REGION")
    if missing:
        raise RemoteError("missing settings: " + "; ".join(missing) + ". Set them in the environment or .smp.env")


def _s3_parts(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


@dataclass
class Remote:
    settings: Settings
    session: Any = None  # boto3.Session
    echo: Callable[[str], None] = print

    def __post_init__(self) -> None:
        if self.session is None:
            import boto3

            self.session = boto3.Session(region_name=self.settings.require_region())
        self.sm = self.session.client("sagemaker")
        self.s3 = self.session.client("s3")
        self.logs = self.session.client("logs")

    # ----------------------------------------------------------------- upsert

    def upload_code(self, uploads: dict[str, bytes]) -> int:
        """Put the content-addressed code objects in place; ones already there are left alone."""
        put = 0
        for uri, data in sorted(uploads.items()):
            bucket, key = _s3_parts(uri)
            try:
                self.s3.head_object(Bucket=bucket, Key=key)
                continue
            except self.s3.exceptions.ClientError:
                pass
            self.s3.put_object(Bucket=bucket, Key=key, Body=data)
            put += 1
        return put

    def upsert(
        self,
        name: str,
        definition: str,
        uploads: dict[str, bytes],
        description: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """Put the code in place, then create the pipeline, or update it when it exists."""
        require_settings(self.settings)
        put = self.upload_code(uploads)
        self.echo(f"code: {put} new object(s) uploaded, {len(uploads) - put} already in place")
        common = {
            "PipelineName": name,
            "PipelineDisplayName": name,
            "PipelineDefinition": definition,
            "PipelineDescription": description or "",
            "RoleArn": self.settings.role_arn,
        }
        from botocore.exceptions import ClientError

        try:
            response = self.sm.create_pipeline(
                **common, Tags=[{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())]
            )
            self.echo(f"created pipeline {name}")
        except ClientError as exc:
            error = exc.response.get("Error", {})
            # SageMaker answers ValidationException '... already exists' (as the SDK's upsert expects)
            exists = error.get("Code") == "ResourceInUse" or (
                error.get("Code") == "ValidationException" and "already exists" in error.get("Message", "")
            )
            if not exists:
                raise
            response = self.sm.update_pipeline(**common)
            self.echo(f"updated pipeline {name}")
        return str(response["PipelineArn"])

    # ----------------------------------------------------------------- run

    def start(self, name: str, parameters: dict[str, Any], display_name: str | None = None) -> str:
        require_settings(self.settings)
        kwargs: dict[str, Any] = {
            "PipelineName": name,
            "PipelineParameters": [{"Name": k, "Value": as_api_value(v)} for k, v in parameters.items()],
        }
        if display_name:
            kwargs["PipelineExecutionDisplayName"] = display_name
        arn = str(self.sm.start_pipeline_execution(**kwargs)["PipelineExecutionArn"])
        self.echo(f"started {arn}")
        return arn

    def steps(self, execution_arn: str) -> list[dict[str, Any]]:
        pages = self.sm.get_paginator("list_pipeline_execution_steps").paginate(
            PipelineExecutionArn=execution_arn, SortOrder="Ascending"
        )
        return [step for page in pages for step in page.get("PipelineExecutionSteps", [])]

    def wait(self, execution_arn: str, poll_seconds: float = 15.0, sleep: Callable[[float], None] = time.sleep) -> str:
        """Print each step's status changes until the execution ends; return its final status."""
        seen: dict[str, str] = {}
        while True:
            status = self.sm.describe_pipeline_execution(PipelineExecutionArn=execution_arn)["PipelineExecutionStatus"]
            for step in self.steps(execution_arn):
                name, step_status = step["StepName"], step["StepStatus"]
                if seen.get(name) != step_status:
                    seen[name] = step_status
                    cached = " (cache hit)" if step.get("CacheHitResult") else ""
                    self.echo(f"  {name}: {step_status}{cached}")
            if status in TERMINAL:
                self.echo(f"execution {status}")
                return str(status)
            sleep(poll_seconds)

    # ----------------------------------------------------------------- failure report

    def failure_report(self, execution_arn: str, tail: int = 30) -> list[str]:
        lines: list[str] = []
        for step in self.steps(execution_arn):
            if step["StepStatus"] != "Failed":
                continue
            lines.append(f"step '{step['StepName']}' failed: {step.get('FailureReason', 'no reason given')}")
            job, name = remote_step(step)
            if job is None or not name or not job.log_group:
                continue
            for log_job in job.log_jobs(self.sm, name, failed_only=True):
                for stream, events in self.log_tails(job.log_group, log_job, tail):
                    lines.append(f"--- {stream} (last {len(events)} lines)")
                    lines += [f"    {e}" for e in events]
        return lines

    def log_streams(self, group: str, job_name: str) -> Iterator[str]:
        """Every host's log stream of a job (``<job>/algo-1-...``), across pages."""
        pages = self.logs.get_paginator("describe_log_streams").paginate(
            logGroupName=group, logStreamNamePrefix=f"{job_name}/"
        )
        try:
            for page in pages:
                for stream in page.get("logStreams", []):
                    yield stream["logStreamName"]
        except self.logs.exceptions.ResourceNotFoundException:
            return

    def log_tails(self, group: str, job_name: str, tail: int) -> list[tuple[str, list[str]]]:
        return [(stream, self.log_tails_of(group, stream, tail)) for stream in list(self.log_streams(group, job_name))]

    # ----------------------------------------------------------------- success: fetch results

    def download(self, files: dict[str, str], into: Path) -> list[Path]:
        """Each ``file name -> S3 URI`` into ``into`` (what a finished step leaves for the user, per its Type's
        `RemoteStep.downloads`); a missing object is skipped."""
        fetched = [self._download(uri, into / name) for name, uri in files.items()]
        return [path for path in fetched if path is not None]

    def _download(self, uri: str, path: Path) -> Path | None:
        """The object at ``path``; None when there is no such object (an older evaluate.py wrote fewer files)."""
        from botocore.exceptions import ClientError

        bucket, key = _s3_parts(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.s3.download_file(bucket, key, str(path))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        self.echo(f"downloaded {uri} -> {path}")
        return path

    # ----------------------------------------------------------------- list, logs, stop

    def executions(self, pipeline: str) -> list[dict[str, Any]]:
        pages = self.sm.get_paginator("list_pipeline_executions").paginate(
            PipelineName=pipeline, SortBy="CreationTime", SortOrder="Descending"
        )
        return [e for page in pages for e in page.get("PipelineExecutionSummaries", [])]

    def step_logs(self, execution_arn: str, step_name: str, tail: int = 0) -> list[str]:
        """Every host's log of one step's job (a tuning step's: each training job's), ``tail`` lines each."""
        steps = {s["StepName"]: s for s in self.steps(execution_arn)}
        if step_name not in steps:
            from pipelines.suggest import did_you_mean

            hint = did_you_mean(step_name, steps)
            raise RemoteError(f"the execution has no step '{step_name}'" + (f"; {hint}" if hint else ""))
        job, job_name = remote_step(steps[step_name])
        if job is None or not job_name or not job.log_group:
            return [f"step '{step_name}' ran no job with logs (status {steps[step_name]['StepStatus']})"]
        lines: list[str] = []
        for log_job in job.log_jobs(self.sm, job_name):
            for stream in list(self.log_streams(job.log_group, log_job)):
                lines.append(f"--- {stream}")
                if tail:
                    lines += self.log_tails_of(job.log_group, stream, tail)
                else:
                    lines += self.log_events(job.log_group, stream)
        return lines

    def log_events(self, group: str, stream: str, limit: int = 100_000) -> list[str]:
        """A log stream from its start, page by page (a page repeats its token at the end)."""
        out: list[str] = []
        token = None
        while len(out) < limit:
            kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
            if token:
                kwargs["nextToken"] = token
            page = self.logs.get_log_events(**kwargs)
            out += [e["message"].rstrip() for e in page.get("events", [])]
            if not page.get("events") or page.get("nextForwardToken") in (None, token):
                break
            token = page["nextForwardToken"]
        return out

    def log_tails_of(self, group: str, stream: str, tail: int) -> list[str]:
        page = self.logs.get_log_events(logGroupName=group, logStreamName=stream, limit=tail, startFromHead=False)
        return [e["message"].rstrip() for e in page.get("events", [])]

    def retry(self, execution_arn: str) -> None:
        import uuid

        self.sm.retry_pipeline_execution(PipelineExecutionArn=execution_arn, ClientRequestToken=str(uuid.uuid4()))
        self.echo(f"retrying {execution_arn}")

    def stop(self, execution_arn: str) -> None:
        self.sm.stop_pipeline_execution(PipelineExecutionArn=execution_arn)
        self.echo(f"stopping {execution_arn}")

    def view(self, execution_arn: str, into: Path):  # type: ignore[no-untyped-def]
        """The execution as a `RunView` (results downloaded into ``into``), for the summary and the report."""
        from pipelines.remote.view import build_view

        return build_view(self, execution_arn, into)


def remote_step(step: dict[str, Any]) -> tuple[RemoteStep | None, str | None]:
    """(the `RemoteStep` of a ListPipelineExecutionSteps entry's Type, the name of the job it made)."""
    found = by_metadata(step)
    if found is None:
        return None, None
    return found[1], found[1].job_name(step)
