"""Settings that belong to the account, not the pipeline: region, role, bucket, name prefix.

Read from the environment (``SMP_*``; the region also from ``AWS_REGION``/``AWS_DEFAULT_REGION``) or a
``.smp.env`` file in the working directory; never from a spec.
"""

from __future__ import annotations

import re

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines.errors import UserError

# what a compile uses when no bucket is configured: definitions stay valid and deterministic, and
# `pipeline-upsert` refuses to send one that still names it
PLACEHOLDER_BUCKET = "sm-pipelines-unset-bucket"
PLACEHOLDER_ROLE = "arn:aws:iam::000000000000:role/sm-pipelines-unset-role"
PLACEHOLDER_REGION = "us-east-1"


class MissingRegion(UserError):
    """An AWS call without a configured region: reported before anything is sent (exit 2)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SMP_", env_file=".smp.env", extra="ignore", frozen=True, populate_by_name=True
    )

    region: str | None = Field(None, validation_alias=AliasChoices("SMP_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"))
    role_arn: str | None = Field(None, description="execution role for the pipeline and its jobs")
    default_bucket: str | None = Field(None, description="bucket for code, outputs and checkpoints")
    name_prefix: str = Field("", description="prepended to pipeline names, e.g. 'team-a-'")
    account_id: str | None = Field(None, description="for custom image URIs; defaults to the role's account")
    image_repository_prefix: str = Field("sm-pipelines", description="ECR repositories <prefix>-training/-inference")

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
