"""``kind: register``: a model package in the Model Registry, with the evaluation as its metrics."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipelines.spec.base import Image, StepBase


class RegisterSpec(StepBase):
    kind: Literal["register"]
    model: str = Field(description="the model artifact: train.model or tune.model")
    evaluation: str | None = Field(None, description="an evaluation step whose report becomes the model metrics")
    model_package_group: str = Field(pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    approval_status: str = Field("PendingManualApproval", description="or $Param")
    image: Image = Image()
    content_types: list[str] = Field(default_factory=lambda: ["application/json", "application/x-npy", "image/png"])
    response_types: list[str] = Field(default_factory=lambda: ["application/json"])
    inference_instances: list[str] = Field(default_factory=lambda: ["ml.m5.large", "ml.g5.xlarge"])
    transform_instances: list[str] = Field(default_factory=lambda: ["ml.m5.large"])

    def references(self) -> list[tuple[tuple[str | int, ...], str]]:
        refs: list[tuple[tuple[str | int, ...], str]] = [
            (("model",), self.model),
            (("approval_status",), self.approval_status),
        ]
        return refs

    def output_names(self) -> list[str]:
        return ["model_package_arn"]
