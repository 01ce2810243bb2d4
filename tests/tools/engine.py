"""Hand-written definitions for engine tests: a Processing step as the compiler writes one, and an
engine over scripts put in a test's object store."""

from __future__ import annotations

import textwrap
from pathlib import Path

from pipelines.local.engine import Execution, LocalOptions
from pipelines.local.store import ObjectStore


def processing_step(name: str, script: str, *args: str, outputs: tuple[str, ...] = (), **extra: object) -> dict:
    """A Processing step as the compiler writes one: the script from a code input, outputs per execution."""
    code = {
        "S3Uri": "s3://b/code/",
        "LocalPath": "/opt/ml/processing/input/code",
        "S3DataType": "S3Prefix",
        "S3InputMode": "File",
    }
    output_list = [
        {
            "OutputName": o,
            "S3Output": {
                "S3Uri": {
                    "Std:Join": {"On": "/", "Values": ["s3://b/out", {"Get": "Execution.PipelineExecutionId"}, name, o]}
                },
                "LocalPath": f"/opt/ml/processing/output/{o}",
                "S3UploadMode": "EndOfJob",
            },
        }
        for o in outputs
    ]
    return {
        "Name": name, "Type": "Processing",
        "Arguments": {
            "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large"}},
            "AppSpecification": {"ImageUri": "image", "ContainerArguments": list(args),
                                 "ContainerEntrypoint": ["python3", f"/opt/ml/processing/input/code/{script}"]},
            "RoleArn": "arn:aws:iam::000000000000:role/r",
            "ProcessingInputs": [{"InputName": "code", "S3Input": code}],
            "ProcessingOutputConfig": {"Outputs": output_list},
        },
        **extra,
    }  # fmt: skip


def group_members(pgid: int) -> list[str]:
    """``pid state command`` of each process of a process group that has not exited. A zombie has: an orphan's
    waits for init to reap it, which on some machines takes seconds."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue  # it ended while listed
        state, _, group = tail.split()[:3]
        if int(group) == pgid and state not in ("Z", "X"):
            members.append(f"{stat.parent.name} {state} {head.split('(', 1)[1]}")
    return members


def runs(pid: int) -> bool:
    """Whether the process has not exited (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def engine_with(tmp_path: Path, scripts: dict[str, str], steps: list[dict], **options: object) -> Execution:
    store = ObjectStore(tmp_path / "s3")
    for name, body in scripts.items():
        store.put_bytes(f"s3://b/code/{name}", textwrap.dedent(body).encode())
    definition = {
        "Version": "2020-12-01",
        "Parameters": [{"Name": "Mode", "Type": "String", "DefaultValue": "x"}],
        "Steps": steps,
    }
    return Execution(tmp_path, definition, {}, store, LocalOptions(**options))  # type: ignore[arg-type]


# a worker of a torch_distributed job that kills its node's torchrun agent on the first attempt: the node is lost
AGENT_KILL = """
    import os, pathlib, signal, sys
    marker = pathlib.Path(sys.argv[sys.argv.index("--marker") + 1])
    if not marker.exists():
        marker.write_text("first attempt")
        os.kill(os.getppid(), signal.SIGKILL)   # the agent: as if the instance went away
        signal.pause()
    print("second attempt succeeds")
"""

SELF_KILL = """
    import os, pathlib, signal, sys
    marker = pathlib.Path(sys.argv[1])
    if not marker.exists():
        marker.write_text("first attempt")
        os.kill(os.getpid(), signal.SIGKILL)   # as the OOM killer would
    print("second attempt succeeds")
"""
