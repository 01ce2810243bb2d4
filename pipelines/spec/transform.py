"""``kind: transform``: a batch transform job (SageMaker's Transform step) that runs a model over a dataset: the
model is created first (a Model step), then every object under ``input`` goes through it in requests of at most
``max_payload_mb``, and each object's predictions land in ``<step>.predictions`` as ``<object>.out``.

Rules from botocore's SageMaker model (CreateTransformJob: ``MaxPayloadInMB`` 0-100, ``BatchStrategy``,
``SplitType``, ``AssembleWith``, ``TransformInstanceType``) and its documentation, cited where applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from pipelines.spec.base import INSTANCE_FIELDS, Image, Instance, Path_, Source, StepBase

if TYPE_CHECKING:
    from pipelines.spec.checks import Checks


class TransformSpec(StepBase):
    REQUEST_FIELDS = {**StepBase.REQUEST_FIELDS, **INSTANCE_FIELDS, "MaxPayloadInMB": ("max_payload_mb",),
                      "BatchStrategy": ("batch_strategy",), "SplitType": ("split_type",),
                      "ContentType": ("content_type",), "Accept": ("accept",), "S3Uri": ("input",)}  # fmt: skip
    instance_shape = "TransformInstanceType"

    kind: Literal["transform"]
    model: Source = Field(description="the model: automl.model, train.model or tune.model")
    input: Source = Field(description="the data to predict on: $Param, <step>.<output> or s3://...")
    content_type: str = Field("text/csv", description="the MIME type of each request")
    split_type: Literal["None", "Line"] = Field("Line", description="Line: one record per line, batched")
    batch_strategy: Literal["MultiRecord", "SingleRecord"] = "MultiRecord"
    max_payload_mb: int = Field(6, ge=1, le=100, description="the largest request body, MB")
    accept: str = Field("text/csv", description="the MIME type of the predictions")
    instance: Instance = Instance(type="ml.m5.large")
    image: Image = Field(Image(), description="the inference image of a model the project trained (train.model)")

    def output_names(self) -> list[str]:
        return ["predictions"]

    def check(self, checks: Checks, here: Path_) -> None:
        # botocore, TransformInput.SplitType: "If you don't want to split the data, specify None" - then every
        # object is one request, and BatchStrategy SingleRecord is what it means
        if self.split_type == "None" and self.batch_strategy == "MultiRecord":
            checks.add(
                (*here, "batch_strategy"),
                "MultiRecord batches the records of a split input; with split_type None each object is one request",
                "set batch_strategy: SingleRecord, or split_type: Line",
            )
