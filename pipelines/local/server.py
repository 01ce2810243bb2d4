"""A local endpoint's server process (``python -m pipelines.local.server DIRECTORY``): SageMaker's serving
contract, ``GET /ping`` and ``POST /invocations``, on 127.0.0.1, in front of a model worker process that runs
the real SageMaker inference toolkit.

The worker is what the SageMaker PyTorch inference container runs for a model: the toolkit's ``Transformer``
with the PyTorch container's ``DefaultPytorchInferenceHandler`` (sagemaker-inference and
sagemaker-pytorch-inference, both installed), importing the artifact's ``code/<SAGEMAKER_PROGRAM>`` (default
``inference.py``). So handlers are found, defaulted and called as in the container: ``model_fn`` once (the
default loads a TorchScript ``model.pt``), then per request ``input_fn(body, content_type)`` (JSON and CSV
bodies as ``str``; no Content-Type: ``None``), ``predict_fn``, ``output_fn(prediction, accept)`` (no Accept or
``*/*``: ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``, else ``application/json``), or ``transform_fn``; only the
toolkit's error type (``BaseInferenceToolkitError``) carries an HTTP status, anything else is a 500, and an
error's body is the toolkit's (its message and traceback). One place differs: the toolkit's default NPY decoder
loads pickles (``allow_pickle=True``); here it is called with pickles refused (a pickle in a request body would
run code in the server).

Each model runs in a worker process of its own: a swap (SIGHUP, after `pipelines.local.serving.deploy` wrote
the new model into ``endpoint.json``) starts the new model's worker, a fresh interpreter that imports the new
artifact's own modules, and switches to it only once its ``model_fn`` succeeded; a failed swap keeps the old
model serving and says so in ``serving.json``. Requests are served off the event loop, one at a time per
worker (as one model-server worker serves them), so ``/ping`` answers while a request works.

What bad traffic gets (SageMaker's limits: a 6 MB request and response, a 60 s invocation):
* a body announced (``Content-Length``) or streamed past 6 MB: 413 at once, before the rest is read;
* headers not finished within `HEADER_TIMEOUT` seconds, or a body not within the invocation's deadline: the
  connection is closed (408 for a body);
* an invocation over its 60 s (``SAGEMAKER_MODEL_SERVER_TIMEOUT``): 504, and its worker is killed and started
  again, so the work ends;
* a response over 6 MB: 500 naming the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import random
import secrets
import signal
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.files import write_atomic

HOST = "127.0.0.1"
# SageMaker real-time endpoints: InvokeEndpoint's Body is at most 6 MB (botocore's InvokeEndpoint model), and
# so is a response; a container must answer an invocation within 60 s ("Use Your Own Inference Code with
# Hosting Services": "your container must respond to requests within 60 seconds").
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
INVOCATION_TIMEOUT = 60.0  # the model container's SAGEMAKER_MODEL_SERVER_TIMEOUT changes it, as in the toolkit
HEADER_TIMEOUT = 10.0  # seconds a connection has to finish a request's headers
KEEP_ALIVE = 5.0  # seconds an idle keep-alive connection stays open
MAX_QUEUED = 128  # invocations waiting for the worker at once (each holds up to 6 MB); more get 503 at once
LOAD_TIMEOUT = 600.0  # seconds a model_fn may take (SageMaker waits for /ping up to 8 minutes at start)
SERVING = "serving.json"  # written by the server: what it serves, and the outcome of the last swap
REFUSAL = "X-Endpoint-Refusal"  # on the answers the endpoint gives itself, never the container's


# --------------------------------------------------------------------------- the worker: the real toolkit


class _Request:
    def __init__(self, headers: dict[str, str]):
        self.headers = headers

    def get_request_properties(self) -> dict[str, str]:
        return self.headers


class ModelServerContext:
    """What the toolkit's ``Transformer`` reads of a model server's (MMS/TorchServe) request context."""

    def __init__(self, model_dir: str, headers: dict[str, str] | None = None):
        self.system_properties = {"model_dir": model_dir, "gpu_id": None}
        self.request_processor = [_Request(headers or {})]
        self.status, self.phrase, self.content_type = 200, "OK", "application/json"

    def set_response_status(self, code: int = 200, phrase: str = "") -> None:
        self.status, self.phrase = int(code), phrase

    def set_response_content_type(self, index: int, value: str) -> None:
        self.content_type = value


def _refuse_pickles() -> None:
    """The toolkit's NPY decoder calls ``np.load(..., allow_pickle=True)``; here it refuses pickles."""
    import io

    import numpy as np
    from sagemaker_inference import content_types, decoder

    def npy_to_numpy(npy_array: bytes) -> Any:
        return np.load(io.BytesIO(npy_array), allow_pickle=False)

    decoder._decoder_map[content_types.NPY] = npy_to_numpy


