"""State shared by the per-kind compile functions: session, settings, parameters, compiled outputs."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines import layout
from pipelines.compiler import sdk
from pipelines.compiler.code import CodeBundle
from pipelines.errors import UserError
from pipelines.files import write_atomic
from pipelines.instances import DEFAULT_GPU_INSTANCE
from pipelines.settings import Settings
from pipelines.spec import Image, PipelineSpec
from pipelines.spec.base import PARAM_REF, STEP_REF


class CompileError(UserError):
    """What the target cannot do, said in one sentence before anything is sent."""


def sdk_environment() -> None:
    """Keep the SDK offline and quiet (no telemetry, no user or admin config files, no v2 banner), and load what
    compiling needs of it (`pipelines.compiler.sdk`)."""
    if "SAGEMAKER_USER_CONFIG_OVERRIDE" not in os.environ:
        config = Path(tempfile.gettempdir()) / "sm-pipelines-sdk-config.yaml"
        if not config.exists():
            config.write_text(
                "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
            )
        os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"] = str(config)
        os.environ.setdefault("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", str(config))
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    import logging
    import warnings

    # the SDK logs what it pops from definitions, telemetry notices and config keys it applied: noise
    # here. Set before the first import: the SDK configures these loggers only when they are unset.
    for name in ("sagemaker", "sagemaker.config", "sagemaker.telemetry.telemetry_logging"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Running within a PipelineSession")
    sdk.load()


def _member(enum: Any, value: str) -> Any:
    """The member of an SDK enum whose value is ``value`` (``SageMaker.CAPACITY_ERROR``)."""
    return next(m for m in enum if m.value == value)


# the caller's AWS configuration: a compile never reads it (a profile named in AWS_PROFILE that does not exist
# must not fail a purely local run, and no credential of the caller's is ever resolved while compiling)
AWS_CONFIGURATION = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                     "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
                     "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                     "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")  # fmt: skip


@contextlib.contextmanager
def offline_aws() -> Iterator[None]:
    """While compiling: no profile, no config or credentials file, no metadata service, no botocore client
    (`sdk.offline_clients`); restored after."""
    saved = {name: os.environ.pop(name) for name in AWS_CONFIGURATION if name in os.environ}
    empty = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
             "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    before = {name: os.environ.get(name) for name in empty}
    os.environ.update(empty)
    try:
        with sdk.offline_clients():
            yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        os.environ.update(saved)


def offline_session(settings: Settings) -> Any:
    """A PipelineSession that needs neither network nor credentials: its bucket is known up front."""
    import boto3
    from sagemaker.workflow.pipeline_context import PipelineSession

    # Static placeholder keys stop botocore's credential chain from probing the instance metadata
    # service when the SDK creates its clients; a PipelineSession never calls AWS, so they are never sent.
    boto_session = boto3.Session(
        region_name=settings.compile_region,
        aws_access_key_id="offline-compile",
        aws_secret_access_key="offline-compile",
    )
    session = PipelineSession(boto_session=boto_session, sagemaker_config=sdk.SDK_CONFIG)
    session._default_bucket = settings.bucket  # type: ignore[assignment]  # no S3 lookup or bucket creation
    return session


def container_tag(role: str) -> str:
    """Content hash of an image role's build context (``containers/<role>/``): the tag `make image-build`
    gives the image."""
    digest = hashlib.sha256()
    for path in layout.image_files(role):
        digest.update(path.relative_to(layout.CONTAINERS).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def base_image_uri(settings: Settings, role: str, version: str = "2.6.0", py_version: str = "py312") -> str:
    """The SageMaker PyTorch GPU image the project's own image of a role extends (containers/<role>/)."""
    with offline_aws():
        sdk_environment()
        return pytorch_image_uri(settings.compile_region, version, py_version, DEFAULT_GPU_INSTANCE, role)


def custom_image_uri(settings: Settings, role: str) -> str:
    account = settings.account
    if account is None:
        raise CompileError("image: custom needs the AWS account: set SMP_ACCOUNT_ID or SMP_ROLE_ARN")
    return (
        f"{account}.dkr.ecr.{settings.compile_region}.amazonaws.com/"
        f"{settings.image_repository_prefix}-{role}:{container_tag(role)}"
    )


IMAGE_URIS = layout.BUILD / ".compile-cache" / "image-uris.json"


