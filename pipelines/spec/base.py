"""What every step kind shares: identity, instances, images, references, caching and retries.

References are declared on the fields that accept them (`Ref` in the annotation) and found by one
generic walk over a validated model (`walk_references`), so no field can be forgotten: a ``$Param``
in a field that takes none is an error too, not a literal that breaks the compile.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, field_validator

if TYPE_CHECKING:
    from pipelines.spec.checks import Checks

NAME = r"^[A-Za-z][A-Za-z0-9-]{0,63}$"
PARAM_REF = re.compile(r"^\$([A-Za-z][A-Za-z0-9]*)$")
STEP_REF = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)\.([A-Za-z][A-Za-z0-9_-]*)$")

Scalar = str | int | float | bool
Path_ = tuple[str | int, ...]


# --------------------------------------------------------------------------- references


@dataclass(frozen=True)
class Ref:
    """Marks a field (or its items) as one that may reference something instead of holding a literal."""

    parameter: bool = True  # $Param
    step_output: bool = False  # <step>.<output>; with it, s3://... literals
    step_name: bool = False  # a bare step name (depends_on, register.evaluation)


PARAM = Ref()  # a literal or $Param
SOURCE = Ref(step_output=True)  # $Param, <step>.<output> or s3://...
STEP = Ref(parameter=False, step_name=True)

Source = Annotated[str, SOURCE]
StepName = Annotated[str, STEP]


@dataclass(frozen=True)
class Reference:
    path: Path_  # where in the step (or pipeline) the value sits
    text: str
    accepts: Ref | None  # None: the field takes no reference at all

    @property
    def parameter(self) -> str | None:
        match = PARAM_REF.match(self.text)
        return match.group(1) if match else None

    @property
    def step(self) -> tuple[str, str | None] | None:
        """(step, output) this value reads from, or (step, None) for a bare step name."""
        if self.accepts is None or self.parameter:
            return None
        if self.accepts.step_name:
            return (self.text, None)
        if self.accepts.step_output and not self.text.startswith("s3://"):
            match = STEP_REF.match(self.text)
            return (match.group(1), match.group(2)) if match else None
        return None


def _marker(metadata: Any) -> Ref | None:
    return next((m for m in metadata if isinstance(m, Ref)), None)


def _marker_in(annotation: Any) -> Ref | None:
    """The marker of an annotation, also when it sits inside a union (``StepName | None``)."""
    if get_origin(annotation) is Annotated:
        return _marker(get_args(annotation)[1:]) or _marker_in(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return next((m for m in map(_marker_in, get_args(annotation)) if m is not None), None)
    return None


def alternatives(annotation: Any) -> list[Any]:
    """The concrete alternatives of an annotation (Annotated, Optional and unions removed)."""
    if get_origin(annotation) is Annotated:
        return alternatives(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [alt for arg in get_args(annotation) for alt in alternatives(arg)]
    return [annotation]


def _item(annotation: Any, container: type) -> tuple[Any, Ref | None]:
    """The item annotation (and its marker) of the list/dict alternative of an annotation."""
    for alt in alternatives(annotation):
        if get_origin(alt) is container:
            item = get_args(alt)[-1] if get_args(alt) else Any
            marker = _marker(get_args(item)[1:]) if get_origin(item) is Annotated else None
            return item, marker
    return Any, None


def walk_references(
    value: Any, path: Path_ = (), annotation: Any = Any, accepts: Ref | None = None
) -> Iterator[Reference]:
    """Every string in a validated spec value that could be a reference, with what its field accepts.

    Non-reference strings come out too when they look like ``$Param``, so a parameter written where
    none is allowed is caught rather than compiled as a literal.
    """
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            yield from walk_references(getattr(value, name), (*path, name), field.annotation, _marker(field.metadata))
    elif isinstance(value, dict):
        item, marker = _item(annotation, dict)
        for key, child in value.items():
            yield from walk_references(child, (*path, key), item, marker or accepts)
    elif isinstance(value, list):
        item, marker = _item(annotation, list)
        for i, child in enumerate(value):
            yield from walk_references(child, (*path, i), item, marker or accepts)
    elif isinstance(value, str):
        accepts = accepts or _marker_in(annotation)
        if accepts is not None or PARAM_REF.match(value):
            yield Reference(path, value, accepts)


# --------------------------------------------------------------------------- shared models


class Model(BaseModel):
    """Frozen, and unknown keys are errors: a typo in a spec never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Instance(Model):
    type: Annotated[str, PARAM] = Field(description="SageMaker instance type (ml.m5.xlarge), or $Param")
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


_DURATION = TypeAdapter(timedelta)


