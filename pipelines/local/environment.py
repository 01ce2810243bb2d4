"""The environment of every process the local engine starts (jobs, tuning trials, torchrun nodes, endpoint
servers), built from an allow-list, as SageMaker builds a container's: what the image defines, the region,
``HOME`` inside the job's own directory, and what the toolkit and the spec set. Nothing else of the caller's
passes: no credentials (``AWS_*`` keys, profiles, ``GITHUB_TOKEN``...), no settings (``SMP_*``), no home (so
no ``~/.aws/credentials``, ``~/.netrc`` or ``~/.docker/config.json``)."""

from __future__ import annotations

import os
from pathlib import Path

# What the project's Python environment stands for here: the image's search path, locale and time zone, the
# variables that say where its libraries are, and the GPUs the caller lets it use (on SageMaker the
# container sees its instance's). The region is the only AWS variable a SageMaker job gets.
PASSED = ("PATH", "LANG", "LANGUAGE", "TZ", "PYTHONPATH", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
          "NVIDIA_VISIBLE_DEVICES", "AWS_REGION", "AWS_DEFAULT_REGION")  # fmt: skip
PASSED_PREFIXES = ("LC_",)


def contained(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process whose home is ``home`` (made if missing), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k in PASSED or k.startswith(PASSED_PREFIXES)}
    if "AWS_REGION" not in env and os.environ.get("SMP_REGION"):  # the region the settings name
        env["AWS_REGION"] = os.environ["SMP_REGION"]
    home.mkdir(parents=True, exist_ok=True)
    env |= {"HOME": str(home), "PYTHONUNBUFFERED": "1"}
    return env | (extra or {})
