"""``RegisterModel``: a new version in the local model registry (`pipelines.local.registry`), with the
evaluation report as its metrics; the result is shaped like ``DescribeModelPackage``."""

from __future__ import annotations

import json
from typing import Any

from pipelines.local.registry import LocalRegistry, RegistryError
from pipelines.local.runners.base import Job, Runner, StepFailed
from pipelines.local.store import StoreError


class RegisterModelRunner(Runner):
    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        group = args["ModelPackageGroupName"]
        statistics = args.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {})
        metrics: dict[str, Any] = {}
        if statistics.get("S3Uri"):
            try:
                metrics = json.loads(job.store.path(statistics["S3Uri"]).read_text())
            except (OSError, ValueError, StoreError) as exc:
                job.log(f"note: the model quality report {statistics['S3Uri']} is unreadable ({exc})")
        for container in args.get("InferenceSpecification", {}).get("Containers", []):
            if not job.store.exists(container.get("ModelDataUrl", "")):
                raise StepFailed(f"ValidationException: no model artifact at {container.get('ModelDataUrl')}")
        try:
            package = LocalRegistry(job.run_root).register(
                group,
                args.get("InferenceSpecification", {}),
                args.get("ModelApprovalStatus", "PendingManualApproval"),
                model_metrics=args.get("ModelMetrics"),
                metrics=metrics,
                description=args.get("ModelPackageDescription"),
                generated_by=job.execution_arn,
            )
        except RegistryError as exc:
            raise StepFailed(f"ValidationException: {exc}", "ClientError") from exc
        job.log(
            f"registered {group} version {package['ModelPackageVersion']} ({package['ModelApprovalStatus']}) "
            f"in {LocalRegistry(job.run_root).path}"
        )
        return package
