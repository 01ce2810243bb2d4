"""``kind: training``: a PyTorch training job (single instance, or DDP through torch_distributed)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator

from pipelines.instances import GPU_FAMILIES_HINT, GPUS, has_gpu
from pipelines.spec.base import PARAM, Model, Path_, Scalar, ScriptStep, Sharded, Source
from pipelines.suggest import did_you_mean

if TYPE_CHECKING:
    from pipelines.spec.checks import Checks


class Spot(Model):
    max_wait_seconds: int = Field(ge=60, description="spot: total time including waiting for capacity")


class TrainingSpec(Sharded, ScriptStep):
    REQUEST_FIELDS = {**ScriptStep.REQUEST_FIELDS, "MaxWaitTimeInSeconds": ("spot", "max_wait_seconds"),
                      "HyperParameters": ("hyperparameters",), "StaticHyperParameters": ("hyperparameters",),
                      "MetricDefinitions": ("metrics",), "S3DataDistributionType": ("sharded",)}  # fmt: skip
    instance_shape = "TrainingInstanceType"
    toolkit_arguments = True

    kind: Literal["training"]
    script: str = "train.py"
    inputs: dict[str, Source] = Field(
        default_factory=dict, description="channel -> source ($Param, step.output, s3://)"
    )
    hyperparameters: dict[str, Annotated[Scalar, PARAM]] = Field(
        default_factory=dict, description="--name value ($Param allowed)"
    )
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

    def output_names(self) -> list[str]:
        return ["model"]

    def script_options_used(self, here: Path_) -> list[tuple[Path_, str, str]]:
        return [((*here, "hyperparameters", n), n, "") for n in self.hyperparameters]

    def check(self, checks: Checks, here: Path_) -> None:
        super().check(checks, here)
        self.check_sharded(checks, here)
        if self.spot is not None and self.checkpoint_s3_uri is None:
            checks.add(
                (*here, "spot"),
                "spot training without checkpoints loses all progress when the instance is reclaimed",
                "add checkpoint_s3_uri: auto (or an s3:// URI)",
            )
        if self.spot is not None and self.keep_alive_seconds:
            checks.add(
                (*here, "keep_alive_seconds"),
                "warm pools are not available for spot training",
                "remove keep_alive_seconds or spot",
            )
        if self.spot is not None and self.spot.max_wait_seconds < self.max_runtime_seconds:
            checks.add(
                (*here, "spot", "max_wait_seconds"),
                f"max_wait_seconds ({self.spot.max_wait_seconds}) is below "
                f"max_runtime_seconds ({self.max_runtime_seconds})",
                "SageMaker needs max_wait >= max_runtime: raise max_wait_seconds or lower max_runtime_seconds",
            )
        if self.checkpoint_s3_uri not in (None, "auto") and not str(self.checkpoint_s3_uri).startswith("s3://"):
            checks.add(
                (*here, "checkpoint_s3_uri"),
                f"{self.checkpoint_s3_uri!r} is not an s3:// URI",
                "use auto or s3://bucket/prefix",
            )
        if self.distribution == "torch_distributed":
            # the SDK decides the launcher from the instance type when the definition is built
            if self.instance.is_parameter:
                checks.add(
                    (*here, "instance", "type"),
                    "torch_distributed needs a literal instance type, not a parameter",
                    "write the GPU instance type, e.g. ml.g5.12xlarge",
                )
            elif not has_gpu(self.instance.type):
                hint = did_you_mean(self.instance.type, GPUS)
                checks.add(
                    (*here, "instance", "type"),
                    f"torch_distributed needs a GPU instance type; {self.instance.type} has none",
                    (hint + " " if hint else "") + f"use {GPU_FAMILIES_HINT}, or distribution: none",
                )
        for name in self.metrics:
            if not re.fullmatch(r"[A-Za-z0-9_:.\-/]{1,255}", name):
                checks.add(
                    (*here, "metrics", name),
                    f"metric name {name!r} has characters SageMaker refuses",
                    "use letters, digits, _ . : - /",
                )
