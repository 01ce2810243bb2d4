"""A SageMaker execution as a `RunView`: described through the API, its results downloaded, each training
job's curves read back from its CloudWatch log with the job's own metric regexes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pipelines.definition import find_step
from pipelines.remote import TERMINAL, Remote, job_of
from pipelines.remote.jobs import TRAINING_LOGS, trials
from pipelines.report.summary import model_artifact
from pipelines.report.view import Evaluation, RunView, StepView, property_file_step, seconds

# a step's Metadata key -> the definition Type it ran (when the definition does not name the step)
TYPES = {
    "TrainingJob": "Training",
    "ProcessingJob": "Processing",
    "TuningJob": "Tuning",
    "RegisterModel": "RegisterModel",
    "Model": "Model",
    "Condition": "Condition",
    "Fail": "Fail",
    "EndpointConfig": "EndpointConfig",
    "Endpoint": "Endpoint",
}
CURVE_JOBS = 20  # a tuning step's curves are read for at most this many training jobs


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


def _result(remote: Remote, view: RunView, step: dict[str, Any]) -> dict[str, Any]:
    sm = remote.sm
    job_type, name = job_of(step)
    meta = step.get("Metadata", {})
    if job_type == "TrainingJob" and name:
        job = sm.describe_training_job(TrainingJobName=name)
        view.curves[name] = curves_from_log(remote, job)
        return dict(job)
    if job_type == "TuningJob" and name:
        tuning = dict(sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name))
        best = tuning.get("BestTrainingJob", {}).get("TrainingJobName")
        objective = tuning["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
        records = []
        for n, summary in enumerate(trials(sm, name)):
            value = summary.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
            record = {
                "TrainingJobName": summary["TrainingJobName"],
                "TrainingJobStatus": summary["TrainingJobStatus"],
                "TunedHyperParameters": summary.get("TunedHyperParameters", {}),
                "ObjectiveMetric": objective,
                "FinalObjectiveValue": value,
                "Started": seconds(summary.get("TrainingStartTime")),
                "Ended": seconds(summary.get("TrainingEndTime")),
                "Curves": {},
                "FailureReason": summary.get("FailureReason"),
            }
            started, ended = record["Started"], record["Ended"]
            record["DurationSeconds"] = (ended - started) if started and ended else None
            if n < CURVE_JOBS or summary["TrainingJobName"] == best:
                job = sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])
                record["Curves"] = view.curves[summary["TrainingJobName"]] = curves_from_log(remote, job)
                if summary["TrainingJobName"] == best:
                    tuning["BestTrainingJob"]["ModelArtifacts"] = job.get("ModelArtifacts", {})
            records.append(record)
        view.trials[step["StepName"]] = records
        return tuning
    if "RegisterModel" in meta:
        return dict(sm.describe_model_package(ModelPackageName=meta["RegisterModel"]["Arn"]))
    if "Endpoint" in meta:
        endpoint = meta["Endpoint"]["Arn"].rsplit("/", 1)[-1]
        return dict(sm.describe_endpoint(EndpointName=endpoint))
    if "Condition" in meta:
        return {"Outcome": str(meta["Condition"].get("Outcome", ""))}
    return {}


def _operand(view: RunView, expression: Any) -> Any:
    """A condition operand's value from the parameters or a downloaded property file (evaluation.json)."""
    if not isinstance(expression, dict):
        return expression
    if "Get" in expression and str(expression["Get"]).startswith("Parameters."):
        return view.parameters.get(expression["Get"].split(".", 1)[1])
    step = property_file_step(expression)
    if step not in view.evaluations:
        return None
    value: Any = view.evaluations[step].report
    for part in expression["Std:JsonGet"]["Path"].split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


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
    steps = remote.steps(arn)
    if status == "Succeeded" or any(s["StepStatus"] == "Succeeded" for s in steps):
        remote.download_results(arn, into)
    for step in steps:
        name = step["StepName"]
        if (into / name / "evaluation.json").is_file():
            view.evaluations[name] = Evaluation(name, into / name)
    for step in steps:
        name = step["StepName"]
        found = find_step(definition, name) or {}
        result = _result(remote, view, step) if step["StepStatus"] == "Succeeded" else {}
        view.steps[name] = StepView(
            name=name,
            type=found.get("Type") or TYPES.get(next(iter(step.get("Metadata", {})), ""), ""),
            status=step["StepStatus"],
            display_name=step.get("StepDisplayName") or found.get("DisplayName"),
            started=seconds(step.get("StartTime")),
            ended=seconds(step.get("EndTime")),
            cache_hit=bool(step.get("CacheHitResult")),
            attempts=[
                {
                    "attempt": step.get("AttemptCount", 1),
                    "started": seconds(step.get("StartTime")),
                    "ended": seconds(step.get("EndTime")),
                    "status": step["StepStatus"],
                }
            ],
            failure_reason=step.get("FailureReason"),
            result=result,
        )
        if found.get("Type") == "Condition" and result:
            result["Evaluations"] = [
                {
                    "Type": c["Type"],
                    "LeftValue": _operand(view, c.get("LeftValue")),
                    "RightValue": _operand(view, c.get("RightValue")),
                    "Outcome": result["Outcome"] == "True",
                }
                for c in found.get("Arguments", {}).get("Conditions", [])
            ]
        artifact = model_artifact(result)
        if artifact:
            local = into / name / "model.tar.gz"
            view.artifacts[name] = {"uri": artifact, "path": str(local) if local.exists() else ""}
        if step["StepStatus"] == "Failed" and view.failure is None:
            view.failure = {"step": name, "reason": step.get("FailureReason"), "log": None, "excerpt": []}
    return view