def worker_main(conn: Any, model_dir: str, environment: dict[str, str]) -> None:
    """The model worker: the toolkit loads the model, then answers each request it receives."""
    os.environ.update(environment)
    sys.path.insert(0, str(Path(model_dir) / "code"))  # the artifact's code/, as the container's handler adds it
    try:
        from sagemaker_inference.transformer import Transformer
        from sagemaker_pytorch_serving_container.default_pytorch_inference_handler import (
            DefaultPytorchInferenceHandler,
        )

        _refuse_pickles()
        transformer = Transformer(default_inference_handler=DefaultPytorchInferenceHandler())
        transformer.validate_and_initialize(model_dir=model_dir, context=ModelServerContext(model_dir))
    except BaseException as exc:  # noqa: BLE001 - reported to the server, which keeps or refuses the model
        conn.send(("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return
    conn.send(("ready", "", ""))
    while True:
        try:
            headers, body = conn.recv()
        except (EOFError, OSError):
            return
        context = ModelServerContext(model_dir, headers)
        out = transformer.transform([{"body": body}], context)[0]
        data = out.encode() if isinstance(out, str) else bytes(out)
        conn.send((context.status, context.phrase, context.content_type, data))


class WorkerGone(Exception):
    """The worker died or was killed while serving a request."""


class Worker:
    """One model's worker process (spawned: a fresh interpreter per model)."""

    def __init__(self, model_dir: str, label: str, environment: dict[str, str]):
        self.model_dir, self.label, self.environment = model_dir, label, environment
        self.lock = asyncio.Lock()  # one request at a time, as one model-server worker serves them
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child, model_dir, environment), daemon=True)
        self.process.start()
        child.close()

    def wait_ready(self, timeout: float = LOAD_TIMEOUT) -> None:
        """Until ``model_fn`` returned; raises RuntimeError with the worker's error when it failed."""
        if not self.conn.poll(timeout):
            self.stop()
            raise RuntimeError(f"model_fn did not return within {timeout:g} s")
        try:
            state, message, trace = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"the model worker exited ({self.process.exitcode}) while loading") from None
        if state != "ready":
            self.stop()
            raise RuntimeError(message + "\n" + trace)

    def call(self, headers: dict[str, str], body: bytes) -> tuple[int, str, str, bytes]:
        try:
            self.conn.send((headers, body))
            return self.conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError) as exc:
            raise WorkerGone(f"the model worker exited ({self.process.exitcode})") from exc

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)


