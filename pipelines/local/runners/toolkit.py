"""SageMaker's training toolkit, emulated for one training job: what SageMaker writes into every node's
container (``/opt/ml/input/config/*.json``, the code, the channels, the checkpoints it syncs) and the
environment (``SM_*``) and command (the entry point, or torchrun per node under ``torch_distributed``) the
toolkit starts the script with. `Toolkit.prepare` builds one node's container; `pipelines.local.runners.
training` runs the nodes."""

from __future__ import annotations

import json
import os
import socket
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.instances import gpu_count
from pipelines.local.expressions import text
from pipelines.local.runners.base import Job, StepFailed, check_requirements, job_environment
from pipelines.local.store import StoreError

GROUP = "homogeneousCluster"  # the instance group every instance of a homogeneous cluster is in
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

Snapshot = dict[str, tuple[int, int]]  # relative path -> (size, mtime ns)


def snapshot(directory: Path) -> Snapshot:
    return {
        p.relative_to(directory).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in directory.rglob("*")
        if p.is_file()
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def loopback_rendezvous() -> list[str]:
    """torchrun's arguments for one node whose rendezvous is at 127.0.0.1 (``--standalone`` would advertise
    the host's name, reachable from the network) on a free port."""
    return ["--nnodes", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
            "--local-addr", "127.0.0.1"]  # fmt: skip


def multi_node_rendezvous() -> list[str]:
    """torchrun's static rendezvous as SageMaker's toolkit starts it on every node (``--nnodes``,
    ``--node-rank``, the master's address and port): here the master is algo-1 at 127.0.0.1."""
    return ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]


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


# the PyTorch training container's SAGEMAKER_TRAINING_MODULE, which the toolkit reports as SM_FRAMEWORK_MODULE
FRAMEWORK_MODULE = "sagemaker_pytorch_container.training:main"
# the framework parameters that switch a distribution on (Environment.get_distribution_instance_groups_...)
DISTRIBUTIONS = ("sagemaker_mpi_enabled", "sagemaker_parameter_server_enabled",
                 "sagemaker_distributed_dataparallel_enabled", "sagemaker_pytorch_ddp_enabled",
                 "sagemaker_pytorch_xla_multi_worker_enabled", "sagemaker_multi_worker_mirrored_strategy_enabled",
                 "sagemaker_torch_distributed_enabled")  # fmt: skip


def toolkit_env_vars(mapping: dict[str, Any]) -> dict[str, str]:
    """``sagemaker_training.mapping.to_env_vars``: ``SM_<KEY>``, strings as they are, None as "", anything else
    as compact JSON with sorted keys."""
    def value(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, str):
            return v
        return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    return {f"SM_{str(k).upper()}": value(v) for k, v in mapping.items()}


def to_cmd_args(hyperparameters: dict[str, Any]) -> list[str]:
    """``sagemaker_training.mapping.to_cmd_args``: sorted by name, ``-x`` for a one-letter name, ``--name``
    otherwise; a dict value as ``k=v,k2=v2`` (sorted), anything else as ``str``."""
    out = []
    for name in sorted(hyperparameters):
        value = hyperparameters[name]
        text = ",".join(f"{k}={v}" for k, v in sorted(value.items())) if isinstance(value, dict) else (
            "" if value is None else str(value))  # fmt: skip
        out += [f"-{name}" if len(name) == 1 else f"--{name}", text]
    return out


@dataclass
class Node:
    """One node's container, ready to run: its command, environment, working directory, and its checkpoint
    directory's files before the job (what it downloaded), to upload only what the job wrote."""

    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    checkpoints: Path
    before: Snapshot


