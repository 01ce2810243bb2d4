"""``Training``: SageMaker's training toolkit emulated: hyperparameters, channels, ``SM_*`` variables,
torchrun for ``torch_distributed``, metric regexes, checkpoints synced, ``model.tar.gz`` packed."""

from __future__ import annotations

import contextlib
import json
import re
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.files import write_atomic
from pipelines.local.runners.base import CURVES_FILE, Job, Runner, StepFailed, host_names, on_every_instance
from pipelines.local.runners.network import LoopbackNetwork
from pipelines.local.runners.toolkit import (
    Node,
    Snapshot,
    Toolkit,
    loopback_rendezvous,
    multi_node_rendezvous,
    processes_for,
    snapshot,
)

__all__ = ["TrainingRunner", "channel_uris", "processes_for", "run_training"]


class TrainingRunner(Runner):
    cacheable = True

    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        return run_training(step, args, job)

    # SageMaker's documented cache key attributes for a training step (instance type, stopping condition
    # and output path are not among them: changing those alone is a hit there too)
    CACHE_ATTRIBUTES = ("AlgorithmSpecification", "CheckpointConfig", "DebugHookConfig", "DebugRuleConfigurations",
                        "Environment", "HyperParameters", "InputDataConfig")  # fmt: skip

    def cache_material(self, args: dict[str, Any]) -> Any:
        return {k: args.get(k) for k in self.CACHE_ATTRIBUTES}

    def input_uris(self, args: dict[str, Any]) -> list[str]:
        return channel_uris(args)


def channel_uris(args: dict[str, Any]) -> list[str]:
    """A training job's (or a tuning job's training job definition's) channel locations."""
    return [c["DataSource"]["S3DataSource"]["S3Uri"] for c in args.get("InputDataConfig", [])]


EPOCH = re.compile(r"\bepoch[=: ]\s*(\d+)", re.IGNORECASE)

# hyperparameters the training toolkit keeps for itself: never passed to the script
# sagemaker_training.params.SAGEMAKER_HYPERPARAMETERS: the toolkit's own hyperparameters, kept from the script
# and from SM_FRAMEWORK_PARAMS; every other sagemaker_* one is a framework parameter
TOOLKIT_HYPERPARAMETERS = ("sagemaker_program", "sagemaker_submit_directory", "sagemaker_enable_cloudwatch_metrics",
                           "sagemaker_region", "sagemaker_container_log_level", "sagemaker_job_name",
                           "default_user_module_name", "_tuning_objective_metric", "sagemaker_s3_output")  # fmt: skip


