"""What every step kind shares: identity, instances, images, references, caching and retries."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME = r"^[A-Za-z][A-Za-z0-9-]{0,63}$"
PARAM_REF = re.compile(r"^\$([A-Za-z][A-Za-z0-9]*)$")
STEP_REF = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)\.([A-Za-z][A-Za-z0-9_-]*)$")

Scalar = str | int | float | bool


class Model(BaseModel):
    """Frozen, and unknown keys are errors: a typo in a spec never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Instance(Model):
    type: str = Field(description="SageMaker instance type (ml.m5.xlarge), or $Param for a pipeline parameter")
    count: int = Field(1, ge=1, description="instances (multi-node with torch_distributed)")
    volume_gb: int = Field(30, ge=1, description="EBS volume per instance, GB")

    @property
    def is_parameter(self) -> bool:
        return bool(PARAM_REF.match(self.type))


class Image(Model):
    """The SageMaker PyTorch image for a framework version, or the project's own (containers/)."""

    framework_version: str = "2.6.0"
    py_version: str = "py312"
    custom: bool = Field(False, description="use the image built from containers/ (make image-build)")


ISO_DURATION = re.compile(r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$")


class Cache(Model):
    enabled: bool = True
    expire_after: str = Field("P30D", description="ISO 8601 duration, e.g. P30D or PT12H")

    @field_validator("expire_after")
    @classmethod
    def _iso_duration(cls, value: str) -> str:
        if not ISO_DURATION.match(value):
            raise ValueError(f"expire_after {value!r} is not an ISO 8601 duration such as P30D or PT12H")
        return value


RetryCause = Literal[
    "Step.SERVICE_FAULT",
    "Step.THROTTLING",
    "SageMaker.JOB_INTERNAL_ERROR",
    "SageMaker.CAPACITY_ERROR",
    "SageMaker.RESOURCE_LIMIT",
]


class Retry(Model):
    errors: list[RetryCause] = Field(min_length=1, description="failure causes this policy retries")
    max_attempts: int = Field(3, ge=1, le=20)
    interval_seconds: int = Field(10, ge=1)
    backoff_rate: float = Field(2.0, ge=1.0)


class StepBase(Model):
    name: Annotated[str, Field(pattern=NAME, description="unique step name")]
    display_name: str | None = Field(None, max_length=82, description="shown in Studio")
    description: str | None = Field(None, max_length=3072)
    depends_on: list[str] = Field(default_factory=list, description="extra ordering on other steps")
    cache: Cache | None = Field(None, description="step caching; off when absent")
    retry: list[Retry] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)

    def references(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(path in the step, text) of every value that may reference a parameter or another step."""
        return []


class ScriptStep(StepBase):
    """A step that runs one of the scripts in ``steps/``."""

    script: str = Field(description="file name under steps/")
    instance: Instance
    image: Image = Image()
    max_runtime_seconds: int = Field(86400, ge=60)

    @field_validator("script")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        if "/" in value or not value.endswith(".py"):
            raise ValueError("must be a .py file name under steps/, e.g. train.py")
        return value