@dataclass
class Toolkit:
    """The training toolkit's contract for one training job of ``len(hosts)`` nodes."""

    args: dict[str, Any]  # the CreateTrainingJob request, resolved
    job: Job
    hosts: list[str]
    hyperparameters: dict[str, Any]  # the script's: decoded, the toolkit's and the framework's removed
    framework_params: dict[str, Any]  # the other sagemaker_* hyperparameters (SM_FRAMEWORK_PARAMS)
    program: str  # sagemaker_program
    submit: str  # sagemaker_submit_directory
    rendezvous: list[str]
    launcher: list[str] = field(default_factory=list)  # what each node's command runs under (a network namespace)

    @property
    def distributed(self) -> bool:
        """torch_distributed: the PyTorch container runs torchrun on every node."""
        return bool(self.framework_params.get("sagemaker_torch_distributed_enabled", False))

    @property
    def distribution_groups(self) -> list[str]:
        """The instance groups distribution applies to: the cluster's, when a distribution is on
        (``Environment.get_distribution_instance_groups_from_resource_config``)."""
        given = self.framework_params.get("sagemaker_distribution_instance_groups")
        if isinstance(given, list):
            return [str(g) for g in given]
        on = any(self.framework_params.get(k, False) for k in DISTRIBUTIONS)
        return [GROUP] if on else []

    @property
    def instance_type(self) -> str:
        return str(self.args.get("ResourceConfig", {}).get("InstanceType", ""))

    def prepare(self, k: int, node: Job) -> Node:
        """Node ``k``'s container: its /opt/ml, code, channels, config files, checkpoints, environment, command."""
        opt = node.sandbox / "opt" / "ml"
        code = self._unpack_code(node, opt / "code")
        env = self._platform_environment()
        self._write_configs(opt / "input" / "config", k)
        check_requirements(code / "requirements.txt", node, "SageMaker's training toolkit pip-installs it")
        channels = self._channels(k, node)
        env |= toolkit_env_vars(self._environment_vars(k, opt, channels))
        checkpoints, before = self._checkpoints(node)
        env["SM_CHECKPOINT_DIR"] = str(checkpoints)
        cmd, threads = self._command(k, [str(code / self.program), *to_cmd_args(self.hyperparameters)])
        env["OMP_NUM_THREADS"] = str(threads)
        if self.distributed:
            env |= LOOPBACK
        env |= {key: text(value) for key, value in self.args.get("Environment", {}).items()}
        return Node(cmd, job_environment(env, node), code, checkpoints, before)

    def _unpack_code(self, node: Job, code: Path) -> Path:
        for directory in (code.parent / "model", code.parent / "output" / "data", code):
            directory.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(self.job.store.path(self.submit), "r:gz") as tar:
                tar.extractall(code, filter="data")
        except (OSError, tarfile.TarError, StoreError) as exc:
            raise StepFailed(f"ClientError: cannot unpack the source archive {self.submit}: {exc}",
                             "ClientError") from exc  # fmt: skip
        return code

    def resource_config(self, k: int) -> dict[str, Any]:
        """``/opt/ml/input/config/resourceconfig.json`` of node ``k``."""
        return {
            "current_host": self.hosts[k], "current_instance_type": self.instance_type, "current_group_name": GROUP,
            "hosts": self.hosts, "network_interface_name": "lo",
            "instance_groups": [{"instance_group_name": GROUP, "instance_type": self.instance_type,
                                 "hosts": self.hosts}],
        }  # fmt: skip

    def input_data_config(self) -> dict[str, Any]:
        """``/opt/ml/input/config/inputdataconfig.json``: each channel's input mode and distribution."""
        return {
            c["ChannelName"]: {
                "TrainingInputMode": c.get("InputMode", "File"), "RecordWrapperType": "None",
                "S3DistributionType": c["DataSource"]["S3DataSource"].get("S3DataDistributionType",
                                                                          "FullyReplicated"),
            }
            for c in self.args.get("InputDataConfig", [])
        }  # fmt: skip

    def _write_configs(self, config: Path, k: int) -> None:
        """What SageMaker writes into every training container, whatever the toolkit makes of it."""
        config.mkdir(parents=True, exist_ok=True)
        (config / "hyperparameters.json").write_text(json.dumps(self.args.get("HyperParameters", {}), indent=2))
        (config / "resourceconfig.json").write_text(json.dumps(self.resource_config(k)))
        (config / "inputdataconfig.json").write_text(json.dumps(self.input_data_config()))

    def _platform_environment(self) -> dict[str, str]:
        """What SageMaker and the PyTorch image set besides the toolkit's variables (``SM_CHECKPOINT_DIR`` is
        the engine's: the checkpoint directory's local place, as /opt/ml lives in the job's sandbox here)."""
        return {"TRAINING_JOB_NAME": self.job.job_name, "TRAINING_JOB_ARN": self.job.arn("training-job"),
                "SAGEMAKER_TRAINING_MODULE": FRAMEWORK_MODULE}  # fmt: skip

    def training_environment(self, k: int, opt: Path, channels: dict[str, str]) -> dict[str, Any]:
        """``dict(sagemaker_training.environment.Environment())`` on node ``k``: the toolkit's whole view of the
        job (``SM_TRAINING_ENV``). The GPU and CPU counts are the instance type's and this machine's; the
        job still runs on this machine's devices."""
        hosts, groups = self.hosts, self.distribution_groups
        distribution_hosts = list(hosts) if GROUP in groups else []
        master = (distribution_hosts or hosts)[0]
        return {
            "additional_framework_parameters": self.framework_params,
            "channel_input_dirs": channels, "current_host": hosts[k], "current_instance_group": GROUP,
            "current_instance_group_hosts": hosts, "current_instance_type": self.instance_type,
            "distribution_hosts": distribution_hosts, "distribution_instance_groups": groups,
            "framework_module": FRAMEWORK_MODULE, "hosts": hosts, "hyperparameters": self.hyperparameters,
            "input_config_dir": str(opt / "input" / "config"), "input_data_config": self.input_data_config(),
            "input_dir": str(opt / "input"), "instance_groups": [GROUP],
            "instance_groups_dict": {GROUP: {"hosts": hosts, "instance_group_name": GROUP,
                                             "instance_type": self.instance_type}},
            "is_hetero": False, "is_master": hosts[k] == master, "is_modelparallel_enabled": None,
            "is_smddpmprun_installed": False, "is_smddprun_installed": False, "job_name": self.job.job_name,
            "log_level": 20, "master_hostname": master, "model_dir": str(opt / "model"), "module_dir": self.submit,
            "module_name": self.program.removesuffix(".py"), "network_interface_name": "lo",
            "num_cpus": os.cpu_count() or 1, "num_gpus": gpu_count(self.instance_type),
            "num_neurons": 0, "output_data_dir": str(opt / "output" / "data"), "output_dir": str(opt / "output"),
            "output_intermediate_dir": str(opt / "output" / "intermediate"), "resource_config": self.resource_config(k),
            "topology": [], "user_entry_point": self.program,
        }  # fmt: skip

    def _environment_vars(self, k: int, opt: Path, channels: dict[str, str]) -> dict[str, Any]:
        """What ``Environment.to_env_vars`` maps to ``SM_*`` variables (sagemaker_training 5.x)."""
        env = self.training_environment(k, opt, channels)
        names = ("hosts", "network_interface_name", "user_entry_point", "resource_config", "input_data_config",
                 "output_data_dir", "current_host", "current_instance_type", "current_instance_group",
                 "current_instance_group_hosts", "instance_groups", "instance_groups_dict",
                 "distribution_instance_groups", "is_hetero", "module_name", "log_level", "framework_module",
                 "input_dir", "input_config_dir", "output_dir", "num_cpus", "num_gpus", "num_neurons", "model_dir",
                 "module_dir", "output_intermediate_dir")  # fmt: skip
        out = {name: env[name] for name in names}
        out |= {"hps": self.hyperparameters, "framework_params": self.framework_params,
                "channels": sorted(channels), "training_env": env, "user_args": to_cmd_args(self.hyperparameters)}
        out |= {f"channel_{name}": path for name, path in channels.items()}
        out |= {f"hp_{name}": value for name, value in self.hyperparameters.items()}
        return out

    def _channels(self, k: int, node: Job) -> dict[str, str]:
        """Each channel staged into ``/opt/ml/input/data/<channel>`` (a ``ShardedByS3Key`` channel: this node's
        share of its objects): channel -> its directory."""
        channels = {}
        for channel in self.args.get("InputDataConfig", []):
            name = channel["ChannelName"]
            source = channel["DataSource"]["S3DataSource"]
            sharded = source.get("S3DataDistributionType") == "ShardedByS3Key" and len(self.hosts) > 1
            share = (k, len(self.hosts)) if sharded else None
            channels[name] = str(node.stage(source["S3Uri"], f"/opt/ml/input/data/{name}", share))
        return channels

    def _checkpoints(self, node: Job) -> tuple[Path, Snapshot]:
        """The checkpoint directory, with what the checkpoint URI holds (every node gets it), as SageMaker
        syncs it before the job starts."""
        checkpoint = self.args.get("CheckpointConfig")
        where = checkpoint.get("LocalPath", "/opt/ml/checkpoints") if checkpoint else "/opt/ml/checkpoints"
        local = Path(node.relocate(where))
        local.mkdir(parents=True, exist_ok=True)
        if checkpoint and self.job.store.exists(checkpoint["S3Uri"]):
            self.job.store.download(checkpoint["S3Uri"], local)
            node.log(f"restored checkpoints from {checkpoint['S3Uri']}")
        return local, snapshot(local)

    def _command(self, k: int, argv: list[str]) -> tuple[list[str], int]:
        """(the command node ``k`` runs, its processes' threads): the script, or torchrun per node; the local
        nodes share this machine's cores, split among their processes."""
        cores = usable_cores() // len(self.hosts) or 1
        if self.distributed:
            n = processes_for(self.instance_type, self.job.nproc)
            nodes = ["--nnodes", str(len(self.hosts)), "--node-rank", str(k)] if len(self.hosts) > 1 else []
            cmd = [*self.launcher, self.job.python, "-m", "torch.distributed.run", *nodes, *self.rendezvous,
                   "--nproc_per_node", str(n), "--no-python", self.job.python, "-c", DIE_WITH_AGENT, *argv]  # fmt: skip
        else:
            n, cmd = 1, [self.job.python, *argv]
        # torchrun would give each process one thread; the cores are split among the processes instead
        threads = max(1, cores // n)
        if k == 0:
            self.job.log(f"{len(self.hosts)} node(s) x {n} process(es) x {threads} thread(s) on {usable_cores()} "
                         f"core(s)" + (" (torchrun)" if self.distributed else ""))  # fmt: skip
        return cmd, threads
