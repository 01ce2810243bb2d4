"""``Training``: SageMaker's training toolkit emulated: hyperparameters, channels, ``SM_*`` variables,
torchrun for ``torch_distributed``, metric regexes, checkpoints synced, ``model.tar.gz`` packed."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.files import write_atomic
from pipelines.instances import gpu_count
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

    def outputs(self, result: dict[str, Any]) -> list[str]:
        return [result["ModelArtifacts"]["S3ModelArtifacts"]] if "ModelArtifacts" in result else []


def channel_uris(args: dict[str, Any]) -> list[str]:
    """A training job's (or a tuning job's training job definition's) channel locations."""
    return [c["DataSource"]["S3DataSource"]["S3Uri"] for c in args.get("InputDataConfig", [])]


EPOCH = re.compile(r"\bepoch[=: ]\s*(\d+)", re.IGNORECASE)
METRICS_FILE = "metrics.json"  # beside the job's log: {metric: [every value captured, in order]}

# hyperparameters the training toolkit keeps for itself: never passed to the script
TOOLKIT_HYPERPARAMETERS = ("_tuning_objective_metric",)


def decode_hyperparameter(value: Any) -> Any:
    """As SageMaker's training toolkit does: JSON-decode when possible, else keep the string."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


# the ranks talk over the loopback interface only (gloo's sockets; NCCL's bootstrap on GPUs)
LOOPBACK = {"GLOO_SOCKET_IFNAME": "lo", "NCCL_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}


# torchrun starts each worker in a session of its own and never ties it to the agent: an agent killed with
# SIGKILL (the engine escalating a stop, the engine itself killed) would leave its workers training, out of
# reach of any process group the engine knows. So each worker is started through this line, which asks
# Linux to kill it when its parent, the agent, dies (PR_SET_PDEATHSIG survives exec), then becomes the script.
DIE_WITH_AGENT = (
    "import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGKILL) if sys.platform == 'linux' "
    "else None; os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def loopback_rendezvous() -> list[str]:
    """torchrun's arguments for one node whose rendezvous is at 127.0.0.1 (``--standalone`` would advertise
    the host's name, reachable from the network) on a free port."""
    return ["--nnodes", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
            "--local-addr", "127.0.0.1"]  # fmt: skip


def usable_cores() -> int:
    """The cores this process may run on (its CPU set, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def processes_for(instance_type: str, nproc: int | None) -> int:
    """torch_distributed processes: --nproc, else the instance type's GPUs, at most the cores."""
    if nproc:
        return nproc
    return max(1, min(gpu_count(instance_type) or 1, usable_cores()))


def _multi_node_rendezvous() -> list[str]:
    """torchrun's static rendezvous as SageMaker's toolkit starts it on every node (``--nnodes``,
    ``--node-rank``, the master's address and port): here the master is algo-1 at 127.0.0.1."""
    return ["--master-addr", "127.0.0.1", "--master-port", str(_free_port())]


Snapshot = dict[str, tuple[int, int]]  # relative path -> (size, mtime ns)


def _snapshot(directory: Path) -> Snapshot:
    return {
        p.relative_to(directory).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in directory.rglob("*")
        if p.is_file()
    }


def _upload_changed(node: Job, local: Path, uri: str, before: Snapshot) -> None:
    """What SageMaker's checkpoint sync uploads from a node: the files written there during the job, not
    the ones it downloaded and left alone (another node's newer checkpoint must not be replaced by them)."""
    now = _snapshot(local)
    changed = [rel for rel, stat in now.items() if before.get(rel) != stat]
    for rel in changed:
        node.store.upload_file(local / rel, uri.rstrip("/") + "/" + rel)
    if changed:
        node.log(f"checkpoints: uploaded {len(changed)} file(s) to {uri}")


