"""``Model``, ``EndpointConfig`` and ``Endpoint``: the model and the configuration are recorded under the
run root (as SageMaker keeps them by name); the endpoint is a local server (`pipelines.local.serving`)
started, or moved onto the new configuration when it is already running."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.files import write_atomic
from pipelines.local.runners.base import Job, Runner, StepFailed
from pipelines.local.store import StoreError


def _record(job: Job, folder: str, name: str, content: dict[str, Any]) -> None:
    write_atomic(job.run_root / folder / f"{name}.json", json.dumps(content, indent=2, default=str))


def read_record(job: Job, folder: str, name: str, what: str) -> dict[str, Any]:
    path = job.run_root / folder / f"{name}.json"
    if not path.exists():
        raise StepFailed(f'ValidationException: Could not find {what} "{name}"', "ClientError")
    content: dict[str, Any] = json.loads(path.read_text())
    return content


class ModelRunner(Runner):
    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        name = args.get("ModelName") or job.job_name[:63]
        container = args.get("PrimaryContainer") or (args.get("Containers") or [{}])[0]
        if not job.store.exists(container.get("ModelDataUrl", "")):
            raise StepFailed(
                f"ValidationException: no model artifact at {container.get('ModelDataUrl')}", "ClientError"
            )
        result = {
            "ModelName": name,
            "ModelArn": job.arn("model", name),
            "PrimaryContainer": container,
            "ExecutionRoleArn": args.get("ExecutionRoleArn"),
            "CreationTime": datetime.now(UTC).isoformat(),
        }
        _record(job, "models", name, result)
        job.log(f"model {name}: {container.get('ModelDataUrl')}")
        return result


class EndpointConfigRunner(Runner):
    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        name = args["EndpointConfigName"]
        for variant in args.get("ProductionVariants", []):
            read_record(job, "models", variant["ModelName"], "model")
            if int(variant.get("InitialInstanceCount", 1)) > 1:
                job.log(f"note: {variant['InitialInstanceCount']} instances serve as one local server")
        result = args | {
            "EndpointConfigArn": job.arn("endpoint-config", name),
            "CreationTime": datetime.now(UTC).isoformat(),
        }
        _record(job, "endpoint-configs", name, result)
        job.log(f"endpoint configuration {name}")
        return result


class EndpointRunner(Runner):
    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        from pipelines.local.serving import EndpointError, Serving, deploy  # the server's modules: when deploying

        name, config_name = args["EndpointName"], args["EndpointConfigName"]
        config = read_record(job, "endpoint-configs", config_name, "endpoint configuration")
        variant = config["ProductionVariants"][0]
        model = read_record(job, "models", variant["ModelName"], "model")
        try:
            archive = job.store.path(model["PrimaryContainer"]["ModelDataUrl"])
            serving = Serving(
                environment={k: str(v) for k, v in model["PrimaryContainer"].get("Environment", {}).items()},
                data_capture=config.get("DataCaptureConfig"), store_root=str(job.store.root),
                mounts={bucket: str(path) for bucket, path in job.store.mounts.items()},
            )  # fmt: skip
            state = deploy(job.run_root, name, Path(archive), config_name, serving, log=job.log)
        except (EndpointError, StoreError, OSError) as exc:
            raise StepFailed(f"endpoint {name} failed to serve {config_name}: {exc}") from exc
        url = f"http://127.0.0.1:{state['port']}"
        job.log(f"endpoint {name} InService at {url} (POST {url}/invocations)")
        return {
            "EndpointName": name,
            "EndpointArn": job.arn("endpoint", name),
            "EndpointConfigName": config_name,
            "EndpointStatus": "InService",
            "ProductionVariants": [
                {"VariantName": variant.get("VariantName", "AllTraffic"), "CurrentInstanceCount": 1,
                 "DesiredInstanceCount": int(variant.get("InitialInstanceCount", 1))}
            ],
            "CreationTime": state["created"],
            "LastModifiedTime": state["updated"],
            "Url": url,
        }  # fmt: skip