@functools.lru_cache(maxsize=1)
def _known_image_uris() -> dict[str, str]:
    try:
        known = json.loads(IMAGE_URIS.read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


@functools.lru_cache(maxsize=256)
def pytorch_image_uri(region: str, version: str, py_version: str, instance_type: str, scope: str) -> str:
    """The SageMaker PyTorch image, as the SDK's ``image_uris.retrieve`` names it. A lookup reads botocore's
    endpoint data (70 ms, most of a 100-step compile), and its answer depends only on the request and the SDK's
    and botocore's versions: so each answer is kept per process and on disk, under those versions
    (``SMP_NO_COMPILE_CACHE=1``: never read or written)."""
    from importlib.metadata import version as installed

    key = "|".join((f"sagemaker={installed('sagemaker')}", f"botocore={installed('botocore')}", region, version,
                    py_version, instance_type, scope))  # fmt: skip
    cached = not os.environ.get("SMP_NO_COMPILE_CACHE")
    if cached and key in _known_image_uris():
        return _known_image_uris()[key]
    from sagemaker import image_uris

    try:
        uri = str(image_uris.retrieve("pytorch", region=region, version=version, py_version=py_version,
                                      instance_type=instance_type, image_scope=scope))  # fmt: skip
    except ValueError as exc:
        raise CompileError(f"no SageMaker PyTorch {scope} image for {version}/{py_version}: {exc}") from exc
    if cached:
        _known_image_uris()[key] = uri
        with contextlib.suppress(OSError):  # a read-only build directory costs only the time
            write_atomic(IMAGE_URIS, json.dumps(_known_image_uris(), indent=0, sort_keys=True))
    return uri


@dataclass
class CompileContext:
    spec: PipelineSpec
    settings: Settings
    session: Any
    code: CodeBundle
    pipeline_name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: dict[tuple[str, str], Any] = field(default_factory=dict)  # (step, output) -> property/Join
    sdk_steps: dict[str, Any] = field(default_factory=dict)  # spec step name -> SDK step (the last one)
    property_files: dict[str, Any] = field(default_factory=dict)  # evaluation step -> PropertyFile
    report_files: dict[str, str] = field(default_factory=dict)  # evaluation step -> report file name
    # (step, output) -> a builder of the SDK Model that serves it, for outputs that carry their own inference
    # containers (an automl step's best candidate); any other model output is served by the project's image
    models: dict[tuple[str, str], Any] = field(default_factory=dict)
    # (step, metric) -> the value a quality gate compares (a JsonGet on a report, a step property)
    gate_values: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def bucket(self) -> str:
        return self.settings.bucket

    @property
    def role(self) -> str:
        return self.settings.role

    def s3(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", self.pipeline_name, *parts])

    def value(self, item: Any, as_string: bool = False) -> Any:
        """A literal, or the pipeline parameter a ``$Name`` names (as a string expression if asked)."""
        if isinstance(item, str):
            match = PARAM_REF.match(item)
            if match:
                param = self.parameters[match.group(1)]
                return param.to_string() if as_string and param.parameter_type.python_type is not str else param
        if as_string and isinstance(item, bool):
            return "true" if item else "false"
        return str(item) if as_string else item

    def source(self, text: str) -> Any:
        """An input's S3 location: a parameter, another step's output, or a literal s3:// URI."""
        if text.startswith("s3://") or PARAM_REF.match(text):
            return self.value(text)
        match = STEP_REF.match(text)
        assert match, text  # the loader checked every reference
        return self.outputs[(match.group(1), match.group(2))]

    def image_uri(self, image: Image, scope: str, instance_type: str) -> str:
        if image.custom:
            return custom_image_uri(self.settings, "training" if scope == "training" else "inference")
        # a parameter's value is known only at run time: GPU images also run on CPU instances
        instance = DEFAULT_GPU_INSTANCE if PARAM_REF.match(instance_type) else instance_type
        return pytorch_image_uri(self.settings.compile_region, image.framework_version, image.py_version, instance,
                                 scope)  # fmt: skip

    def tracking_environment(self, environment: dict[str, str]) -> dict[str, Any] | None:
        """A job's environment with the MLflow tracking server it logs to, when the spec names one (the
        ``sagemaker-mlflow`` plugin resolves the ARN as a tracking URI); None when empty."""
        arn = self.spec.tracking.mlflow
        if arn is None:
            return dict(environment) or None
        return {"MLFLOW_TRACKING_URI": self.value(arn), "MLFLOW_EXPERIMENT_NAME": self.spec.experiment,
                **environment}  # fmt: skip

    def mlflow_config(self) -> dict[str, Any] | None:
        """CreateTrainingJob's ``MlflowConfig`` (botocore's model) for the spec's MLflow resource, or None."""
        arn = self.spec.tracking.mlflow
        if arn is None:
            return None
        value = self.value(arn)
        return {"MlflowResourceArn": getattr(value, "expr", value), "MlflowExperimentName": self.spec.experiment}

    def depends_on(self, names: list[str]) -> list[Any] | None:
        return [self.sdk_steps[n] for n in names] or None

    def cache_config(self, step: Any) -> Any:
        from sagemaker.workflow.steps import CacheConfig

        if step.cache is None or not step.cache.enabled:
            return None
        return CacheConfig(enable_caching=True, expire_after=step.cache.expire_after)

    def retry_policies(self, step: Any, job: bool = True) -> list[Any] | None:
        from sagemaker.workflow.retry import (
            SageMakerJobExceptionTypeEnum,
            SageMakerJobStepRetryPolicy,
            StepExceptionTypeEnum,
            StepRetryPolicy,
        )

        policies: list[Any] = []
        for retry in step.retry:
            common = {
                "max_attempts": retry.max_attempts,
                "interval_seconds": retry.interval_seconds,
                "backoff_rate": retry.backoff_rate,
            }
            # by value: calling these SDK enums with a value returns their default member whatever the value
            step_types = [
                _member(StepExceptionTypeEnum, e) for e in dict.fromkeys(retry.errors) if e.startswith("Step.")
            ]
            job_types = [
                _member(SageMakerJobExceptionTypeEnum, e)
                for e in dict.fromkeys(retry.errors)
                if e.startswith("SageMaker.")
            ]
            if step_types:
                policies.append(StepRetryPolicy(exception_types=step_types, **common))
            if job_types:
                if not job:
                    raise CompileError(f"step '{step.name}': SageMaker.* retry errors apply to job steps only")
                policies.append(SageMakerJobStepRetryPolicy(exception_types=job_types, **common))
        return policies or None
