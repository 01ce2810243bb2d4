"""One runner per definition ``Type``, from an explicit table (`RUNNERS`).

Each takes a step's resolved ``Arguments`` and returns a dict shaped like the matching ``Describe*``
response, so property references (``Steps.train.ModelArtifacts.S3ModelArtifacts``) resolve as on
SageMaker. Jobs run as subprocesses with the project's Python; every ``/opt/ml/...`` path is relocated
into the job's sandbox and the SageMaker variables point there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pipelines.local.expressions import Resolver, text
from pipelines.local.store import ObjectStore, StoreError

OPT_ML = "/opt/ml/"
REGION = "local"
ACCOUNT = "000000000000"
# GPUs per instance type: how many processes torch_distributed starts when --nproc is not given
GPUS = {
    "ml.g4dn.12xlarge": 4, "ml.g4dn.metal": 8, "ml.g5.12xlarge": 4, "ml.g5.24xlarge": 4, "ml.g5.48xlarge": 8,
    "ml.g6.12xlarge": 4, "ml.g6.24xlarge": 4, "ml.g6.48xlarge": 8, "ml.g6e.12xlarge": 4, "ml.g6e.48xlarge": 8,
    "ml.p3.8xlarge": 4, "ml.p3.16xlarge": 8, "ml.p3dn.24xlarge": 8, "ml.p4d.24xlarge": 8, "ml.p4de.24xlarge": 8,
    "ml.p5.48xlarge": 8,
}  # fmt: skip


class StepFailed(Exception):
    """A step that did not succeed; ``cause`` is what retry policies match (e.g. SageMaker.JOB_INTERNAL_ERROR)."""

    def __init__(self, reason: str, cause: str = "AlgorithmError"):
        super().__init__(reason)
        self.reason, self.cause = reason, cause


@dataclass
class Job:
    """What a runner gets besides the step: where to work, the store, logging, and the process registry."""

    step_name: str
    job_name: str
    directory: Path
    store: ObjectStore
    resolver: Resolver
    log: Callable[[str], None]  # one line to the step's log
    processes: set[subprocess.Popen[str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    nproc: int | None = None
    python: str = sys.executable

    @property
    def sandbox(self) -> Path:
        return self.directory / "sandbox"

    def fresh_sandbox(self) -> None:
        """Each attempt starts clean, as a retried SageMaker job gets a new container."""
        shutil.rmtree(self.sandbox, ignore_errors=True)
        self.sandbox.mkdir(parents=True)

    def relocate(self, value: Any) -> Any:
        """Every ``/opt/ml/...`` path inside the sandbox, recursively."""
        if isinstance(value, str) and value.startswith(OPT_ML):
            return str(self.sandbox) + value
        if isinstance(value, list):
            return [self.relocate(v) for v in value]
        if isinstance(value, dict):
            return {k: self.relocate(v) for k, v in value.items()}
        return value

    def arn(self, kind: str) -> str:
        return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{self.job_name}"

    def run(self, cmd: list[str], env: dict[str, str], cwd: Path, on_line: Callable[[str], None] | None = None) -> None:
        """Run a job's process, streaming its output into the log; raise `StepFailed` unless it exits 0."""
        self.log("$ " + " ".join(cmd))
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True,  # its own process group: Ctrl-C stops it and its children
        )  # fmt: skip
        with self.lock:
            self.processes.add(proc)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                self.log(line)
                if on_line:
                    on_line(line)
            rc = proc.wait()
        finally:
            with self.lock:
                self.processes.discard(proc)
        if rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
            raise StepFailed(
                f"InternalServerError: the job's process was killed by {name}", "SageMaker.JOB_INTERNAL_ERROR"
            )
        if rc != 0:
            raise StepFailed(f"AlgorithmError: {Path(cmd[1] if len(cmd) > 1 else cmd[0]).name} exited with status {rc}")

    def stage(self, uri: str, local_path: str) -> Path:
        target = Path(self.relocate(local_path))
        try:
            n = self.store.download(uri, target)
        except StoreError as exc:
            hint = "; put the data there or serve its bucket from a directory with --mount BUCKET=DIR"
            raise StepFailed(f"ClientError: input {uri}: {exc}{hint}", "ClientError") from exc
        except OSError as exc:
            raise StepFailed(f"cannot stage {uri}: {exc}", "Step.SERVICE_FAULT") from exc
        self.log(f"staged {n} object(s) from {uri} into {local_path}")
        return target


