"""Settings that belong to the account, not the pipeline: region, role, bucket, name prefix.

Read from the environment (``SMP_<FIELD>``, any case; the region also from ``AWS_REGION``, then
``AWS_DEFAULT_REGION``) or, for what the environment does not set, a ``.smp.env`` file in the working directory
(read with python-dotenv); never from a spec. Values passed to ``Settings(...)`` come first.

A model of pydantic's and a dotenv reader, the precedence of pydantic-settings (arguments, then the
environment, then the file): pydantic-settings itself costs every command 40 ms to import (asyncio, its CLI
and cloud sources), a tenth of a first run (``bench/peers.py``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipelines.errors import UserError

# what a compile uses when no bucket is configured: definitions stay valid and deterministic, and
# `pipeline-upsert` refuses to send one that still names it
PLACEHOLDER_BUCKET = "sm-pipelines-unset-bucket"
PLACEHOLDER_ROLE = "arn:aws:iam::000000000000:role/sm-pipelines-unset-role"
PLACEHOLDER_REGION = "us-east-1"
ENV_FILE = ".smp.env"
# the variables a field is read from, first found first; any other field from SMP_<FIELD>
VARIABLES = {"region": ("SMP_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")}


class MissingRegion(UserError):
    """An AWS call without a configured region: reported before anything is sent (exit 2)."""


class SettingsFileError(UserError):
    """A ``.smp.env`` that cannot be read."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    region: str | None = Field(None, description="SMP_REGION, else AWS_REGION, else AWS_DEFAULT_REGION")
    role_arn: str | None = Field(None, description="execution role for the pipeline and its jobs")
    default_bucket: str | None = Field(None, description="bucket for code, outputs and checkpoints")
    name_prefix: str = Field("", description="prepended to pipeline names, e.g. 'team-a-'")
    account_id: str | None = Field(None, description="for custom image URIs; defaults to the role's account")
    image_repository_prefix: str = Field("sm-pipelines", description="ECR repositories <prefix>-training/-inference")

    def __init__(self, **values: Any) -> None:
        sources = [_upper(os.environ), _env_file()]  # the environment, then the file
        for name in type(self).model_fields:
            if name in values:
                continue
            variables = VARIABLES.get(name, (f"SMP_{name.upper()}",))
            found = next((source[v] for source in sources for v in variables if v in source), None)
            if found is not None:
                values[name] = found
        super().__init__(**values)

    def pipeline_name(self, spec_name: str) -> str:
        """The name SageMaker knows the pipeline by."""
        return f"{self.name_prefix}{spec_name}"

    @property
    def compile_region(self) -> str:
        """The region image URIs name when compiling offline. Without one configured, us-east-1's: such a
        definition runs locally as any other, and nothing that calls AWS (upsert, run, registry, deploy,
        invoke) starts without a region (`require_region`)."""
        return self.region or PLACEHOLDER_REGION

    def require_region(self) -> str:
        if not self.region:
            raise MissingRegion(
                "no region: set SMP_REGION or AWS_REGION (in the environment or .smp.env); nothing was sent"
            )
        return self.region

    @property
    def bucket(self) -> str:
        return self.default_bucket or PLACEHOLDER_BUCKET

    @property
    def role(self) -> str:
        return self.role_arn or PLACEHOLDER_ROLE

    @property
    def account(self) -> str | None:
        if self.account_id:
            return self.account_id
        match = re.match(r"^arn:aws[a-z-]*:iam::(\d{12}):", self.role_arn or "")
        return match.group(1) if match else None


def _upper(variables: Any) -> dict[str, str]:
    """Variable names in upper case: a setting's variable is found in any case, as pydantic-settings finds it."""
    return {str(k).upper(): str(v) for k, v in variables.items() if v is not None}


def _env_file() -> dict[str, str]:
    path = Path(ENV_FILE)
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    try:
        return _upper(dotenv_values(path, encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsFileError(
            f"{path.resolve()}: cannot be read as UTF-8 settings ({exc}); fix or remove it",
        ) from None
