"""Talking to a local endpoint as a client would, for the tests: a request and its answer's status and
message, and raw-socket clients for what well-behaved HTTP clients never send."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import time
from pathlib import Path


def artifact(path: Path, files: dict[str, str | bytes]) -> Path:
    """A model.tar.gz holding ``files`` (``code/inference.py``, ``model.pt``...), as a training job packs one."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def message(answer: bytes) -> str:
    """An error answer's message: the server's own refusals are JSON ({"error": ...}); the container's are the
    inference toolkit's body (the message, then its traceback)."""
    try:
        return str(json.loads(answer)["error"])
    except (ValueError, KeyError, TypeError):
        return answer.decode(errors="replace").splitlines()[0] if answer else ""


def post(port: int, body: bytes, content_type: str | None, accept: str | None = "application/json",
         timeout: float = 90) -> tuple[int, str, bytes]:  # fmt: skip
    """(status, the error message or '', the body) of one invocation; a header given as None is not sent (http.client
    adds no Content-Type of its own, as urllib would)."""
    import http.client

    headers = {k: v for k, v in (("Content-Type", content_type), ("Accept", accept)) if v is not None}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/invocations", body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    return response.status, ("" if response.status < 400 else message(answer)), answer


def _status(reply: bytes) -> int:
    first = reply.split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) > 1 and first[1].isdigit() else 0


def refused_before_read(port: int, announced: int, sent: int = 1024) -> tuple[int, float]:
    """(status, seconds) of a request announcing ``announced`` bytes of which only ``sent`` are sent: the
    server must answer without waiting for the rest."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
                     f"Content-Length: {announced}\r\n\r\n".encode() + b"x" * sent)  # fmt: skip
        reply = sock.recv(4096)
    return _status(reply), time.monotonic() - started


def chunked_until_answered(port: int, limit_bytes: int) -> tuple[int, int]:
    """(status, bytes sent) of a chunked body sent until the server answers, at most ``limit_bytes``."""
    sent = 0
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        sock.settimeout(0.001)
        reply = b""
        while sent < limit_bytes and not reply:
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass
            try:
                reply = sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                continue
            except ConnectionResetError:
                break
        sock.settimeout(5)
        if not reply:
            try:
                reply = sock.recv(4096)
            except OSError:
                reply = b""
    return _status(reply), sent