def job_environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env | extra


class StepRunner(Protocol):
    def __call__(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- Processing


def _python(cmd: list[str], job: Job) -> list[str]:
    """Images are not pulled: the container's python runs as the project's interpreter."""
    return [job.python if c in ("python", "python3") else c for c in cmd]


def run_processing(step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
    _warn_unemulated(args.get("ProcessingResources", {}).get("ClusterConfig", {}).get("InstanceCount", 1), job)
    for item in args.get("ProcessingInputs", []):
        job.stage(item["S3Input"]["S3Uri"], item["S3Input"]["LocalPath"])
    outputs = args.get("ProcessingOutputConfig", {}).get("Outputs", [])
    for item in outputs:
        Path(job.relocate(item["S3Output"]["LocalPath"])).mkdir(parents=True, exist_ok=True)
    app = args["AppSpecification"]
    cmd = _python(
        [text(c) for c in job.relocate(app.get("ContainerEntrypoint", []) + app.get("ContainerArguments", []))], job
    )
    env = job_environment({k: text(v) for k, v in job.relocate(args.get("Environment", {})).items()})
    job.sandbox.mkdir(parents=True, exist_ok=True)
    job.run(cmd, env, job.sandbox)
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


# --------------------------------------------------------------------------- Training


def decode_hyperparameter(value: Any) -> Any:
    """As SageMaker's training toolkit does: JSON-decode when possible, else keep the string."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


def processes_for(instance_type: str, nproc: int | None) -> int:
    if nproc:
        return nproc
    return max(1, min(GPUS.get(instance_type, 1), os.cpu_count() or 1))


def run_training(step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
    resources = args.get("ResourceConfig", {})
    _warn_unemulated(resources.get("InstanceCount", 1), job)
    if args.get("EnableManagedSpotTraining"):
        job.log("note: spot capacity has no local meaning; the job runs on demand (checkpoints still sync)")
    opt = job.sandbox / "opt" / "ml"
    model_dir, output_dir, code_dir = opt / "model", opt / "output" / "data", opt / "code"
    for d in (model_dir, output_dir, code_dir):
        d.mkdir(parents=True, exist_ok=True)
    hps = {k: decode_hyperparameter(v) for k, v in args.get("HyperParameters", {}).items()}
    program = str(hps.pop("sagemaker_program", ""))
    submit = str(hps.pop("sagemaker_submit_directory", ""))
    distributed = bool(hps.pop("sagemaker_torch_distributed_enabled", False))
    hps = {k: v for k, v in hps.items() if not k.startswith("sagemaker_")}
    if not program or not submit:
        raise StepFailed("ClientError: no sagemaker_program / sagemaker_submit_directory hyperparameter", "ClientError")
    try:
        with tarfile.open(job.store.path(submit), "r:gz") as tar:
            tar.extractall(code_dir, filter="data")
    except (OSError, tarfile.TarError, StoreError) as exc:
        raise StepFailed(f"ClientError: cannot unpack the source archive {submit}: {exc}", "ClientError") from exc

    env = {
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(output_dir),
        "SM_OUTPUT_DIR": str(opt / "output"),
        "SM_INPUT_DIR": str(opt / "input"),
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_CURRENT_HOST": "algo-1",
        "SM_NUM_GPUS": "0",
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_HPS": json.dumps(hps),
        "SM_USER_ENTRY_POINT": program,
        "SM_MODULE_DIR": submit,
    }
    channels = []
    for channel in args.get("InputDataConfig", []):
        name = channel["ChannelName"]
        target = job.stage(channel["DataSource"]["S3DataSource"]["S3Uri"], f"/opt/ml/input/data/{name}")
        env[f"SM_CHANNEL_{name.upper()}"] = str(target)
        channels.append(name)
    env["SM_CHANNELS"] = json.dumps(channels)
    checkpoint = args.get("CheckpointConfig")
    if checkpoint:
        local = Path(job.relocate(checkpoint.get("LocalPath", "/opt/ml/checkpoints")))
        local.mkdir(parents=True, exist_ok=True)
        env["SM_CHECKPOINT_DIR"] = str(local)
        if job.store.exists(checkpoint["S3Uri"]):
            job.store.download(checkpoint["S3Uri"], local)
            job.log(f"restored checkpoints from {checkpoint['S3Uri']}")
    else:
        env["SM_CHECKPOINT_DIR"] = str(opt / "checkpoints")

    argv = [str(code_dir / program)]
    for key, value in hps.items():
        argv += [f"--{key}", str(value)]
    if distributed:
        n = processes_for(resources.get("InstanceType", ""), job.nproc)
        cmd = [job.python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), *argv]
    else:
        cmd = [job.python, *argv]

    metrics: dict[str, float] = {}
    regexes = [
        (m["Name"], re.compile(m["Regex"])) for m in args.get("AlgorithmSpecification", {}).get("MetricDefinitions", [])
    ]

    def on_line(line: str) -> None:
        for name, regex in regexes:
            match = regex.search(line)
            if match:
                with contextlib.suppress(ValueError, IndexError):  # a line that only looks like a metric
                    metrics[name] = float(match.group(1))

    env |= {k: text(v) for k, v in args.get("Environment", {}).items()}
    try:
        job.run(cmd, job_environment(env), code_dir, on_line)
    finally:
        if checkpoint:  # kept even when the job fails, so a rerun resumes
            job.store.upload(Path(env["SM_CHECKPOINT_DIR"]), checkpoint["S3Uri"])
    output_path = args["OutputDataConfig"]["S3OutputPath"].rstrip("/") + f"/{job.job_name}/output"
    for name, directory in (("model.tar.gz", model_dir), ("output.tar.gz", output_dir)):
        archive = job.directory / name
        with tarfile.open(archive, "w:gz") as tar:
            for item in sorted(directory.iterdir()):
                tar.add(item, arcname=item.name)
        job.store.upload_file(archive, f"{output_path}/{name}")
    now = datetime.now(UTC).isoformat()
    return {
        "TrainingJobName": job.job_name,
        "TrainingJobArn": job.arn("training-job"),
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "HyperParameters": args.get("HyperParameters", {}),
        "AlgorithmSpecification": args.get("AlgorithmSpecification", {}),
        "ResourceConfig": resources,
        "OutputDataConfig": args["OutputDataConfig"],
        "ModelArtifacts": {"S3ModelArtifacts": f"{output_path}/model.tar.gz"},
        "FinalMetricDataList": [{"MetricName": k, "Value": v, "Timestamp": now} for k, v in metrics.items()],
    }


def _warn_unemulated(instance_count: Any, job: Job) -> None:
    if int(instance_count or 1) > 1:
        job.log(f"note: step '{job.step_name}' asks for {instance_count} instances; it runs as one local node")


# --------------------------------------------------------------------------- Condition and Fail


def run_condition(step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
    outcome = all(job.resolver.condition(c) for c in step["Arguments"]["Conditions"])
    job.log(f"conditions evaluated to {outcome}")
    return {"Outcome": "True" if outcome else "False"}


def run_fail(step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
    message = text(args.get("ErrorMessage", "")) or f"Fail step {job.step_name}"
    job.log(message)
    raise StepFailed(message, "Fail")


# Type -> runner. Tuning, RegisterModel, Model, EndpointConfig and Endpoint get theirs in later work;
# a definition that holds one is refused before anything runs.
RUNNERS: dict[str, StepRunner] = {
    "Processing": run_processing,
    "Training": run_training,
    "Condition": run_condition,
    "Fail": run_fail,
}
