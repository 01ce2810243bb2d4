"""``kind: register``: a model package in the Model Registry, with the evaluation as its metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from pipelines.spec.base import PARAM, Image, Path_, Source, StepBase, StepName
from pipelines.suggest import suggest

if TYPE_CHECKING:
    from pipelines.spec.checks import Checks


class RegisterSpec(StepBase):
    gated: ClassVar[bool] = True  # runs only behind the quality gate
    REQUEST_FIELDS = {**StepBase.REQUEST_FIELDS, "ModelPackageGroupName": ("model_package_group",),
                      "ModelApprovalStatus": ("approval_status",),
                      "SupportedRealtimeInferenceInstanceTypes": ("inference_instances",),
                      "SupportedTransformInstanceTypes": ("transform_instances",)}  # fmt: skip

    kind: Literal["register"]
    model: Source = Field(description="the model artifact: train.model or tune.model")
    evaluation: StepName | None = Field(None, description="an evaluation step whose report becomes the model metrics")
    model_package_group: str = Field(pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    approval_status: Annotated[str, PARAM] = Field("PendingManualApproval", description="or $Param")
    image: Image = Image()
    content_types: list[str] = Field(default_factory=lambda: ["application/json", "application/x-npy", "image/png"])
    response_types: list[str] = Field(default_factory=lambda: ["application/json"])
    # one image is registered, built for the kind of instance listed: CPU types or GPU types, never both
    inference_instances: list[str] = Field(default_factory=lambda: ["ml.m5.large", "ml.m5.xlarge"], min_length=1)
    transform_instances: list[str] = Field(default_factory=lambda: ["ml.m5.large"])

    def output_names(self) -> list[str]:
        return ["model_package_arn"]

    def instance_types(self, here: Path_) -> list[tuple[Path_, str, str]]:
        realtime = [((*here, "inference_instances", j), t, "ProductionVariantInstanceType")
                    for j, t in enumerate(self.inference_instances)]  # fmt: skip
        batch = [((*here, "transform_instances", j), t, "TransformInstanceType")
                 for j, t in enumerate(self.transform_instances)]  # fmt: skip
        return realtime + batch

    def check(self, checks: Checks, here: Path_) -> None:
        from pipelines.instances import has_gpu

        gpu = [t for t in self.inference_instances if has_gpu(t)]
        cpu = [t for t in self.inference_instances if not has_gpu(t)]
        if gpu and cpu:
            checks.add(
                (*here, "inference_instances"),
                f"mixes CPU ({', '.join(cpu)}) and GPU ({', '.join(gpu)}) instance types; a model package "
                "registers one inference image, built for one of them",
                "list CPU types only (the CPU image is registered) or GPU types only (the GPU image)",
            )
        if self.evaluation is None:
            return
        evaluations = [s.name for s in checks.spec.steps if s.kind == "evaluation"]
        target = checks.spec.step(self.evaluation)
        if target is not None and target.kind != "evaluation":
            checks.add(
                (*here, "evaluation"),
                f"'{self.evaluation}' is not an evaluation step",
                suggest(self.evaluation, evaluations),
            )
