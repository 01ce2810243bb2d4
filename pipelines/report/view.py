"""`RunView`: one execution as the summary and the report see it, whether it ran here or on SageMaker.

Built by `pipelines.local.view` from the run root's records and by `pipelines.remote.view` from the
SageMaker API and what it downloads. Times are POSIX seconds; results are shaped like the ``Describe*``
responses of the step's job (what property references read).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

EVALUATION_FILES = ("evaluation.json", "confusion_matrices.json", "predictions.csv", "worst_images.npz")


def seconds(value: Any) -> float | None:
    """POSIX seconds from an ISO text, a datetime (boto3) or a number."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value)).timestamp()


@dataclass
class StepView:
    name: str
    type: str
    status: str
    display_name: str | None = None
    started: float | None = None
    ended: float | None = None
    cache_hit: bool = False
    attempts: list[dict[str, Any]] = field(default_factory=list)  # {attempt, started, ended, status, reason}
    failure_reason: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    log: Path | None = None
    cache_note: str | None = None  # a cache hit whose input data changed under the same URIs


@dataclass
class Evaluation:
    """An evaluation step's outputs (the files `steps/evaluate.py` writes) found in ``directory``."""

    step: str
    directory: Path

    def _path(self, name: str) -> Path | None:
        path = self.directory / name
        return path if path.is_file() else None

    @cached_property
    def report(self) -> dict[str, Any]:
        """``evaluation.json``, read once."""
        path = self._path("evaluation.json")
        return json.loads(path.read_text()) if path else {}

    @property
    def metrics(self) -> dict[str, float]:
        return {k: float(v["value"]) for k, v in self.report.get("metrics", {}).items() if isinstance(v, dict)}

    @property
    def samples(self) -> int | None:
        return self.report.get("samples")

    @cached_property
    def matrices(self) -> dict[str, dict[str, Any]]:
        path = self._path("confusion_matrices.json")
        return json.loads(path.read_text()) if path else {}

    @cached_property
    def worst(self) -> dict[str, np.ndarray] | None:
        path = self._path("worst_images.npz")
        if path is None:
            return None
        import numpy as np

        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    @property
    def predictions(self) -> Path | None:
        return self._path("predictions.csv")


@dataclass
class RunView:
    pipeline: str
    id: str
    status: str
    definition: dict[str, Any]
    parameters: dict[str, Any]
    steps: dict[str, StepView]
    started: float | None = None
    ended: float | None = None
    failure: dict[str, Any] | None = None  # {step, reason, log, excerpt}
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # job -> metric -> values
    # step -> the jobs it ran on its own (a tuning job's training jobs), one `child_record` each
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)  # step -> {uri, path}
    report: Path | None = None
    where: str = "local"  # or "sagemaker"
    # where the execution is recorded in MLflow: {uri, experiment, experiment_id, parent, runs: {job: run id}, ui}
    tracking: dict[str, Any] | None = None

    @property
    def elapsed(self) -> float | None:
        return self.ended - self.started if self.started is not None and self.ended is not None else None

    def display(self, step: str) -> str:
        return self.steps[step].display_name or step if step in self.steps else step


def child_record(
    name: str, status: str, parameters: dict[str, str], metric: str, value: float | None, **extra: Any
) -> dict[str, Any]:
    """One job a step ran on its own (a tuning job's training job), as every view and report reads it:
    ``Name``, ``Status``, ``Parameters`` (what was chosen for it), the ``Metric`` it is ranked by and its
    ``Value``, and optionally ``Curves`` (metric -> values per epoch), ``Started`` and ``Ended`` (ISO text or
    seconds), ``DurationSeconds``, ``FailureReason`` and ``Log`` (a local file)."""
    record = {"Name": name, "Status": status, "Parameters": parameters, "Metric": metric, "Value": value,
              "Curves": {}, "Started": None, "Ended": None, "DurationSeconds": None, "FailureReason": None,
              "Log": None}  # fmt: skip
    unknown = set(extra) - set(record)
    if unknown:
        raise TypeError(f"child_record: unknown keys {sorted(unknown)}")
    return record | extra
