"""``kind: deploy``: a real-time endpoint serving a model (model, endpoint config, endpoint), created or
updated in place; when a register step is named, only once its model package is ``Approved``."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from pipelines.spec.base import INSTANCE_FIELDS, Image, Instance, Model, Path_, Source, StepBase, StepName
from pipelines.suggest import suggest

if TYPE_CHECKING:
    from pipelines.spec.checks import Checks


class DataCapture(Model):
    """Requests and responses the endpoint samples to S3 (SageMaker's DataCaptureConfig). SageMaker Pipelines
    refuses it in a pipeline's endpoint configuration (`pipelines.limits`): `validate` says so at its line, and
    ``deploy --data-capture`` switches it on outside the pipeline."""

    sampling_percentage: int = Field(100, ge=0, le=100)
    destination: str = Field("auto", description="s3://... prefix, or auto: s3://<bucket>/<pipeline>/data-capture/")

    def config(self, destination: str) -> dict[str, object]:
        """The endpoint configuration's DataCaptureConfig: inputs and outputs, sampled, under ``destination``."""
        return data_capture_config(self.sampling_percentage, destination)


def data_capture_config(percent: int, destination: str) -> dict[str, object]:
    return {"EnableCapture": True, "InitialSamplingPercentage": percent, "DestinationS3Uri": destination,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]}  # fmt: skip


class DeploySpec(StepBase):
    gated: ClassVar[bool] = True  # runs only behind the quality gate
    REQUEST_FIELDS = {**StepBase.REQUEST_FIELDS, **INSTANCE_FIELDS, "EndpointName": ("endpoint_name",),
                      "EndpointConfigName": ("endpoint_name",), "DataCaptureConfig": ("data_capture",)}  # fmt: skip
    instance_shape = "ProductionVariantInstanceType"

    kind: Literal["deploy"]
    model: Source = Field(description="the model artifact: train.model or tune.model")
    registration: StepName | None = Field(
        None, description="the register step whose model package must be Approved before this deploys"
    )
    endpoint_name: str = Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
    instance: Instance = Instance(type="ml.m5.large")
    image: Image = Image()
    data_capture: DataCapture | None = None

    def output_names(self) -> list[str]:
        return ["endpoint"]

    def check(self, checks: Checks, here: Path_) -> None:
        registers = [s.name for s in checks.spec.steps if s.kind == "register"]
        if self.registration is None and registers:
            checks.add(
                (*here, "kind"),
                "a deploy step in a pipeline that registers models must say which registration it waits for",
                f"add registration: {registers[0]} (it then deploys only once that model package is Approved)",
            )
        target = checks.spec.step(self.registration) if self.registration else None
        if target is not None and target.kind != "register":
            checks.add(
                (*here, "registration"),
                f"'{self.registration}' is not a register step",
                suggest(self.registration or "", registers),
            )
        destination = self.data_capture.destination if self.data_capture else "auto"
        if destination != "auto" and not destination.startswith("s3://"):
            checks.add(
                (*here, "data_capture", "destination"),
                f"{destination!r} is not an s3:// URI",
                "use auto or s3://bucket/prefix/",
            )
