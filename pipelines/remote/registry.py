"""The SageMaker Model Registry through boto3, read back in the same shape as the local registry
(``DescribeModelPackage`` plus ``Metrics``, the evaluation report), and deploying an approved version."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from pipelines.remote import RemoteError

APPROVAL_STATUSES = ("Approved", "Rejected", "PendingManualApproval")


@dataclass(frozen=True)
class Deployment:
    """Where and how `SageMakerRegistry.deploy` serves a package."""

    endpoint: str
    role: str
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    data_capture: dict[str, Any] | None = None  # an endpoint configuration's DataCaptureConfig


class SageMakerRegistry:
    def __init__(self, session: Any):
        self.sm = session.client("sagemaker")
        self.s3 = session.client("s3")

    def groups(self) -> list[str]:
        pages = self.sm.get_paginator("list_model_package_groups").paginate()
        return [g["ModelPackageGroupName"] for page in pages for g in page.get("ModelPackageGroupSummaryList", [])]

    def list(self, group: str | None = None) -> list[dict[str, Any]]:
        out = []
        for name in [group] if group else self.groups():
            pages = self.sm.get_paginator("list_model_packages").paginate(
                ModelPackageGroupName=name, SortBy="CreationTime", SortOrder="Descending"
            )
            out += [p for page in pages for p in page.get("ModelPackageSummaryList", [])]
        return out

    def describe(self, group: str, version: int | None = None) -> dict[str, Any]:
        packages = self.list(group)
        if not packages:
            raise RemoteError(f"model package group '{group}' has no versions (or does not exist)")
        match = (
            packages[0]
            if version is None
            else next((p for p in packages if p.get("ModelPackageVersion") == version), None)
        )
        if match is None:
            raise RemoteError(f"model package group '{group}' has no version {version}")
        package: dict[str, Any] = self.sm.describe_model_package(ModelPackageName=match["ModelPackageArn"])
        uri = package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri")
        if uri:
            parsed = urlparse(uri)
            try:
                body = self.s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()
                package["Metrics"] = json.loads(body)
            except Exception as exc:  # the report is shown when readable; its absence is not an error
                package["Metrics"] = {"unreadable": f"{uri}: {exc}"}
        return package

    def set_status(self, group: str, version: int | None, status: str, reason: str | None = None) -> dict[str, Any]:
        if status not in APPROVAL_STATUSES:
            raise RemoteError(f"approval status {status!r} is not one of {', '.join(APPROVAL_STATUSES)}")
        package = self.describe(group, version)
        kwargs: dict[str, Any] = {"ModelPackageArn": package["ModelPackageArn"], "ModelApprovalStatus": status}
        if reason:
            kwargs["ApprovalDescription"] = reason
        self.sm.update_model_package(**kwargs)
        return self.describe(group, package["ModelPackageVersion"])

    def deploy(self, package: dict[str, Any], deployment: Deployment) -> str:
        """A model from the approved package, a new endpoint configuration (with data capture, when asked),
        and the endpoint created or updated onto it (SageMaker keeps serving the old configuration until the new
        one is in service). Outside a pipeline: SageMaker Pipelines refuses data capture in its steps."""
        stamp = time.strftime("%Y%m%d%H%M%S")
        group, version = package["ModelPackageGroupName"], package["ModelPackageVersion"]
        name = f"{group[: 63 - len(stamp) - len(str(version)) - 3]}-v{version}-{stamp}"
        endpoint = deployment.endpoint
        self.sm.create_model(ModelName=name, PrimaryContainer={"ModelPackageName": package["ModelPackageArn"]},
                             ExecutionRoleArn=deployment.role)  # fmt: skip
        capture = {"DataCaptureConfig": deployment.data_capture} if deployment.data_capture else {}
        self.sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": name,
                                 "InitialInstanceCount": deployment.instance_count,
                                 "InstanceType": deployment.instance_type, "InitialVariantWeight": 1.0}],
            **capture,
        )  # fmt: skip
        try:
            self.sm.describe_endpoint(EndpointName=endpoint)
            exists = True
        except self.sm.exceptions.ClientError:
            exists = False
        if exists:
            self.sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=name)
        else:
            self.sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=name)
        return "updated" if exists else "created"
