"""A SageMaker execution as a `RunView`: each step described once through its Type's `RemoteStep` (what
property references read), what it leaves for the user downloaded, each training job's curves read back from
its CloudWatch log with the job's own metric regexes; the model and reports asked of the Type's `Outcome`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.definition import find_step
from pipelines.remote import TERMINAL, Remote
from pipelines.remote.jobs import JOBS, by_metadata
from pipelines.report.outcomes import outcome
from pipelines.report.view import Evaluation, RunView, StepView, seconds


def build_view(remote: Remote, arn: str, into: Path) -> RunView:
    sm = remote.sm
    execution = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
    definition = json.loads(
        sm.describe_pipeline_definition_for_execution(PipelineExecutionArn=arn)["PipelineDefinition"]
    )
    pages = sm.get_paginator("list_pipeline_parameters_for_execution").paginate(PipelineExecutionArn=arn)
    parameters = {p["Name"]: p["Value"] for page in pages for p in page.get("PipelineParameters", [])}
    status = execution["PipelineExecutionStatus"]
    view = RunView(
        pipeline=execution.get("PipelineArn", arn.split("/execution/")[0]).rsplit("/", 1)[-1],
        id=arn.rsplit("/", 1)[-1],
        status=status,
        definition=definition,
        parameters=parameters,
        steps={},
        started=seconds(execution.get("CreationTime")),
        ended=seconds(execution.get("LastModifiedTime")) if status in TERMINAL else None,
        where="sagemaker",
    )
    for step in remote.steps(arn):  # in the order they started: an evaluation is read before the gate reading it
        view.steps[step["StepName"]] = _step(remote, view, step, into)
    return view


def _step(remote: Remote, view: RunView, step: dict[str, Any], into: Path) -> StepView:
    name = step["StepName"]
    found = find_step(view.definition, name) or {}
    by_meta = by_metadata(step)
    step_type = found.get("Type") or (by_meta[0] if by_meta else "")
    job = JOBS.get(step_type)
    result = {}
    if step["StepStatus"] == "Succeeded" and job is not None:
        result = job.describe(remote, view, step)
        into.mkdir(parents=True, exist_ok=True)
        remote.download(job.downloads(result), into / name)
        if (into / name / "evaluation.json").is_file():
            view.evaluations[name] = Evaluation(name, into / name)
    artifact = outcome(step_type).model_artifact(result)
    if artifact:
        local = into / name / "model.tar.gz"
        view.artifacts[name] = {"uri": artifact, "path": str(local) if local.exists() else ""}
    if step["StepStatus"] == "Failed" and view.failure is None:
        view.failure = {"step": name, "reason": step.get("FailureReason"), "log": None, "excerpt": []}
    return StepView(
        name=name, type=step_type, status=step["StepStatus"],
        display_name=step.get("StepDisplayName") or found.get("DisplayName"),
        started=seconds(step.get("StartTime")), ended=seconds(step.get("EndTime")),
        cache_hit=bool(step.get("CacheHitResult")),
        attempts=[{"attempt": step.get("AttemptCount", 1), "started": seconds(step.get("StartTime")),
                   "ended": seconds(step.get("EndTime")), "status": step["StepStatus"]}],
        failure_reason=step.get("FailureReason"), result=result,
    )  # fmt: skip
