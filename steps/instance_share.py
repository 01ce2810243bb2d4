"""Several processing instances converting one input: which instance this is (SageMaker's
``resourceconfig.json``), and which files are its share (all it received when SageMaker sharded the input by
key, else every N-th file)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def config_dir(inputs: Sequence[str]) -> Path:
    """SageMaker's ``/opt/ml/config`` beside the input mounts (so a job run under a local sandbox that moved
    ``/opt/ml`` finds its own), else ``/opt/ml/config``."""
    for item in inputs:
        text = str(Path(item).absolute())
        if "/opt/ml/processing/" in text:
            return Path(text.split("/opt/ml/processing/", 1)[0] + "/opt/ml/config")
    return Path("/opt/ml/config")


def this_host(config: Path) -> tuple[str, list[str]]:
    """(current host, all hosts) from SageMaker's resource config; one host when there is none."""
    try:
        resource = json.loads((config / "resourceconfig.json").read_text())
        return str(resource["current_host"]), [str(h) for h in resource["hosts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return "algo-1", ["algo-1"]


def sharded_by_sagemaker(config: Path, inputs: Sequence[str]) -> bool:
    """Whether SageMaker already gave this instance only its share of the input (``ShardedByS3Key``)."""
    try:
        job = json.loads((config / "processingjobconfig.json").read_text())
    except (OSError, ValueError):
        return False
    for item in job.get("ProcessingInputs", []):
        s3 = item.get("S3Input") or {}
        local = str(s3.get("LocalPath", "")).rstrip("/")
        mine = local and any(str(Path(i).absolute()).rstrip("/").endswith(local) for i in inputs)
        if mine and s3.get("S3DataDistributionType") == "ShardedByS3Key":
            return True
    return False


def my_share(files: list[Path], inputs: Sequence[str], host: str, hosts: list[str], config: Path) -> list[Path]:
    """This instance's files: all it received when SageMaker sharded the input by key; else (every instance
    sees every file) every N-th file by sorted position, so the instances together read each file once."""
    if len(hosts) <= 1 or sharded_by_sagemaker(config, inputs):
        return files
    index = hosts.index(host) if host in hosts else 0
    return [f for k, f in enumerate(files) if k % len(hosts) == index]
