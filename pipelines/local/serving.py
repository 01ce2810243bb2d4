"""Local endpoints: a real HTTP server (uvicorn + starlette) on 127.0.0.1 speaking SageMaker's serving
contract, ``GET /ping`` and ``POST /invocations``, through the model artifact's own ``code/inference.py``.

The handlers are called as the SageMaker inference toolkit calls them: ``model_fn(model_dir)`` once, then
per request ``input_fn(body, content_type)``, ``predict_fn(data, model)``, ``output_fn(prediction,
accept)`` (or ``transform_fn`` when the script defines it), with the toolkit's defaults for handlers the
script leaves out. An exception carrying an HTTP status (``status_code``) answers with that status and a
JSON message; anything else is a 500; the server never dies of a request.

An endpoint is a background process that outlives the pipeline run; its state lives in
``<run root>/endpoints/<name>/`` (``endpoint.json``: pid, port, the model in service; ``log.txt``).
Deploying to a running endpoint writes the new model into ``endpoint.json`` and sends SIGHUP: the server
loads the new model beside the old one and swaps them when it is ready, so no request fails.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.errors import UserError
from pipelines.files import write_atomic

HOST = "127.0.0.1"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker real-time endpoints take at most 6 MB per request


class EndpointError(UserError):
    """An endpoint that cannot start, or that does not exist: the CLI prints it and exits 2."""


# --------------------------------------------------------------------------- handlers, as the toolkit loads them


@dataclass
class Handlers:
    model: Any
    input_fn: Callable[..., Any]
    predict_fn: Callable[..., Any]
    output_fn: Callable[..., Any]
    transform_fn: Callable[..., Any] | None
    label: str  # what is being served (the endpoint configuration), for /ping and the log


def _default_input_fn(body: bytes, content_type: str) -> Any:
    import numpy as np

    if content_type == "application/x-npy":
        return np.load(io.BytesIO(body), allow_pickle=False)
    if content_type == "application/json":
        return np.array(json.loads(body))
    raise _HTTPError(415, f"content type {content_type!r} is not supported by the default input_fn")


def _default_predict_fn(data: Any, model: Any) -> Any:
    import torch

    with torch.no_grad():
        return model(torch.as_tensor(data))


def _default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    if accept in ("application/json", "*/*"):
        value = prediction.tolist() if hasattr(prediction, "tolist") else prediction
        return json.dumps(value).encode(), "application/json"
    raise _HTTPError(406, f"accept type {accept!r} is not supported by the default output_fn")


class _HTTPError(Exception):
    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code


def load_handlers(model_dir: Path, label: str) -> Handlers:
    code = model_dir / "code"
    script = code / os.environ.get("SAGEMAKER_PROGRAM", "inference.py")
    if not script.is_file():
        raise EndpointError(f"{model_dir}: no code/{script.name} in the model artifact")
    sys.path.insert(0, str(code))  # the script imports its neighbours (models.py), as in the container
    spec = importlib.util.spec_from_file_location(f"inference_{abs(hash(str(model_dir)))}", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: dataclasses and pickling look it up there
    spec.loader.exec_module(module)
    if not hasattr(module, "model_fn"):
        raise EndpointError(f"{script}: no model_fn; the PyTorch serving toolkit needs one to load the model")
    return Handlers(
        model=module.model_fn(str(model_dir)),
        input_fn=getattr(module, "input_fn", _default_input_fn),
        predict_fn=getattr(module, "predict_fn", _default_predict_fn),
        output_fn=getattr(module, "output_fn", _default_output_fn),
        transform_fn=getattr(module, "transform_fn", None),
        label=label,
    )


def invoke(handlers: Handlers, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
    if handlers.transform_fn is not None:
        result = handlers.transform_fn(handlers.model, body, content_type, accept)
    else:
        data = handlers.input_fn(body, content_type)
        prediction = handlers.predict_fn(data, handlers.model)
        result = handlers.output_fn(prediction, accept)
    response, out_type = result if isinstance(result, tuple) else (result, accept)
    return (response.encode() if isinstance(response, str) else bytes(response)), out_type


# --------------------------------------------------------------------------- the server process


class Server:
    """The ASGI app: the handlers in service, swapped whole on SIGHUP."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.lock = threading.Lock()
        self.state = read_state(directory)  # what it serves, and where capture writes; replaced on reload
        self.handlers = load_handlers(Path(self.state["model_dir"]), self.state["endpoint_config"])
        print(f"serving {self.state['endpoint_config']} from {self.state['model_dir']}", flush=True)

    def reload(self) -> None:
        """Load the model endpoint.json now names beside the one in service, then swap them."""
        try:
            state = read_state(self.directory)
            handlers = load_handlers(Path(state["model_dir"]), state["endpoint_config"])
        except Exception as exc:  # keep serving the old model
            print(f"reload failed, still serving {self.handlers.label}: {type(exc).__name__}: {exc}", flush=True)
            return
        with self.lock:
            self.handlers = handlers
            self.state = state
        print(f"now serving {state['endpoint_config']} from {state['model_dir']}", flush=True)

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        async def ping(request: Request) -> Response:
            return Response(status_code=200, headers={"X-Serving": self.handlers.label})

        async def invocations(request: Request) -> Response:
            handlers = self.handlers  # the model in service when the request arrived
            content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
            accept = request.headers.get("accept", "application/json").split(",")[0].strip() or "application/json"
            if accept == "*/*":
                accept = "application/json"
            body = await request.body()
            if len(body) > MAX_PAYLOAD_BYTES:
                return JSONResponse({"error": f"payload of {len(body)} bytes; at most {MAX_PAYLOAD_BYTES}"}, 413)
            try:
                # on the server's main thread, one request at a time, as a model-server worker runs them: torch
                # computes the same handlers ~2 ms slower on a worker thread here (see docs/benchmarks.md)
                response, out_type = invoke(handlers, body, content_type, accept)
            except Exception as exc:
                status = getattr(exc, "status_code", None)
                if isinstance(status, int) and 400 <= status < 600:
                    message = getattr(exc, "message", None) or str(exc)
                    return JSONResponse({"error": message}, status)
                print(f"500: {type(exc).__name__}: {exc}", flush=True)
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, 500)
            self._capture(body, content_type, response, out_type)
            return Response(response, media_type=out_type, headers={"X-Serving": handlers.label})

        return Starlette(routes=[Route("/ping", ping), Route("/invocations", invocations, methods=["POST"])])

    def _capture(self, body: bytes, content_type: str, response: bytes, out_type: str) -> None:
        """SageMaker data capture: sampled requests and responses as JSON lines under the destination."""
        state = self.state
        capture = state.get("data_capture")
        if not capture or not state.get("store_root"):
            return
        if random.uniform(0, 100) >= capture.get("InitialSamplingPercentage", 0):
            return
        import base64

        from pipelines.local.store import ObjectStore

        now = datetime.now(UTC)
        record = {
            "captureData": {
                "endpointInput": {"observedContentType": content_type, "mode": "INPUT",
                                  "data": base64.b64encode(body).decode(), "encoding": "BASE64"},
                "endpointOutput": {"observedContentType": out_type, "mode": "OUTPUT",
                                   "data": base64.b64encode(response).decode(), "encoding": "BASE64"},
            },
            "eventMetadata": {"inferenceTime": now.isoformat()},
        }  # fmt: skip
        prefix = capture["DestinationS3Uri"].rstrip("/") + f"/{state['name']}/AllTraffic/{now:%Y/%m/%d/%H}"
        store = ObjectStore(Path(state["store_root"]), {k: Path(v) for k, v in state.get("mounts", {}).items()})
        with contextlib.suppress(Exception):  # capture must never fail a request
            path = store.path(f"{prefix}/capture-{os.getpid()}.jsonl")
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:
                fh.write(json.dumps(record) + "\n")