def decode_hyperparameter(value: Any) -> Any:
    """As SageMaker's training toolkit does: JSON-decode when possible, else keep the string."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


def _upload_changed(node: Job, local: Path, uri: str, before: Snapshot) -> None:
    """What SageMaker's checkpoint sync uploads from a node: the files written there during the job, not
    the ones it downloaded and left alone (another node's newer checkpoint must not be replaced by them)."""
    now = snapshot(local)
    changed = [rel for rel, stat in now.items() if before.get(rel) != stat]
    for rel in changed:
        node.store.upload_file(local / rel, uri.rstrip("/") + "/" + rel)
    if changed:
        node.log(f"checkpoints: uploaded {len(changed)} file(s) to {uri}")


class MetricCapture:
    """The metric regexes applied to a job's output, as SageMaker applies them: every value each captured,
    in order (the curves; the last is the final value), and the epoch it is at for the live progress."""

    def __init__(self, args: dict[str, Any], job: Job, on_metric: Callable[[str, float], None] | None):
        definitions = args.get("AlgorithmSpecification", {}).get("MetricDefinitions", [])
        self.regexes = [(m["Name"], re.compile(m["Regex"])) for m in definitions]
        self.job, self.on_metric = job, on_metric
        self.series: dict[str, list[float]] = {}
        self.lines_with_metrics = 0
        self.epochs_seen: list[str] = []

    def __call__(self, line: str) -> None:
        found = {}
        for name, regex in self.regexes:
            match = regex.search(line)
            if match:
                with contextlib.suppress(ValueError, IndexError):  # a line that only looks like a metric
                    found[name] = float(match.group(1))
                    self.series.setdefault(name, []).append(found[name])
                    if self.on_metric:
                        self.on_metric(name, found[name])
        if not found:
            return
        self.lines_with_metrics += 1
        epoch = EPOCH.search(line)
        if epoch:
            self.epochs_seen.append(epoch.group(1))
        elif self.epochs_seen:
            return  # a closing line (e.g. best_...=) of a job that numbers its epochs: not an epoch
        shown = " ".join(f"{k}={v:.4g}" for k, v in found.items())
        self.job.progress(f"epoch {epoch.group(1) if epoch else self.lines_with_metrics}: {shown}")


def toolkit_for(args: dict[str, Any], job: Job) -> Toolkit:
    """The toolkit's view of a training job: its hyperparameters split into the script's and the toolkit's own."""
    hosts = host_names(int(args.get("ResourceConfig", {}).get("InstanceCount", 1) or 1))
    every = {k: decode_hyperparameter(v) for k, v in args.get("HyperParameters", {}).items()}
    program, submit = str(every.get("sagemaker_program", "")), str(every.get("sagemaker_submit_directory", ""))
    # split as sagemaker_training.environment splits them: the toolkit's own, the framework's (other
    # sagemaker_*), and the script's
    own = {k for k in every if k in TOOLKIT_HYPERPARAMETERS or k.startswith("sagemaker_")}
    framework = {k: v for k, v in every.items() if k in own and k not in TOOLKIT_HYPERPARAMETERS}
    hps = {k: v for k, v in every.items() if k not in own}
    if not program or not submit:
        raise StepFailed("ClientError: no sagemaker_program / sagemaker_submit_directory hyperparameter", "ClientError")
    rendezvous = loopback_rendezvous() if len(hosts) == 1 else multi_node_rendezvous()
    return Toolkit(args, job, hosts, hps, framework, program, submit, rendezvous)


def _pack_outputs(job: Job, nodes: list[Job], output_path: str) -> None:
    """model.tar.gz and output.tar.gz: one archive of every node's directory each, as SageMaker aggregates them
    (names should not clash), uploaded under the job's output path."""
    for name, sub in (("model.tar.gz", "model"), ("output.tar.gz", "output/data")):
        archive, added = job.directory / name, dict[str, str]()
        with tarfile.open(archive, "w:gz") as tar:
            for node in nodes:
                directory = node.sandbox / "opt" / "ml" / sub
                for item in sorted(directory.iterdir()):
                    if item.name in added:
                        job.log(f"warning: {node.directory.name} also wrote {sub}/{item.name} ({added[item.name]} did)")
                    tar.add(item, arcname=item.name)
                    added[item.name] = node.directory.name
        job.store.upload_file(archive, f"{output_path}/{name}")


def run_training(
    step: dict[str, Any],
    args: dict[str, Any],
    job: Job,
    on_metric: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """Run one training job on ``InstanceCount`` local nodes (``algo-1..N``, each its own sandbox and
    ``/opt/ml``); ``on_metric(name, value)`` hears every metric line as it is printed."""
    if args.get("EnableManagedSpotTraining"):
        job.log("note: spot capacity has no local meaning; the job runs on demand (checkpoints still sync)")
    toolkit = toolkit_for(args, job)
    nodes = job.instances(len(toolkit.hosts))
    if len(nodes) > 1:
        job.log(f"running {len(nodes)} nodes ({', '.join(toolkit.hosts)}), each in {job.directory}/<host>/sandbox")
    capture = MetricCapture(args, job, on_metric)
    checkpoint = args.get("CheckpointConfig")
    network = LoopbackNetwork(job.log) if toolkit.distributed else contextlib.nullcontext()
    prepared: list[Node] = []
    try:
        with network as namespace:
            toolkit.launcher = namespace.prefix if namespace else []
            prepared += [toolkit.prepare(k, node) for k, node in enumerate(nodes)]
            on_every_instance(nodes, lambda k, node: node.run(prepared[k].cmd, prepared[k].env, prepared[k].cwd,
                                                              capture))  # fmt: skip
    finally:
        write_atomic(job.directory / CURVES_FILE, json.dumps({job.job_name: capture.series}))
        if checkpoint:  # kept even when the job fails, so a rerun resumes
            for node, ready in zip(nodes, prepared, strict=False):
                _upload_changed(node, ready.checkpoints, checkpoint["S3Uri"], ready.before)
    output_path = args["OutputDataConfig"]["S3OutputPath"].rstrip("/") + f"/{job.job_name}/output"
    _pack_outputs(job, nodes, output_path)
    series = capture.series
    now = datetime.now(UTC).isoformat()
    return {
        "TrainingJobName": job.job_name,
        "TrainingJobArn": job.arn("training-job"),
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "HyperParameters": args.get("HyperParameters", {}),
        "AlgorithmSpecification": args.get("AlgorithmSpecification", {}),
        "ResourceConfig": args.get("ResourceConfig", {}),
        "OutputDataConfig": args["OutputDataConfig"],
        "InputDataConfig": args.get("InputDataConfig", []),
        "ModelArtifacts": {"S3ModelArtifacts": f"{output_path}/model.tar.gz"},
        "FinalMetricDataList": [{"MetricName": k, "Value": v[-1], "Timestamp": now} for k, v in series.items()],
    }
