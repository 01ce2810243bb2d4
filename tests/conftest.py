"""Shared fixtures: tiny datasets the project generates, and helpers to run a step script the way
SageMaker runs it (a subprocess, paths in ``SM_*`` variables)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.tools.datasets import write_bengali, write_digits

ROOT = Path(__file__).resolve().parents[1]
STEPS = ROOT / "steps"

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
# a local run records itself in MLflow in the background by default; the suite's many runs do not (each would
# leave a writer behind it), and tests/test_tracking.py asks for it (--tracking wait, or background)
os.environ.setdefault("SMP_TRACKING", "off")


def run_step(
    script: str, *args: str, env: dict[str, str] | None = None, timeout: int = 600, launcher: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``steps/<script>`` in a fresh interpreter, as a container would."""
    cmd = (launcher or [sys.executable]) + [str(STEPS / script), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)


def training_env(tmp: Path, train: Path, validation: Path | None) -> dict[str, str]:
    env = {
        "SM_CHANNEL_TRAIN": str(train),
        "SM_MODEL_DIR": str(tmp / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp / "output"),
        "SM_CHECKPOINT_DIR": str(tmp / "checkpoints"),
        "SM_NUM_GPUS": "0",
        "SM_HOSTS": '["algo-1"]',
        "SM_CURRENT_HOST": "algo-1",
    }
    if validation is not None:
        env["SM_CHANNEL_VALIDATION"] = str(validation)
    return env


def pack_model(model_dir: Path, archive: Path) -> Path:
    """Tar ``SM_MODEL_DIR`` the way SageMaker does at the end of a training job."""
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(model_dir.iterdir()):
            tar.add(item, arcname=item.name)
    return archive


@pytest.fixture(scope="session")
def bengali_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bengali_raw")
    write_bengali(out, n_images=300, n_files=2, rows_per_group=150, seed=1)
    return out


@pytest.fixture(scope="session")
def digits_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits_raw")
    write_digits(out)
    return out


@pytest.fixture(scope="session")
def digits_shards(tmp_path_factory: pytest.TempPathFactory, digits_raw: Path) -> Path:
    out = tmp_path_factory.mktemp("digits_shards")
    result = run_step(
        "preprocess.py",
        "--input",
        str(digits_raw),
        "--output",
        str(out),
        "--size",
        "16",
        "16",
        "--val-fraction",
        "0.15",
        "--test-fraction",
        "0.15",
        "--shard-size",
        "500",
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory, digits_shards: Path) -> Path:
    """A model trained for 3 epochs on digits; returns the job directory (model/, output/, checkpoints/)."""
    job = tmp_path_factory.mktemp("digits_job")
    env = training_env(job, digits_shards / "train", digits_shards / "validation")
    result = run_step("train.py", "--epochs", "3", "--batch-size", "64", env=env)
    assert result.returncode == 0, result.stderr
    (job / "stdout.txt").write_text(result.stdout)
    pack_model(job / "model", job / "model.tar.gz")
    return job


sys.path.insert(0, str(STEPS))  # step scripts import each other as top-level modules, as in the container
