"""The command line of a local quickstart run on generated data, for tests and benchmarks."""

from __future__ import annotations

import sys
from pathlib import Path


def quickstart_command(root: Path, data: Path, *extra: str) -> list[str]:
    """``python -m pipelines local run config/digits.yaml`` on ``root``, its data bucket served from ``data``."""
    return [sys.executable, "-m", "pipelines", "local", "run", "config/digits.yaml", "--root", str(root),
            "--mount", f"sm-pipelines-data={data}", *extra]  # fmt: skip