# --------------------------------------------------------------------------- the server


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class Server:
    """The ASGI app in front of the worker in service; SIGHUP swaps in the model endpoint.json asks for."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.record = read_json(directory / "endpoint.json")
        self.queued = 0  # invocations read or being read, waiting for (or in) the worker
        self.worker = self._start(self.record)
        self._write_serving(self.record, None)

    @property
    def timeout(self) -> float:
        """Seconds an invocation may take: the model's SAGEMAKER_MODEL_SERVER_TIMEOUT, else 60."""
        value = (self.record.get("environment") or {}).get("SAGEMAKER_MODEL_SERVER_TIMEOUT")
        try:
            return float(value) if value else INVOCATION_TIMEOUT
        except ValueError:
            return INVOCATION_TIMEOUT

    def _start(self, record: dict[str, Any]) -> Worker:
        worker = Worker(record["model_dir"], record["endpoint_config"], record.get("environment") or {})
        worker.wait_ready()
        print(f"serving {worker.label} from {worker.model_dir}", flush=True)
        return worker

    def _write_serving(self, record: dict[str, Any], error: str | None) -> None:
        """What is in service (the worker's model), and the outcome of the swap ``record`` asked for."""
        write_atomic(self.directory / SERVING, json.dumps({
            "endpoint_config": self.worker.label, "model_dir": self.worker.model_dir, "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(), "request": record.get("request"), "error": error,
        }, indent=2))  # fmt: skip

    async def reload(self) -> None:
        """Start the model endpoint.json now names beside the one in service, then switch to it; a model
        that does not load leaves the old one serving. The same artifact with the same environment (a rerun's
        deploy: a new endpoint configuration of the same model) keeps the loaded worker, renamed."""
        record = read_json(self.directory / "endpoint.json")
        if self._same_model(record):
            self.worker.label, self.record = record["endpoint_config"], record
            self._write_serving(record, None)
            print(f"now serving {self.worker.label}: the same model, already loaded", flush=True)
            return
        loop = asyncio.get_running_loop()
        try:
            worker = await loop.run_in_executor(None, self._start, record)
        except Exception as exc:  # the new model does not load: keep serving the old one
            message = f"{record.get('endpoint_config')} did not load: {str(exc).splitlines()[0]}"
            print(f"swap failed, still serving {self.worker.label}: {exc}", flush=True)
            self._write_serving(record, message)
            return
        old = self.worker
        async with old.lock:  # the request in flight on the old model finishes first
            self.worker, self.record = worker, record
        await loop.run_in_executor(None, old.stop)
        self._write_serving(record, None)
        print(f"now serving {worker.label} from {worker.model_dir}", flush=True)

    def _same_model(self, record: dict[str, Any]) -> bool:
        keys = ("model_digest", "environment", "data_capture", "store_root", "mounts")
        return bool(record.get("model_digest")) and all(record.get(k) == self.record.get(k) for k in keys)

    async def invoke(self, headers: dict[str, str], body: bytes, deadline: float) -> tuple[int, str, str, bytes]:
        """The worker's answer within ``deadline`` (monotonic); past it the worker is killed and restarted."""
        loop = asyncio.get_running_loop()
        worker = self.worker
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    worker = self.worker
                    async with worker.lock:
                        if worker is self.worker:  # not swapped out while this request waited its turn
                            return await loop.run_in_executor(None, worker.call, headers, body)
        except TimeoutError:
            print(f"invocation over {self.timeout:g} s: restarting the worker of {worker.label}", flush=True)
            await self._restart(worker)
            return 504, "Gateway Timeout", "text/plain", f"the invocation took over {self.timeout:g} s".encode()
        except WorkerGone as exc:
            await self._restart(worker)
            return 500, "Internal Server Error", "text/plain", str(exc).encode()

    async def _restart(self, worker: Worker) -> None:
        """A worker killed mid-request (its work ended) is replaced by a fresh one of the same model."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, worker.stop)
        if self.worker is worker:
            self.worker = await loop.run_in_executor(None, self._start, self.record)

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        async def ping(request: Request) -> Response:
            return Response(status_code=200, headers={"X-Serving": self.worker.label})

        def refused(status: int, message: str) -> Response:
            # the rest of the body is never read: the connection closes after this answer. The header tells a
            # client the endpoint refused the request itself (SageMaker's runtime would, before the container)
            return JSONResponse({"error": message}, status, headers={"Connection": "close", REFUSAL: "1"})

        async def invocations(request: Request) -> Response:
            deadline = time.monotonic() + self.timeout
            announced = request.headers.get("content-length", "")
            if announced.isdigit() and int(announced) > MAX_PAYLOAD_BYTES:
                return refused(413, f"payload of {announced} bytes; SageMaker takes at most {MAX_PAYLOAD_BYTES}")
            if self.queued >= MAX_QUEUED:
                return refused(503, f"{MAX_QUEUED} invocations are already waiting; try again")
            self.queued += 1
            try:
                return await answer(request, deadline)
            finally:
                self.queued -= 1

        async def answer(request: Request, deadline: float) -> Response:
            body = bytearray()
            try:
                async with asyncio.timeout_at(deadline):
                    async for chunk in request.stream():
                        body += chunk
                        if len(body) > MAX_PAYLOAD_BYTES:
                            return refused(413, f"payload over {MAX_PAYLOAD_BYTES} bytes; SageMaker takes at most "
                                                f"{MAX_PAYLOAD_BYTES}")  # fmt: skip
            except TimeoutError:
                return refused(408, f"the body did not arrive within {self.timeout:g} s")
            headers = {k.title(): v for k, v in request.headers.items() if k in ("content-type", "accept")}
            status, phrase, out_type, data = await self.invoke(headers, bytes(body), deadline)
            if len(data) > MAX_RESPONSE_BYTES:
                return JSONResponse({"error": f"the response is {len(data)} bytes; SageMaker returns at most "
                                              f"{MAX_RESPONSE_BYTES}"}, 500)  # fmt: skip
            if status < 400:
                self._capture(bytes(body), headers.get("Content-Type", ""), data, out_type)
            return Response(data, status_code=status, media_type=out_type, headers={"X-Serving": self.worker.label})

        return Starlette(routes=[Route("/ping", ping), Route("/invocations", invocations, methods=["POST"])])

    def _capture(self, body: bytes, content_type: str, response: bytes, out_type: str) -> None:
        """SageMaker data capture: sampled requests and responses as JSON lines under the destination."""
        record = self.record
        capture = record.get("data_capture")
        if not capture or not record.get("store_root"):
            return
        if random.uniform(0, 100) >= capture.get("InitialSamplingPercentage", 0):
            return
        from pipelines.local.store import ObjectStore

        now = datetime.now(UTC)
        line = {
            "captureData": {
                "endpointInput": {"observedContentType": content_type, "mode": "INPUT",
                                  "data": base64.b64encode(body).decode(), "encoding": "BASE64"},
                "endpointOutput": {"observedContentType": out_type, "mode": "OUTPUT",
                                   "data": base64.b64encode(response).decode(), "encoding": "BASE64"},
            },
            "eventMetadata": {"eventId": secrets.token_hex(16), "inferenceTime": now.isoformat()},
        }  # fmt: skip
        prefix = capture["DestinationS3Uri"].rstrip("/") + f"/{record['name']}/AllTraffic/{now:%Y/%m/%d/%H}"
        store = ObjectStore(Path(record["store_root"]), {k: Path(v) for k, v in record.get("mounts", {}).items()})
        with contextlib.suppress(Exception):  # capture must never fail a request
            path = store.path(f"{prefix}/capture-{os.getpid()}.jsonl")
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:
                fh.write(json.dumps(line) + "\n")


def guarded_protocol() -> type:
    """uvicorn's h11 protocol with a deadline for a request's headers: uvicorn has none, so a client that
    never finishes its headers (slowloris) would hold its connection forever."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _headers_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            if self._headers_timer is None:
                self._headers_timer = self.loop.call_later(HEADER_TIMEOUT, self._headers_overdue)

        def _headers_overdue(self) -> None:
            self._headers_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            waiting = self.cycle is None or self.cycle.response_complete  # this data starts a new request
            if waiting:
                self._arm()
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete and self._headers_timer is not None:
                self._headers_timer.cancel()  # the request's headers are complete
                self._headers_timer = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self._headers_timer is not None:
                self._headers_timer.cancel()
                self._headers_timer = None
            super().connection_lost(exc)

    return GuardedH11Protocol


def _raise_file_limit() -> None:
    """Every connection is a file descriptor: let the server hold as many as the system allows (a thousand
    half-sent requests must not make it refuse the next good one), not the soft default of 1024."""
    import resource

    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 16, hard))


def serve(directory: Path) -> None:
    import uvicorn

    _raise_file_limit()
    try:
        server = Server(directory)
    except Exception as exc:
        record = read_json(directory / "endpoint.json")
        write_atomic(directory / SERVING, json.dumps({"endpoint_config": None, "request": record.get("request"),
                                                      "error": str(exc).splitlines()[0]}))  # fmt: skip
        print(f"the model did not load: {exc}", flush=True)
        raise SystemExit(1) from None
    config = uvicorn.Config(
        server.app(), host=HOST, port=int(server.record["port"]), http=guarded_protocol(), lifespan="off",
        timeout_keep_alive=int(KEEP_ALIVE), log_level="warning", access_log=False,
    )  # fmt: skip
    web = uvicorn.Server(config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(server.reload()))
        try:
            await web.serve()
        finally:
            server.worker.stop()

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve one local endpoint (started by the local engine)")
    parser.add_argument("directory", type=Path)
    serve(parser.parse_args(argv).directory)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "endpoint-server"
    sys.exit(main())
