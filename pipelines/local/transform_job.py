"""A batch transform job's process (``python -m pipelines.local.transform_job JOB.json``), started by
`pipelines.local.runners.transform` with the job's contained environment.

It loads the model once in a model worker (`pipelines.local.server.Worker`: the inference toolkit's
``Transformer`` over the artifact's ``code/``, as the model server runs it) and streams every input object
through it as SageMaker's batch transform does (API reference, CreateTransformJob):

* ``SplitType: Line`` splits an object into records (lines); ``MultiRecord`` packs as many whole records into a
  request as fit in ``MaxPayloadInMB``, ``SingleRecord`` sends one per request; ``SplitType: None`` sends each
  object whole. A record larger than ``MaxPayloadInMB`` fails the job, naming the object and its line.
* The responses of an object are written, in order, to ``<output>/<object>.out``; ``AssembleWith: Line`` ends
  each response with a newline.
* A response that is not 200 fails the job with the model's own message.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.local.server import Worker


class TransformError(Exception):
    pass


def _records(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, line if line.endswith(b"\n") else line + b"\n"


def _requests(path: Path, shown: str, job: dict[str, Any]) -> Iterator[tuple[bytes, int]]:
    """(body, records in it) of every request an object makes."""
    limit = int(job["max_payload_bytes"])
    if job["split_type"] != "Line":
        body = path.read_bytes()
        if len(body) > limit:
            raise TransformError(f"{shown} is {len(body)} bytes, over MaxPayloadInMB ({limit // 2**20} MB), and "
                                 "SplitType None sends each object whole: split it (SplitType Line)")  # fmt: skip
        yield body, 1
        return
    batch: list[bytes] = []
    size = 0
    for number, record in _records(path):
        if len(record) > limit:
            raise TransformError(f"{shown}: the record at line {number} is {len(record)} bytes, over MaxPayloadInMB "
                                 f"({limit // 2**20} MB)")  # fmt: skip
        if batch and (job["batch_strategy"] == "SingleRecord" or size + len(record) > limit):
            yield b"".join(batch), len(batch)
            batch, size = [], 0
        batch.append(record)
        size += len(record)
    if batch:
        yield b"".join(batch), len(batch)


def run(job: dict[str, Any]) -> int:
    inputs, output = Path(job["input"]), Path(job["output"])
    files = sorted(p for p in inputs.rglob("*") if p.is_file())
    if not files:
        raise TransformError(f"{job['input_uri']}: no objects to transform")
    total = sum(sum(1 for _ in _records(p)) for p in files) if job["split_type"] == "Line" else len(files)
    worker = Worker(job["model"], "transform", job["environment"])
    try:
        worker.wait_ready(float(job.get("load_timeout", 600)))
    except RuntimeError as exc:
        raise TransformError(f"the model did not load: {exc}") from None
    headers = {"Content-Type": job["content_type"], "Accept": job["accept"]}
    done = requests = 0
    try:
        for path in files:
            relative = path.relative_to(inputs).as_posix()
            uri = job["input_uri"]
            shown = uri if uri.endswith("/" + relative) else f"{uri.rstrip('/')}/{relative}"
            target = output / f"{relative}.out"
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                for body, count in _requests(path, shown, job):
                    status, phrase, _, data = worker.call(headers, body)
                    requests += 1
                    if status != 200:
                        message = data.decode("utf-8", "replace").strip()[:2000]
                        raise TransformError(f"{shown}: the model answered {status} {phrase}: {message}")
                    out.write(data)
                    if job["assemble_with"] == "Line" and data and not data.endswith(b"\n"):
                        out.write(b"\n")
                    done += count
                    print(f"{done}/{total} rows", flush=True)
        print(f"transformed {len(files)} object(s) in {requests} request(s)", flush=True)
    finally:
        worker.stop()
    return 0


def main(argv: list[str]) -> int:
    try:
        return run(json.loads(Path(argv[0]).read_text()))
    except TransformError as exc:
        print(f"TransformError: {exc}", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
