"""Local endpoints, managed: deploy (start a server, or swap the model of the one running), find, list and
stop them. The server itself (the SageMaker serving contract on 127.0.0.1, in front of the real inference
toolkit) is `pipelines.local.server`.

An endpoint is a background process that outlives the pipeline run; its state lives in
``<run root>/endpoints/<name>/``: ``endpoint.json`` (written here: the server's pid and port, and the model
asked for), ``serving.json`` (written by the server: the model in service, and whether the last swap
failed), ``log.txt``. Every signal sent goes to a process this module started: the pid must be alive and
running ``pipelines.local.server`` for this very directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.errors import UserError
from pipelines.files import write_atomic
from pipelines.local.environment import contained
from pipelines.local.server import HOST, MAX_PAYLOAD_BYTES, SERVING, read_json

__all__ = ["HOST", "MAX_PAYLOAD_BYTES", "EndpointError", "Serving", "deploy", "endpoints_dir", "find",
           "list_endpoints", "ping", "stop", "stop_all", "unpack_model"]  # fmt: skip

DEPLOY_TIMEOUT = 180.0  # seconds a deploy waits for the server to serve the new model (or to say it cannot)


class EndpointError(UserError):
    """An endpoint that cannot start or take a model, or that does not exist: the CLI prints it and exits 2."""


@dataclass(frozen=True)
class Serving:
    """How a model is served besides its artifact: the model container's environment (``SAGEMAKER_PROGRAM``...),
    and where data capture writes (the endpoint configuration's DataCaptureConfig, the local object store)."""

    environment: dict[str, str] = field(default_factory=dict)
    data_capture: dict[str, Any] | None = None
    store_root: str | None = None
    mounts: dict[str, str] = field(default_factory=dict)


def endpoints_dir(root: Path) -> Path:
    return Path(root) / "endpoints"


def _record(directory: Path) -> dict[str, Any]:
    return read_json(directory / "endpoint.json")


def is_server(pid: Any, directory: Path) -> bool:
    """Whether ``pid`` is alive and is this endpoint's server: never a pid of 0 or below (which would signal
    a process group), never this process, never a reused pid running something else."""
    if not isinstance(pid, int) or pid <= 1 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    with contextlib.suppress(ChildProcessError):  # reap it if it is our own dead child
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return sys.platform != "linux"  # no /proc: the pid's liveness is all there is to go on
    return b"pipelines.local.server" in cmdline and str(Path(directory).resolve()).encode() in cmdline


def ping(port: int, timeout: float = 2.0) -> str | None:
    """What the endpoint on ``port`` serves (its configuration), or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/ping", timeout=timeout) as response:
            return str(response.headers.get("X-Serving", "")) if response.status == 200 else None
    except (urllib.error.URLError, OSError):
        return None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def unpack_model(archive: Path, into: Path) -> Path:
    """A model.tar.gz extracted as the serving container does, with tarfile's data filter: absolute paths,
    members leaving the tree, links out of it and device nodes are refused, in one line, and nothing is left
    behind (it is extracted beside ``into`` first, then moved into place)."""
    staging = into.with_name(f".{into.name}.{secrets.token_hex(4)}")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise EndpointError(f"{archive}: the model archive is refused: {exc}") from None
    shutil.rmtree(into, ignore_errors=True)
    os.replace(staging, into)
    return into


def deploy(root: Path, name: str, archive: Path, endpoint_config: str, serving: Serving | None = None,
           log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Serve ``archive`` as endpoint ``name``: start it, or swap the model of the one running (the old model
    serves until the new one loaded; one that does not load fails the deploy and leaves the old one
    serving). Two runs deploying one endpoint at once take turns (a file lock per endpoint)."""
    from filelock import FileLock

    endpoints_dir(root).mkdir(parents=True, exist_ok=True)
    with FileLock(endpoints_dir(root) / f".{name}.lock", timeout=DEPLOY_TIMEOUT):
        return _deploy(Path(root), name, archive, endpoint_config, serving or Serving(), log)


def _deploy(root: Path, name: str, archive: Path, endpoint_config: str, serving: Serving,
            log: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    directory = endpoints_dir(root) / name
    directory.mkdir(parents=True, exist_ok=True)
    model_dir = unpack_model(archive, directory / "models" / endpoint_config)
    previous = _record(directory)
    running = bool(previous) and is_server(previous.get("pid"), directory)
    now = datetime.now(UTC).isoformat()
    record: dict[str, Any] = {
        "name": name, "model_dir": str(model_dir), "endpoint_config": endpoint_config,
        "environment": serving.environment,
        "data_capture": serving.data_capture if serving.data_capture and serving.data_capture.get("EnableCapture")
        else None,
        "store_root": serving.store_root, "mounts": serving.mounts, "model_digest": _digest(archive),
        "port": int(previous["port"]) if running else _free_port(), "pid": int(previous["pid"]) if running else 0,
        "created": previous.get("created", now) if running else now, "updated": now,
        "request": secrets.token_hex(8),  # the server answers this request in serving.json
    }  # fmt: skip
    write_atomic(directory / "endpoint.json", json.dumps(record, indent=2))
    if running:
        log(f"endpoint {name}: swapping in {endpoint_config} on port {record['port']}")
        os.kill(record["pid"], signal.SIGHUP)
        return _await_model(directory, record, lambda: is_server(record["pid"], directory))
    server = _start_server(directory)
    record["pid"] = server.pid
    write_atomic(directory / "endpoint.json", json.dumps(record, indent=2))
    log(f"endpoint {name}: starting {endpoint_config} on http://{HOST}:{record['port']} (pid {server.pid})")
    # our own child: alive while it has not exited (its command line is the parent's until it has exec'd)
    return _await_model(directory, record, lambda: server.poll() is None)


def _digest(archive: Path) -> str:
    """The artifact's content hash: a swap to the same bytes (a rerun's deploy) keeps the loaded model."""
    digest = hashlib.sha256()
    with open(archive, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _start_server(directory: Path) -> subprocess.Popen[bytes]:
    """The server process, in a session of its own (it outlives the run, and the run's Ctrl-C does not reach
    it), with the environment a SageMaker container would have: none of the caller's credentials or home."""
    with open(directory / "log.txt", "a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.local.server", str(directory.resolve())],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env=contained(directory / "home"),
        )  # fmt: skip
    return proc


def _await_model(directory: Path, record: dict[str, Any], alive: Callable[[], bool]) -> dict[str, Any]:
    """Until the server serves the model asked for, says it cannot, or dies."""
    deadline = time.time() + DEPLOY_TIMEOUT
    while time.time() < deadline:
        serving = read_json(directory / SERVING)
        if serving.get("request") == record["request"]:
            if serving.get("error"):
                kept = f"; it still serves {serving['endpoint_config']}" if serving.get("endpoint_config") else ""
                raise EndpointError(f"endpoint {record['name']}: {serving['error']}{kept}")
            if ping(int(record["port"])) == record["endpoint_config"]:
                return record
        if not alive():
            break
        time.sleep(0.2)
    raise EndpointError(f"endpoint {record['name']} did not come up serving {record['endpoint_config']}; its log "
                        f"ends:\n{_log_tail(directory)}")  # fmt: skip


def _log_tail(directory: Path, lines: int = 20) -> str:
    path = directory / "log.txt"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def list_endpoints(root: Path) -> list[dict[str, Any]]:
    """Every endpoint under the run root: InService (its server answers), Unresponsive (its server runs but
    does not answer /ping) or Stopped; what it serves is what its server says it serves."""
    out = []
    for path in sorted(endpoints_dir(root).glob("*/endpoint.json")):
        directory = path.parent
        record, serving = _record(directory), read_json(directory / SERVING)
        if not record:
            continue
        alive = is_server(record.get("pid"), directory)
        status = "Stopped" if not alive else "InService" if ping(int(record["port"])) else "Unresponsive"
        out.append(record | {
            "status": status, "url": f"http://{HOST}:{record['port']}",
            "endpoint_config": serving.get("endpoint_config") or record.get("endpoint_config"),
            "last_error": serving.get("error"),
        })  # fmt: skip
    return out


def find(root: Path, name: str) -> dict[str, Any]:
    record = _record(endpoints_dir(root) / name)
    if not record:
        from pipelines.suggest import suggest

        known = [e["name"] for e in list_endpoints(root)]
        raise EndpointError(f"no local endpoint '{name}' under {root}; {suggest(name, known) or 'none deployed'}")
    return record


def stop(root: Path, name: str, timeout: float = 10.0) -> bool:
    """Stop a local endpoint's server (and its model worker); True when it was running. Nothing is signalled
    unless it is this endpoint's server."""
    directory = endpoints_dir(root) / name
    pid = int(find(root, name).get("pid") or 0)
    if not is_server(pid, directory):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)  # the server leads its own process group; its worker is in it
    deadline = time.time() + timeout
    while time.time() < deadline and is_server(pid, directory):
        time.sleep(0.1)
    if is_server(pid, directory):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return True


def stop_all(root: Path) -> list[str]:
    """Every endpoint whose server runs, answering or not."""
    return [e["name"] for e in list_endpoints(root) if e["status"] != "Stopped" and stop(root, e["name"])]
