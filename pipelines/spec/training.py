"""``kind: training``: a PyTorch training job (single instance, or DDP through torch_distributed)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from pipelines.spec.base import Model, Scalar, ScriptStep


class Spot(Model):
    max_wait_seconds: int = Field(ge=60, description="spot: total time including waiting for capacity")


class TrainingSpec(ScriptStep):
    kind: Literal["training"]
    script: str = "train.py"
    inputs: dict[str, str] = Field(
        default_factory=dict, description="channel -> source ($Param, step.output, s3://...)"
    )
    hyperparameters: dict[str, Scalar] = Field(default_factory=dict, description="--name value ($Param allowed)")
    metrics: dict[str, str] = Field(default_factory=dict, description="metric name -> regex with one capture group")
    distribution: Literal["none", "torch_distributed"] = "none"
    spot: Spot | None = None
    checkpoint_s3_uri: str | None = Field(
        None, description="'auto' (under the bucket) or s3://...; synced with /opt/ml/checkpoints"
    )
    keep_alive_seconds: int | None = Field(None, ge=1, le=3600, description="warm pool keep-alive")

    @field_validator("metrics")
    @classmethod
    def _regexes_have_one_group(cls, value: dict[str, str]) -> dict[str, str]:
        for name, regex in value.items():
            try:
                groups = re.compile(regex).groups
            except re.error as exc:
                raise ValueError(f"metric '{name}': regex {regex!r} does not compile ({exc})") from exc
            if groups != 1:
                raise ValueError(f"metric '{name}': regex {regex!r} has {groups} capture groups; it needs exactly one")
        return value

    def references(self) -> list[tuple[tuple[str | int, ...], str]]:
        refs: list[tuple[tuple[str | int, ...], str]] = [(("inputs", k), v) for k, v in self.inputs.items()]
        refs += [(("hyperparameters", k), v) for k, v in self.hyperparameters.items() if isinstance(v, str)]
        refs += [(("instance", "type"), self.instance.type)]
        return refs

    def output_names(self) -> list[str]:
        return ["model"]
