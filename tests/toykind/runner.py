"""``Callback`` (the echo kind's): writes its message where its output tag says, cacheable on the message."""

from __future__ import annotations

from typing import Any

from pipelines.local.runners.base import Job, Runner


class EchoRunner(Runner):
    cacheable = True

    def cache_material(self, args: dict[str, Any]) -> Any:
        return {"ExperimentName": args["ExperimentName"], "Description": args["Description"]}

    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        output = next(t["Value"] for t in args["Tags"] if t["Key"] == "output")
        job.store.put_bytes(output, args["Description"].encode())
        job.log(f"echoed {args['Description']!r} to {output}")
        name = args["ExperimentName"]
        return {"ExperimentName": name, "ExperimentArn": job.arn("experiment", name),
                "Description": args["Description"], "Output": output}  # fmt: skip
