"""Local endpoint latency: one 64x64 image through the HTTP server against the same handlers called in-process."""

from __future__ import annotations

import argparse
import http.client
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def _model(work: Path) -> Path:
    """A digits CNN trained one epoch on 64x64 images, packed as a training job packs it."""
    from tests.tools.datasets import write_digits

    archive = work / "model.tar.gz"
    if archive.exists():
        return archive
    write_digits(work / "raw")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run([sys.executable, str(ROOT / "steps" / "preprocess.py"), "--input", str(work / "raw"),
                    "--output", str(work / "shards"), "--size", "64", "64", "--test-fraction", "0.1"],
                   check=True, capture_output=True, env=env)  # fmt: skip
    shards = work / "shards"
    env |= {"SM_CHANNEL_TRAIN": str(shards / "train"), "SM_CHANNEL_VALIDATION": str(shards / "validation"),
            "SM_MODEL_DIR": str(work / "model"), "SM_OUTPUT_DATA_DIR": str(work / "output"),
            "SM_CHECKPOINT_DIR": str(work / "checkpoints")}  # fmt: skip
    subprocess.run(
        [sys.executable, str(ROOT / "steps" / "train.py"), "--epochs", "1"], check=True, capture_output=True, env=env
    )
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted((work / "model").iterdir()):
            tar.add(item, arcname=item.name)
    return archive


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def bench_serving(args: argparse.Namespace) -> str:
    import numpy as np

    from pipelines.local.serving import deploy, invoke, load_handlers, stop, unpack_model

    work = OUT / "serving"
    work.mkdir(parents=True, exist_ok=True)
    archive = _model(work)
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    body, n = buffer.getvalue(), 400

    # in-process: the handlers exactly as the server calls them, no HTTP
    model_dir = unpack_model(archive, work / "inprocess")
    handlers = load_handlers(model_dir, "bench")
    for _ in range(20):
        invoke(handlers, body, "application/x-npy", "application/json")
    inproc = []
    for _ in range(n):
        t0 = time.perf_counter()
        invoke(handlers, body, "application/x-npy", "application/json")
        inproc.append(time.perf_counter() - t0)

    root = work / "root"
    shutil.rmtree(root, ignore_errors=True)
    state = deploy(root, "bench", archive, "bench-config", log=lambda _: None)
    port = int(state["port"])
    headers = {"Content-Type": "application/x-npy", "Accept": "application/json"}

    def client(count: int, latencies: list[float]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # keep-alive, as SDK clients do
        for _ in range(count):
            t0 = time.perf_counter()
            conn.request("POST", "/invocations", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            latencies.append(time.perf_counter() - t0)
            assert response.status == 200
        conn.close()

    try:
        client(20, [])  # warm up
        rows = []
        for concurrency in (1, 8):
            latencies: list[float] = []
            threads = [threading.Thread(target=client, args=(n // concurrency, latencies)) for _ in range(concurrency)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            p50, p99 = _percentiles(latencies)
            rows.append((concurrency, p50, p99, len(latencies) / wall))
    finally:
        stop(root, "bench")
    in50, in99 = _percentiles(inproc)
    overhead = rows[0][1] - in50
    lines = [
        f"One 64x64 image (`application/x-npy`, {len(body)} bytes) to the digits CNN: the local endpoint "
        "(uvicorn + starlette on 127.0.0.1, the artifact's own `inference.py`), keep-alive HTTP clients, "
        f"{n} requests per row, against the same handlers called in-process.",
        "",
        "| path | concurrency | p50 (ms) | p99 (ms) | requests/s |",
        "|---|---:|---:|---:|---:|",
        f"| in-process handlers | 1 | {in50:.2f} | {in99:.2f} | {1 / statistics.mean(inproc):.0f} |",
        *(f"| local endpoint | {c} | {p50:.2f} | {p99:.2f} | {rps:.0f} |" for c, p50, p99, rps in rows),
        "",
        f"p50 overhead of the endpoint over the handlers: {overhead:.2f} ms (target <= 2 ms: "
        f"{'met' if overhead <= 2 else 'NOT met'}). At concurrency 8 the two cores are shared by the clients, "
        "the server and the model.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(bench_serving(argparse.Namespace()))
