"""``AutoML``: Autopilot's ENSEMBLING job, run locally on AutoGluon-tabular (the library ENSEMBLING trains
with), by `pipelines.local.automl.search` as the job's process.

The result is shaped like ``DescribeAutoMLJob`` (``BestCandidate`` with its ``FinalAutoMLJobObjectiveMetric``
and ``InferenceContainers``, ``ResolvedAttributes``), with every candidate as ``ListCandidatesForAutoMLJob``
returns them under ``Candidates``. The best candidate's model is ``<output>/<job>/model/model.tar.gz``: the
AutoGluon predictor and its inference program, which the local endpoint and the Transform runner serve through
the inference toolkit like any model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import tarfile
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pipelines.files import write_atomic
from pipelines.local.arns import REGION
from pipelines.local.runners.base import CHILDREN_FILE, Job, Runner, StepFailed, run_program
from pipelines.report.view import child_record
from pipelines.spec.automl import ENSEMBLING_ALGORITHMS

SEARCH = Path(__file__).resolve().parents[1] / "automl" / "search.py"  # run as a file: it imports AutoGluon
SERVE = "tabular_serve.py"  # the model's inference program, in its code/ (SAGEMAKER_PROGRAM)
INSTALL = "make install-automl (the automl extra: pip install -e '.[automl]')"
PROGRESS = re.compile(r"^candidate (\d+)/(\d+) (\S+): (\S+)=(\S+) \(best (\S+)\)")
SUPPORTED = "predicted_label,probability,labels,probabilities"
# Autopilot's default for a job without one (API reference, AutoMLJobCompletionCriteria.MaxCandidates: 250 for V1)
DEFAULT_MAX_CANDIDATES = 250
DEFAULT_RUNTIME = 30 * 24 * 3600  # MaxAutoMLJobRuntimeInSeconds' default: 30 days


def automl_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("autogluon", "autogluon.tabular"))


def inference_image() -> str:
    """The image the candidate names: AutoGluon's inference image of the release that trained it (locally not
    pulled: the model is served by this environment)."""
    try:
        release = version("autogluon.tabular")
    except PackageNotFoundError:
        release = "unknown"
    return f"763104351884.dkr.ecr.{REGION}.amazonaws.com/autogluon-inference:{release}-cpu-py311"


class AutoMLRunner(Runner):
    cacheable = True
    # SageMaker's documented cache key attributes for an AutoML step (developer guide, "Default cache key
    # attributes by pipeline step type"): of AutoMLJobConfig only these children
    CONFIG_ATTRIBUTES = ("CompletionCriteria", "CandidateGenerationConfig", "DataSplitConfig", "Mode")

    def cache_material(self, args: dict[str, Any]) -> Any:
        config = args.get("AutoMLJobConfig", {})
        return {"AutoMLJobConfig": {k: config.get(k) for k in self.CONFIG_ATTRIBUTES},
                "AutoMLJobObjective": args.get("AutoMLJobObjective"), "InputDataConfig": args.get("InputDataConfig"),
                "ProblemType": args.get("ProblemType")}  # fmt: skip

    def input_uris(self, args: dict[str, Any]) -> list[str]:
        return [c["DataSource"]["S3DataSource"]["S3Uri"] for c in args.get("InputDataConfig", [])]

    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        if not automl_installed():
            raise StepFailed(f"ClientError: the local AutoML job runs on AutoGluon, which is not installed: {INSTALL}",
                             "ClientError")  # fmt: skip
        started = datetime.now(UTC)
        channels = args.get("InputDataConfig", [])
        training = [c for c in channels if c.get("ChannelType", "training") == "training"]
        if len(training) != 1 or len(channels) != 1:
            raise StepFailed("ClientError: the local AutoML job takes one training channel (a validation channel "
                             "is not run locally; ValidationFraction splits the table)", "ClientError")  # fmt: skip
        channel = training[0]
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        data = job.stage(uri, "/opt/ml/input/data/training")
        config = args.get("AutoMLJobConfig", {})
        criteria = config.get("CompletionCriteria", {})
        generation = config.get("CandidateGenerationConfig", {}).get("AlgorithmsConfig") or [{}]
        spec = {
            "input": str(data), "input_uri": uri, "target": channel["TargetAttributeName"],
            "content_type": (channel.get("ContentType") or "").split(";")[0] or None,
            "problem_type": args.get("ProblemType"),
            "objective": (args.get("AutoMLJobObjective") or {}).get("MetricName"),
            "algorithms": generation[0].get("AutoMLAlgorithms") or list(ENSEMBLING_ALGORITHMS),
            "max_candidates": int(criteria.get("MaxCandidates", DEFAULT_MAX_CANDIDATES)),
            "max_runtime_seconds": int(criteria.get("MaxAutoMLJobRuntimeInSeconds", DEFAULT_RUNTIME)),
            "validation_fraction": float(config.get("DataSplitConfig", {}).get("ValidationFraction", 0.2)),
            "num_cpus": job.nproc or os.cpu_count() or 1,
            "work": str(job.sandbox / "work"), "model": str(job.sandbox / "model"),
            "output": str(job.sandbox / "output"), "serve": SERVE,
        }  # fmt: skip
        if spec["content_type"] == "text/csv":
            spec["content_type"] = None  # CSV or parquet by content

        def on_line(line: str) -> None:
            done = PROGRESS.match(line)
            if done:
                job.progress(f"{done.group(1)}/{done.group(2)} candidates, best {done.group(4)}={done.group(6)}")

        run_program(job, [job.python, str(SEARCH)], spec, "TableError", on_line,
                    {"OMP_NUM_THREADS": str(spec["num_cpus"])})  # fmt: skip
        return self._publish(args, job, spec, started)

    def _publish(self, args: dict[str, Any], job: Job, spec: dict[str, Any], started: datetime) -> dict[str, Any]:
        summary = json.loads((Path(spec["output"]) / "candidates.json").read_text())
        prefix = f"{args['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{job.job_name}"
        archive = job.directory / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for item in sorted(Path(spec["model"]).iterdir()):
                tar.add(item, arcname=item.name)
        model_uri = f"{prefix}/model/model.tar.gz"
        job.store.upload_file(archive, model_uri)
        job.store.upload_file(Path(spec["output"]) / "candidates.json", f"{prefix}/candidates.json")
        job.log(f"best candidate's model: {model_uri}")
        ended = datetime.now(UTC)
        objective, direction = summary["objective"], summary["metric_type"]
        candidates = [_candidate(c, objective, direction, started) for c in summary["candidates"]]
        best = next(c for c in candidates if c["CandidateName"] == summary["best"])
        best["InferenceContainers"] = [{
            "Image": inference_image(), "ModelDataUrl": model_uri,
            "Environment": {"MODEL_NAME": summary["best"], "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
                            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code", "SAGEMAKER_PROGRAM": SERVE,
                            "SAGEMAKER_INFERENCE_SUPPORTED": SUPPORTED if summary["labels"] else "predicted_label",
                            "SAGEMAKER_INFERENCE_OUTPUT": "predicted_label"},
        }]  # fmt: skip
        children = [
            child_record(c["CandidateName"], "Completed",
                         {"algorithm": raw["algorithm"], "seconds since start": f"{raw['ended'] or 0:.1f}"},
                         objective, c["FinalAutoMLJobObjectiveMetric"]["Value"], DurationSeconds=raw["fit_seconds"])
            for c, raw in zip(candidates, summary["candidates"], strict=True)
        ]  # fmt: skip
        write_atomic(job.directory / CHILDREN_FILE, json.dumps(children, indent=2))
        return {
            "AutoMLJobName": job.job_name,
            "AutoMLJobArn": job.arn("automl-job"),
            "InputDataConfig": args.get("InputDataConfig", []),
            "OutputDataConfig": args["OutputDataConfig"],
            "RoleArn": args.get("RoleArn"),
            "AutoMLJobObjective": {"MetricName": objective},
            "ProblemType": summary["problem_type"],
            "AutoMLJobConfig": args.get("AutoMLJobConfig", {}),
            "CreationTime": started.isoformat(),
            "EndTime": ended.isoformat(),
            "LastModifiedTime": ended.isoformat(),
            "AutoMLJobStatus": "Completed",
            "AutoMLJobSecondaryStatus": "Completed",
            "BestCandidate": best,
            "ResolvedAttributes": {"AutoMLJobObjective": {"MetricName": objective},
                                   "ProblemType": summary["problem_type"],
                                   "CompletionCriteria": args.get("AutoMLJobConfig", {}).get("CompletionCriteria", {})},
            "Candidates": candidates,
        }  # fmt: skip


def _candidate(raw: dict[str, Any], objective: str, direction: str, started: datetime) -> dict[str, Any]:
    """One candidate as ListCandidatesForAutoMLJob returns it."""
    value = raw["value"]
    return {
        "CandidateName": raw["name"],
        "FinalAutoMLJobObjectiveMetric": {"Type": direction, "MetricName": objective, "Value": value,
                                          "StandardMetricName": objective},
        "ObjectiveStatus": "Succeeded" if value is not None else "Failed",
        "CandidateSteps": [],
        "CandidateStatus": "Completed",
        "CandidateProperties": {"CandidateMetrics": [{"MetricName": objective, "Value": value, "Set": "Validation",
                                                      "StandardMetricName": objective}]},
        "CreationTime": started.isoformat(),
        "EndTime": started.isoformat() if raw.get("ended") is None else
        datetime.fromtimestamp(started.timestamp() + raw["ended"], UTC).isoformat(),
        "LastModifiedTime": started.isoformat(),
        "Algorithm": raw["algorithm"],
        "FitSeconds": raw["fit_seconds"],
    }  # fmt: skip