def _prepare_node(
    args: dict[str, Any], job: Job, node: Job, k: int, hosts: list[str], hps: dict[str, Any], program: str,
    submit: str, distributed: bool, rendezvous: list[str],
) -> tuple[list[str], dict[str, str], Path, Snapshot]:  # fmt: skip
    """One node's container: its /opt/ml, code, channels, config files, environment and command."""
    if node is not job:
        node.fresh_sandbox()
    host = hosts[k]
    resources = args.get("ResourceConfig", {})
    opt = node.sandbox / "opt" / "ml"
    model_dir, output_dir, code_dir = opt / "model", opt / "output" / "data", opt / "code"
    for d in (model_dir, output_dir, code_dir):
        d.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(job.store.path(submit), "r:gz") as tar:
            tar.extractall(code_dir, filter="data")
    except (OSError, tarfile.TarError, StoreError) as exc:
        raise StepFailed(f"ClientError: cannot unpack the source archive {submit}: {exc}", "ClientError") from exc

    instance_type = str(resources.get("InstanceType", ""))
    resource_config = {
        "current_host": host, "current_instance_type": instance_type, "current_group_name": "homogeneousCluster",
        "hosts": hosts, "network_interface_name": "lo",
        "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": instance_type,
                             "hosts": hosts}],
    }  # fmt: skip
    input_data_config = {
        c["ChannelName"]: {
            "TrainingInputMode": c.get("InputMode", "File"), "RecordWrapperType": "None",
            "S3DistributionType": c["DataSource"]["S3DataSource"].get("S3DistributionType", "FullyReplicated"),
        }
        for c in args.get("InputDataConfig", [])
    }  # fmt: skip
    # what SageMaker writes into every training container, whatever the toolkit makes of it
    config_dir = opt / "input" / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "hyperparameters.json").write_text(json.dumps(args.get("HyperParameters", {}), indent=2))
    (config_dir / "resourceconfig.json").write_text(json.dumps(resource_config))
    (config_dir / "inputdataconfig.json").write_text(json.dumps(input_data_config))
    check_requirements(code_dir / "requirements.txt", node, "SageMaker's training toolkit pip-installs it")
    module = program.removesuffix(".py")
    env = {
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(output_dir),
        "SM_OUTPUT_DIR": str(opt / "output"),
        "SM_OUTPUT_INTERMEDIATE_DIR": str(opt / "output" / "intermediate"),
        "SM_INPUT_DIR": str(opt / "input"),
        "SM_INPUT_CONFIG_DIR": str(config_dir),
        "SM_HOSTS": json.dumps(hosts),
        "SM_CURRENT_HOST": host,
        "SM_CURRENT_INSTANCE_TYPE": instance_type,
        "SM_NETWORK_INTERFACE_NAME": "lo",
        # what the instance type has, as the toolkit reports it (the job still runs on this machine's devices)
        "SM_NUM_GPUS": str(gpu_count(instance_type)),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_NEURONS": "0",
        "SM_LOG_LEVEL": "20",
        "SM_HPS": json.dumps(hps),
        "SM_USER_ENTRY_POINT": program,
        "SM_MODULE_NAME": module,
        "SM_MODULE_DIR": submit,
        "SM_FRAMEWORK_PARAMS": "{}",
        "SM_RESOURCE_CONFIG": json.dumps(resource_config),
        "SM_INPUT_DATA_CONFIG": json.dumps(input_data_config),
        "TRAINING_JOB_NAME": job.job_name,
        "TRAINING_JOB_ARN": job.arn("training-job"),
    }
    # SM_HP_<NAME>: each hyperparameter, its name upper-cased, as the toolkit sets them
    env |= {f"SM_HP_{k.upper()}": v if isinstance(v, str) else json.dumps(v) for k, v in hps.items()}
    channels = []
    for channel in args.get("InputDataConfig", []):
        name = channel["ChannelName"]
        source = channel["DataSource"]["S3DataSource"]
        sharded = source.get("S3DistributionType") == "ShardedByS3Key" and len(hosts) > 1
        target = node.stage(source["S3Uri"], f"/opt/ml/input/data/{name}", (k, len(hosts)) if sharded else None)
        env[f"SM_CHANNEL_{name.upper()}"] = str(target)
        channels.append(name)
    env["SM_CHANNELS"] = json.dumps(channels)
    checkpoint = args.get("CheckpointConfig")
    where = checkpoint.get("LocalPath", "/opt/ml/checkpoints") if checkpoint else "/opt/ml/checkpoints"
    local = Path(node.relocate(where))
    local.mkdir(parents=True, exist_ok=True)
    env["SM_CHECKPOINT_DIR"] = str(local)
    if checkpoint and job.store.exists(checkpoint["S3Uri"]):
        job.store.download(checkpoint["S3Uri"], local)  # every node gets them
        node.log(f"restored checkpoints from {checkpoint['S3Uri']}")
    before = _snapshot(local)

    user_args: list[str] = []
    for key, value in hps.items():
        user_args += [f"--{key}", str(value)]
    argv = [str(code_dir / program), *user_args]
    env["SM_USER_ARGS"] = json.dumps(user_args)
    env["SM_TRAINING_ENV"] = json.dumps({
        "channel_input_dirs": {c: env[f"SM_CHANNEL_{c.upper()}"] for c in channels}, "current_host": host,
        "current_instance_type": instance_type, "hosts": hosts, "hyperparameters": hps,
        "input_config_dir": env["SM_INPUT_CONFIG_DIR"], "input_data_config": input_data_config,
        "input_dir": env["SM_INPUT_DIR"], "job_name": job.job_name, "log_level": 20, "model_dir": env["SM_MODEL_DIR"],
        "module_dir": submit, "module_name": module, "network_interface_name": "lo",
        "num_cpus": os.cpu_count() or 1, "num_gpus": gpu_count(instance_type), "output_data_dir": str(output_dir),
        "output_dir": env["SM_OUTPUT_DIR"], "resource_config": resource_config, "user_entry_point": program,
    })  # fmt: skip

    cores = usable_cores() // len(hosts) or 1  # the local nodes share this machine's cores
    if distributed:
        n = processes_for(instance_type, job.nproc)
        nodes = ["--nnodes", str(len(hosts)), "--node-rank", str(k)] if len(hosts) > 1 else []
        cmd = [job.python, "-m", "torch.distributed.run", *nodes, *rendezvous, "--nproc_per_node", str(n),
               "--no-python", job.python, "-c", DIE_WITH_AGENT, *argv]  # fmt: skip
        env |= LOOPBACK
    else:
        n, cmd = 1, [job.python, *argv]
    # torchrun would give each process one thread; the cores are split among the processes instead
    threads = max(1, cores // n)
    env["OMP_NUM_THREADS"] = str(threads)
    if k == 0:
        job.log(
            f"{len(hosts)} node(s) x {n} process(es) x {threads} thread(s) on {usable_cores()} core(s)"
            + (" (torchrun)" if distributed else "")
        )
    env |= {k: text(v) for k, v in args.get("Environment", {}).items()}
    return cmd, job_environment(env, node), code_dir, before


def run_training(
    step: dict[str, Any],
    args: dict[str, Any],
    job: Job,
    on_metric: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """Run one training job on ``InstanceCount`` local nodes (``algo-1..N``, each its own sandbox and
    ``/opt/ml``); ``on_metric(name, value)`` hears every metric line as it is printed."""
    resources = args.get("ResourceConfig", {})
    count = int(resources.get("InstanceCount", 1) or 1)
    hosts = host_names(count)
    if args.get("EnableManagedSpotTraining"):
        job.log("note: spot capacity has no local meaning; the job runs on demand (checkpoints still sync)")
    hps = {k: decode_hyperparameter(v) for k, v in args.get("HyperParameters", {}).items()}
    program = str(hps.pop("sagemaker_program", ""))
    submit = str(hps.pop("sagemaker_submit_directory", ""))
    distributed = bool(hps.pop("sagemaker_torch_distributed_enabled", False))
    hps = {k: v for k, v in hps.items() if not k.startswith("sagemaker_") and k not in TOOLKIT_HYPERPARAMETERS}
    if not program or not submit:
        raise StepFailed("ClientError: no sagemaker_program / sagemaker_submit_directory hyperparameter", "ClientError")
    nodes = job.instances(count)
    rendezvous = loopback_rendezvous() if count == 1 else _multi_node_rendezvous()
    if count > 1:
        job.log(f"running {count} nodes ({', '.join(hosts)}), each in {job.directory}/<host>/sandbox")
    prepared = [
        _prepare_node(args, job, node, k, hosts, hps, program, submit, distributed, rendezvous)
        for k, node in enumerate(nodes)
    ]
    checkpoint = args.get("CheckpointConfig")

    series: dict[str, list[float]] = {}  # every value each regex captured, in order: the curves; last = final
    regexes = [
        (m["Name"], re.compile(m["Regex"])) for m in args.get("AlgorithmSpecification", {}).get("MetricDefinitions", [])
    ]
    lines_with_metrics = 0
    epochs_seen: list[str] = []

    def on_line(line: str) -> None:
        nonlocal lines_with_metrics
        found = {}
        for name, regex in regexes:
            match = regex.search(line)
            if match:
                with contextlib.suppress(ValueError, IndexError):  # a line that only looks like a metric
                    found[name] = float(match.group(1))
                    series.setdefault(name, []).append(found[name])
                    if on_metric:
                        on_metric(name, found[name])
        if found:
            lines_with_metrics += 1
            epoch = EPOCH.search(line)
            if epoch:
                epochs_seen.append(epoch.group(1))
            elif epochs_seen:
                return  # a closing line (e.g. best_...=) of a job that numbers its epochs: not an epoch
            shown = " ".join(f"{k}={v:.4g}" for k, v in found.items())
            job.progress(f"epoch {epoch.group(1) if epoch else lines_with_metrics}: {shown}")

    def work(k: int, node: Job) -> None:
        cmd, env, cwd, _ = prepared[k]
        node.run(cmd, env, cwd, on_line)

    try:
        on_every_instance(nodes, work)
    finally:
        write_atomic(job.directory / METRICS_FILE, json.dumps(series))
        if checkpoint:  # kept even when the job fails, so a rerun resumes
            for node, (_, env, _, before) in zip(nodes, prepared, strict=True):
                _upload_changed(node, Path(env["SM_CHECKPOINT_DIR"]), checkpoint["S3Uri"], before)
    output_path = args["OutputDataConfig"]["S3OutputPath"].rstrip("/") + f"/{job.job_name}/output"
    for name, sub in (("model.tar.gz", "model"), ("output.tar.gz", "output/data")):
        # one archive of every node's directory, as SageMaker aggregates them (names should not clash)
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
        "InputDataConfig": args.get("InputDataConfig", []),
        "ModelArtifacts": {"S3ModelArtifacts": f"{output_path}/model.tar.gz"},
        "FinalMetricDataList": [{"MetricName": k, "Value": v[-1], "Timestamp": now} for k, v in series.items()],
    }
