"""``Processing``: the job's container command run as a subprocess, inputs staged, outputs uploaded."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pipelines.local.expressions import text
from pipelines.local.runners.base import (
    Job,
    Runner,
    StepFailed,
    check_requirements,
    host_names,
    job_environment,
    on_every_instance,
)
from pipelines.local.store import StoreError


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



# a processing script's progress lines: "<done>/<total> rows" (preprocess.py prints one per row group)
PROGRESS = re.compile(r"\b(\d+)/(\d+) (rows|images|files|batches)\b")


ENTRY = "processing_entry.sh"


def _python(cmd: list[str], job: Job) -> list[str]:
    """Images are not pulled: the container's python runs as the project's interpreter. The stock image's
    entry script (it pip-installs ``requirements-processing.txt``, then runs the script) becomes a check that
    this environment meets those requirements, then the script: nothing is downloaded."""
    if len(cmd) > 2 and Path(cmd[0]).name in ("bash", "sh") and Path(cmd[1]).name == ENTRY:
        requirements = Path(cmd[1]).parent / "requirements-processing.txt"
        check_requirements(requirements, job, f"{ENTRY} pip-installs it")
        cmd = ["python3", *cmd[2:]]
    return [job.python if c in ("python", "python3") else c for c in cmd]


def _prepare(
    args: dict[str, Any], job: Job, k: int, hosts: list[str], instance: Job
) -> tuple[list[str], dict[str, str]]:
    """Instance ``k``'s container: its inputs (its share of each ``ShardedByS3Key`` one), output directories,
    ``/opt/ml/config`` files, command and environment."""
    count = len(hosts)
    for item in args.get("ProcessingInputs", []):
        s3 = item["S3Input"]
        sharded = s3.get("S3DataDistributionType") == "ShardedByS3Key" and count > 1
        target = instance.stage(s3["S3Uri"], s3["LocalPath"], (k, count) if sharded else None)
        if sharded:
            got = sum(1 for p in target.rglob("*") if p.is_file())
            instance.log(f"input '{item['InputName']}' is ShardedByS3Key: this instance received {got} object(s)")
    for item in args.get("ProcessingOutputConfig", {}).get("Outputs", []):
        Path(instance.relocate(item["S3Output"]["LocalPath"])).mkdir(parents=True, exist_ok=True)
    # what SageMaker writes into every processing container
    config = Path(instance.relocate("/opt/ml/config"))
    config.mkdir(parents=True, exist_ok=True)
    (config / "processingjobconfig.json").write_text(json.dumps(
        {"ProcessingJobName": job.job_name, "ProcessingJobArn": job.arn("processing-job"), **args}, indent=2
    ))  # fmt: skip
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": hosts[k], "hosts": hosts}))
    app = args["AppSpecification"]
    command = app.get("ContainerEntrypoint", []) + app.get("ContainerArguments", [])
    cmd = _python([text(c) for c in instance.relocate(command)], instance)
    env = {k: text(v) for k, v in instance.relocate(args.get("Environment", {})).items()}
    return cmd, job_environment(env, instance)


def _upload_outputs(args: dict[str, Any], job: Job, instances: list[Job]) -> None:
    """Each instance's outputs uploaded to the output's S3 prefix in host order, as SageMaker's upload
    leaves them (a later instance replaces an object of the same key)."""
    for item in args.get("ProcessingOutputConfig", {}).get("Outputs", []):
        uri = item["S3Output"]["S3Uri"]
        written: dict[str, str] = {}
        for instance in instances:
            local = Path(instance.relocate(item["S3Output"]["LocalPath"]))
            keys = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
            overwritten = [key for key in keys if key in written]
            n = job.store.upload(local, uri)
            where = f" from {instance.directory.name}" if len(instances) > 1 else ""
            job.log(f"uploaded {n} file(s) of output '{item['OutputName']}'{where} to {uri}")
            if overwritten:
                job.log(
                    f"warning: {instance.directory.name} replaced {len(overwritten)} object(s) that "
                    f"{written[overwritten[0]]} wrote under {uri} (e.g. {overwritten[0]}), as S3 would: instances "
                    "of one job should write distinct names (e.g. under a directory named by their host)"
                )
            written |= dict.fromkeys(keys, instance.directory.name)


def _property_files(step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
    """Each property file, read where SageMaker reads it: from its output's S3 prefix, once every instance
    uploaded."""
    outputs = args.get("ProcessingOutputConfig", {}).get("Outputs", [])
    found = {}
    for pf in step.get("PropertyFiles", []):
        output = next(o for o in outputs if o["OutputName"] == pf["OutputName"])
        location = output["S3Output"]["S3Uri"].rstrip("/") + "/" + pf["FilePath"]
        try:
            found[pf["PropertyFileName"]] = json.loads(job.store.path(location).read_text())
        except (OSError, json.JSONDecodeError, StoreError) as exc:
            raise StepFailed(
                f"property file {pf['FilePath']} of output '{pf['OutputName']}' is unreadable: {exc}"
            ) from exc
    return found


def run_processing(step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
    """One processing job on ``InstanceCount`` local instances (processes), each given what SageMaker gives
    its container; their outputs uploaded, then its property files read."""
    count = int(args.get("ProcessingResources", {}).get("ClusterConfig", {}).get("InstanceCount", 1) or 1)
    hosts = host_names(count)
    instances = job.instances(count)
    if count > 1:
        job.log(f"running {count} instances ({', '.join(hosts)}), each in {job.directory}/<host>/sandbox")
    prepared = [_prepare(args, job, k, hosts, instance) for k, instance in enumerate(instances)]

    def work(k: int, instance: Job) -> None:
        def on_line(line: str) -> None:
            done = PROGRESS.search(line)
            if done:
                prefix = f"{hosts[k]}: " if count > 1 else ""
                job.progress(f"{prefix}{done.group(1)}/{done.group(2)} {done.group(3)}")

        instance.run(*prepared[k], instance.sandbox, on_line)

    on_every_instance(instances, work)
    _upload_outputs(args, job, instances)
    return {
        "ProcessingJobName": job.job_name,
        "ProcessingJobArn": job.arn("processing-job"),
        "ProcessingJobStatus": "Completed",
        "ProcessingInputs": args.get("ProcessingInputs", []),
        "ProcessingOutputConfig": args.get("ProcessingOutputConfig", {"Outputs": []}),
        "ProcessingResources": args.get("ProcessingResources", {}),
        "AppSpecification": args["AppSpecification"],
        "PropertyFiles": _property_files(step, args, job),
    }
