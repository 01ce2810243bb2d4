"""``Transform``: a batch transform job. The model (recorded by the Model step) is unpacked as the serving
container unpacks it, and `pipelines.local.transform_job` streams the input through it in ``MaxPayloadInMB``
requests, as the job's process with the job's contained environment; the ``.out`` objects are uploaded to
``TransformOutput.S3OutputPath``. The result is shaped like ``DescribeTransformJob``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.local.runners.base import Job, Runner, StepFailed, run_program
from pipelines.local.runners.endpoint import read_record
from pipelines.local.runners.processing import PROGRESS
from pipelines.local.store import StoreError

MB = 2**20
# API reference, CreateTransformJob MaxPayloadInMB: "The default value is 6 MB"; 0 means no limit for a
# streamed (chunked) request, which the local job does not stream: it is then 100 MB, the largest allowed
DEFAULT_PAYLOAD_MB, LARGEST_PAYLOAD_MB = 6, 100


class TransformRunner(Runner):
    cacheable = True
    # SageMaker's documented cache key attributes for a transform step (developer guide, "Default cache key
    # attributes by pipeline step type")
    CACHE_ATTRIBUTES = ("DataProcessing", "Environment", "ModelName", "TransformInput")

    def cache_material(self, args: dict[str, Any]) -> Any:
        return {k: args.get(k) for k in self.CACHE_ATTRIBUTES}

    def input_uris(self, args: dict[str, Any]) -> list[str]:
        return [args["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]]

    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        from pipelines.local.serving import EndpointError, unpack_model  # the server's modules: when transforming

        started = datetime.now(UTC)
        model = read_record(job, "models", args["ModelName"], "model")
        container = model["PrimaryContainer"]
        try:
            archive = job.store.path(container["ModelDataUrl"])
            model_dir = unpack_model(Path(archive), job.sandbox / "opt" / "ml" / "model")
        except (EndpointError, StoreError) as exc:
            raise StepFailed(f"ClientError: model {args['ModelName']}: {exc}", "ClientError") from exc
        source = args["TransformInput"]["DataSource"]["S3DataSource"]
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise StepFailed(f"ClientError: S3DataType {source['S3DataType']} is not run locally (S3Prefix is)",
                             "ClientError")  # fmt: skip
        data = job.stage(source["S3Uri"], "/opt/ml/transform/input")
        payload = int(args.get("MaxPayloadInMB", DEFAULT_PAYLOAD_MB)) or LARGEST_PAYLOAD_MB
        output = args["TransformOutput"]
        environment = {k: str(v) for k, v in container.get("Environment", {}).items()}
        environment |= {k: str(v) for k, v in (args.get("Environment") or {}).items()}
        spec = {
            "model": str(model_dir), "environment": environment, "input": str(data), "input_uri": source["S3Uri"],
            "output": str(job.sandbox / "output"), "content_type": args["TransformInput"].get("ContentType", ""),
            "split_type": args["TransformInput"].get("SplitType", "None"),
            "batch_strategy": args.get("BatchStrategy", "MultiRecord"), "max_payload_bytes": payload * MB,
            "accept": output.get("Accept", ""), "assemble_with": output.get("AssembleWith", "None"),
        }  # fmt: skip

        def on_line(line: str) -> None:
            done = PROGRESS.search(line)
            if done:
                job.progress(f"{done.group(1)}/{done.group(2)} {done.group(3)}")

        run_program(job, [job.python, "-m", "pipelines.local.transform_job"], spec, "TransformError", on_line)
        count = job.store.upload(job.sandbox / "output", output["S3OutputPath"])
        job.log(f"uploaded {count} prediction file(s) to {output['S3OutputPath']}")
        ended = datetime.now(UTC).isoformat()
        return {
            "TransformJobName": job.job_name, "TransformJobArn": job.arn("transform-job"),
            "TransformJobStatus": "Completed", "ModelName": args["ModelName"],
            "MaxPayloadInMB": payload, "BatchStrategy": spec["batch_strategy"],
            "Environment": args.get("Environment", {}), "TransformInput": args["TransformInput"],
            "TransformOutput": output, "TransformResources": args.get("TransformResources", {}),
            "CreationTime": started.isoformat(), "TransformStartTime": started.isoformat(), "TransformEndTime": ended,
        }  # fmt: skip