def _iso_duration(value: str) -> str:
    """Checked with pydantic's ISO 8601 duration parser; the text is kept as written for the definition."""
    if not value.startswith("P"):
        raise ValueError(f"expire_after {value!r} is not an ISO 8601 duration such as P30D or PT12H")
    try:
        duration = _DURATION.validate_python(value)
    except ValueError:
        raise ValueError(f"expire_after {value!r} is not an ISO 8601 duration such as P30D or PT12H") from None
    if duration <= timedelta(0):
        raise ValueError(f"expire_after {value!r} must be longer than zero")
    return value


class Cache(Model):
    enabled: bool = True
    expire_after: Annotated[str, AfterValidator(_iso_duration)] = Field(
        "P30D", description="ISO 8601 duration, e.g. P30D or PT12H"
    )


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
    gated: ClassVar[bool] = False  # register and deploy: only behind the quality gate
    # request member (the last one on its path in the compiled request) -> the key under the step that sets
    # it: a value the SageMaker API refuses is reported at the line of that key
    REQUEST_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {"Environment": ("environment",), "Name": ("name",)}
    # the API's enum the step's instance type must be in (checked before compiling: the SDK's image lookup
    # fails on an unknown type with no line to point at)
    instance_shape: ClassVar[str | None] = None

    name: Annotated[str, Field(pattern=NAME, description="unique step name")]
    display_name: str | None = Field(None, max_length=82, description="shown in Studio")
    description: str | None = Field(None, max_length=3072)
    depends_on: list[StepName] = Field(default_factory=list, description="extra ordering on other steps")
    cache: Cache | None = Field(None, description="step caching; off when absent")
    retry: list[Retry] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)

    def references(self) -> list[Reference]:
        """Every value of this step that references a parameter or another step (found, not listed)."""
        return list(walk_references(self))

    def output_names(self) -> list[str]:
        """What other steps may read as ``<step>.<output>``."""
        return []

    def gate_metrics(self) -> list[str]:
        """The metrics of this step the quality gate may read as ``<step>.<metric>``."""
        return []

    def request_fields(self) -> dict[str, tuple[str, ...]]:
        return self.REQUEST_FIELDS

    def instance_types(self, here: Path_) -> list[tuple[Path_, str, str]]:
        """(spec path, value or ``$Param``, the API enum it must be in) of every instance type the step names."""
        instance = getattr(self, "instance", None)
        if self.instance_shape is None or not isinstance(instance, Instance):
            return []
        return [((*here, "instance", "type"), instance.type, self.instance_shape)]

    def check(self, checks: Checks, here: Path_) -> None:
        """The rules that concern only this kind (cross-step ones included); see `pipelines.spec.checks`."""


INSTANCE_FIELDS = {"InstanceType": ("instance", "type"), "InstanceCount": ("instance", "count"),
                   "VolumeSizeInGB": ("instance", "volume_gb")}  # fmt: skip


class Sharded(Model):
    """Inputs split among a job's instances by S3 key (``S3DataDistributionType: ShardedByS3Key``), for the kinds
    whose inputs are named by the spec (processing inputs, training channels)."""

    inputs: dict[str, Source] = Field(default_factory=dict)
    sharded: list[str] = Field(
        default_factory=list,
        description="inputs split among the instances by S3 key (ShardedByS3Key): each instance receives about "
        "1/count of the objects; every other input is copied to every instance (FullyReplicated)",
    )

    def check_sharded(self, checks: Checks, here: Path_) -> None:
        for j, name in enumerate(self.sharded):
            if name not in self.inputs:
                checks.add(
                    (*here, "sharded", j),
                    f"'{name}' is not one of this step's inputs ({', '.join(self.inputs) or 'none'})",
                    "name an input of the step's 'inputs' to split among its instances",
                )

    def data_distribution(self, name: str) -> str:
        """The input's S3DataDistributionType."""
        return "ShardedByS3Key" if name in self.sharded else "FullyReplicated"


class ScriptStep(StepBase):
    """A step that runs one of the scripts in ``steps/``."""

    REQUEST_FIELDS = {**StepBase.REQUEST_FIELDS, **INSTANCE_FIELDS, "MaxRuntimeInSeconds": ("max_runtime_seconds",)}

    # whether SageMaker's training toolkit builds the script's arguments (`-x` for a one-letter name)
    toolkit_arguments: ClassVar[bool] = False

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

    def script_options_used(self, here: Path_) -> list[tuple[Path_, str, str]]:
        """(where, option name, what it is for) of every ``--option`` the step passes to its script."""
        return []

    def check(self, checks: Checks, here: Path_) -> None:
        from pipelines.spec.images import check_script_imports
        from pipelines.spec.scripts import check_script_options

        check_script_options(self, checks, here)
        check_script_imports(self, checks, here)