def serve(directory: Path) -> None:
    import uvicorn

    state = read_state(directory)
    server = Server(directory)
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=server.reload, daemon=True).start())
    uvicorn.run(server.app(), host=HOST, port=int(state["port"]), log_level="warning", access_log=False)


# --------------------------------------------------------------------------- managing endpoints


def endpoints_dir(root: Path) -> Path:
    return Path(root) / "endpoints"


def read_state(directory: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((directory / "endpoint.json").read_text())
    return state


def _write_state(directory: Path, state: dict[str, Any]) -> None:
    write_atomic(directory / "endpoint.json", json.dumps(state, indent=2))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    with contextlib.suppress(ChildProcessError):  # reap it if it is our own dead child
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def ping(port: int, timeout: float = 1.0) -> str | None:
    """What the endpoint on ``port`` serves (its configuration), or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/ping", timeout=timeout) as response:
            return str(response.headers.get("X-Serving", "")) if response.status == 200 else None
    except (urllib.error.URLError, OSError):
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def unpack_model(archive: Path, into: Path) -> Path:
    """A model.tar.gz extracted as the serving container does, with tarfile's data filter."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(into, filter="data")
    return into


@dataclass(frozen=True)
class Capture:
    """Where a deployed endpoint's data capture writes: the endpoint configuration's DataCaptureConfig and the
    local object store (its root and the buckets mounted from directories)."""

    config: dict[str, Any]
    store_root: str
    mounts: dict[str, str]


DEPLOY_TIMEOUT = 120.0  # seconds a deploy waits for the server to serve the new model


def deploy(root: Path, name: str, archive: Path, endpoint_config: str, capture: Capture | None = None,
           log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Serve ``archive`` as endpoint ``name``: start it, or swap the model of the one running. Two runs
    deploying one endpoint at once take turns (a file lock per endpoint): one starts it, the other swaps."""
    from filelock import FileLock

    endpoints_dir(root).mkdir(parents=True, exist_ok=True)
    with FileLock(endpoints_dir(root) / f".{name}.lock", timeout=DEPLOY_TIMEOUT):
        return _deploy(root, name, archive, endpoint_config, capture, log)


def _deploy(root: Path, name: str, archive: Path, endpoint_config: str, capture: Capture | None,
            log: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    directory = endpoints_dir(root) / name
    model_dir = unpack_model(archive, directory / "models" / endpoint_config)
    directory.mkdir(parents=True, exist_ok=True)
    previous = read_state(directory) if (directory / "endpoint.json").exists() else None
    running = previous is not None and _alive(int(previous["pid"])) and ping(int(previous["port"])) is not None
    state: dict[str, Any] = {
        "name": name,
        "model_dir": str(model_dir),
        "endpoint_config": endpoint_config,
        "data_capture": capture.config if capture and capture.config.get("EnableCapture") else None,
        "store_root": capture.store_root if capture else None,
        "mounts": capture.mounts if capture else {},
        "port": int(previous["port"]) if running and previous else _free_port(),
        "pid": int(previous["pid"]) if running and previous else 0,
        "created": previous["created"] if running and previous else datetime.now(UTC).isoformat(),
        "updated": datetime.now(UTC).isoformat(),
    }
    _write_state(directory, state)
    if running:
        log(f"endpoint {name}: swapping in {endpoint_config} on port {state['port']}")
        os.kill(int(state["pid"]), signal.SIGHUP)
    else:
        with open(directory / "log.txt", "a") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pipelines.local.serving", str(directory)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # it outlives the pipeline run, and Ctrl-C of the run does not reach it
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        state["pid"] = proc.pid
        _write_state(directory, state)
        log(f"endpoint {name}: starting {endpoint_config} on http://{HOST}:{state['port']} (pid {proc.pid})")
    deadline = time.time() + DEPLOY_TIMEOUT
    while time.time() < deadline:
        if ping(int(state["port"])) == endpoint_config:
            return state
        if not _alive(int(state["pid"])):
            break
        time.sleep(0.2)
    tail = "\n".join((directory / "log.txt").read_text().splitlines()[-20:]) if (directory / "log.txt").exists() else ""
    raise EndpointError(f"endpoint {name} did not come up serving {endpoint_config}; its log ends:\n{tail}")


def list_endpoints(root: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(endpoints_dir(root).glob("*/endpoint.json")):
        state = read_state(path.parent)
        up = _alive(int(state["pid"])) and ping(int(state["port"])) is not None
        out.append(state | {"status": "InService" if up else "Stopped", "url": f"http://{HOST}:{state['port']}"})
    return out


def find(root: Path, name: str) -> dict[str, Any]:
    directory = endpoints_dir(root) / name
    if not (directory / "endpoint.json").exists():
        from pipelines.suggest import suggest

        known = [e["name"] for e in list_endpoints(root)]
        raise EndpointError(f"no local endpoint '{name}' under {root}; {suggest(name, known) or 'none deployed'}")
    return read_state(directory)


def stop(root: Path, name: str, timeout: float = 10.0) -> bool:
    """Stop a local endpoint; True when it was running."""
    state = find(root, name)
    pid = int(state["pid"])
    if not _alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.time() + DEPLOY_TIMEOUT
    while time.time() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return True


def stop_all(root: Path) -> list[str]:
    return [e["name"] for e in list_endpoints(root) if e["status"] == "InService" and stop(root, e["name"])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve one local endpoint (started by the local engine)")
    parser.add_argument("directory", type=Path)
    serve(parser.parse_args(argv).directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
