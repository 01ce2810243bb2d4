"""``kind: deploy``: a real-time endpoint serving a model (model, endpoint config, endpoint)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from pipelines.spec.base import Image, Instance, Source, StepBase


class DeploySpec(StepBase):
    gated: ClassVar[bool] = True  # runs only behind the quality gate

    kind: Literal["deploy"]
    model: Source = Field(description="the model artifact: train.model or tune.model")
    endpoint_name: str = Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
    instance: Instance = Instance(type="ml.m5.large")
    image: Image = Image()

    def output_names(self) -> list[str]:
        return ["endpoint"]
