"""``Processing``: the job's container command run as a subprocess, inputs staged, outputs uploaded."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pipelines.local.expressions import text
from pipelines.local.runners.base import Job, Runner, StepFailed, job_environment, warn_unemulated


class ProcessingRunner(Runner):
    cacheable = True

    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        return run_processing(step, args, job)

    # SageMaker's documented cache key attributes for a processing step
    CACHE_ATTRIBUTES = ("AppSpecification", "Environment", "ProcessingInputs")

    def cache_material(self, args: dict[str, Any]) -> Any:
        return {k: args.get(k) for k in self.CACHE_ATTRIBUTES}

    def input_uris(self, args: dict[str, Any]) -> list[str]:
        return [item["S3Input"]["S3Uri"] for item in args.get("ProcessingInputs", []) if "S3Input" in item]

    def outputs(self, result: dict[str, Any]) -> list[str]:
        return [o["S3Output"]["S3Uri"] for o in result.get("ProcessingOutputConfig", {}).get("Outputs", [])]


# a processing script's progress lines: "<done>/<total> rows" (preprocess.py prints one per row group)
PROGRESS = re.compile(r"\b(\d+)/(\d+) (rows|images|files|batches)\b")


def _python(cmd: list[str], job: Job) -> list[str]:
    """Images are not pulled: the container's python runs as the project's interpreter."""
    return [job.python if c in ("python", "python3") else c for c in cmd]


def run_processing(step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
    warn_unemulated(args.get("ProcessingResources", {}).get("ClusterConfig", {}).get("InstanceCount", 1), job)
    for item in args.get("ProcessingInputs", []):
        job.stage(item["S3Input"]["S3Uri"], item["S3Input"]["LocalPath"])
    outputs = args.get("ProcessingOutputConfig", {}).get("Outputs", [])
    for item in outputs:
        Path(job.relocate(item["S3Output"]["LocalPath"])).mkdir(parents=True, exist_ok=True)
    # what SageMaker writes into every processing container
    config = Path(job.relocate("/opt/ml/config"))
    config.mkdir(parents=True, exist_ok=True)
    (config / "processingjobconfig.json").write_text(
        json.dumps({"ProcessingJobName": job.job_name, "ProcessingJobArn": job.arn("processing-job"), **args}, indent=2)
    )
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    app = args["AppSpecification"]
    cmd = _python(
        [text(c) for c in job.relocate(app.get("ContainerEntrypoint", []) + app.get("ContainerArguments", []))], job
    )
    env = job_environment({k: text(v) for k, v in job.relocate(args.get("Environment", {})).items()}, job)
    job.sandbox.mkdir(parents=True, exist_ok=True)

    def on_line(line: str) -> None:
        done = PROGRESS.search(line)
        if done:
            job.progress(f"{done.group(1)}/{done.group(2)} {done.group(3)}")

    job.run(cmd, env, job.sandbox, on_line)
    for item in outputs:
        n = job.store.upload(Path(job.relocate(item["S3Output"]["LocalPath"])), item["S3Output"]["S3Uri"])
        job.log(f"uploaded {n} file(s) of output '{item['OutputName']}' to {item['S3Output']['S3Uri']}")
    property_files = {}
    for pf in step.get("PropertyFiles", []):
        output = next(o for o in outputs if o["OutputName"] == pf["OutputName"])
        path = Path(job.relocate(output["S3Output"]["LocalPath"])) / pf["FilePath"]
        try:
            property_files[pf["PropertyFileName"]] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise StepFailed(
                f"property file {pf['FilePath']} of output '{pf['OutputName']}' is unreadable: {exc}"
            ) from exc
    return {
        "ProcessingJobName": job.job_name,
        "ProcessingJobArn": job.arn("processing-job"),
        "ProcessingJobStatus": "Completed",
        "ProcessingInputs": args.get("ProcessingInputs", []),
        "ProcessingOutputConfig": args.get("ProcessingOutputConfig", {"Outputs": []}),
        "AppSpecification": app,
        "PropertyFiles": property_files,
    }
