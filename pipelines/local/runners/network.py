"""A network namespace holding nothing but a loopback interface, for a distributed training job's processes.

torchrun's agent and PyTorch's TCPStore listen on every interface (PyTorch has no option to bind them), so a
local torch_distributed job would expose its rendezvous port to the machine's network for its life. On Linux,
as root (CI, containers, this project's machines), where ``unshare`` and ``nsenter`` work, every node of the
job runs inside one namespace of its own: 127.0.0.1 works between its nodes, and nothing outside can reach
them. Where that is not possible the job runs as before and its log says what is exposed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from types import TracebackType

# run inside the new namespace: bring its loopback interface up (a new namespace's is down), say so, then
# hold the namespace open until the engine closes stdin
_HOLD = """
import fcntl, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH14s", fcntl.ioctl(s, 0x8913, struct.pack("16sH14s", b"lo", 0, b"")))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", flags | 1, b""))
print("ready", flush=True)
sys.stdin.read()
"""


def available() -> bool:
    return sys.platform == "linux" and os.geteuid() == 0 and bool(shutil.which("unshare") and shutil.which("nsenter"))


class LoopbackNetwork:
    """``prefix`` runs a command inside the namespace (``nsenter --net=...``); empty where none could be made."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.prefix: list[str] = []
        self.holder: subprocess.Popen[str] | None = None

    def __enter__(self) -> LoopbackNetwork:
        if not available():
            self.log("note: torchrun's rendezvous port listens on every interface while the job runs (a network "
                     "namespace of its own needs root and unshare); its port is ephemeral")  # fmt: skip
            return self
        holder = subprocess.Popen(
            ["unshare", "--net", "--", sys.executable, "-c", _HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            holder.kill()
            error = (holder.communicate()[1] or "").strip().splitlines()[-1:]
            self.log(f"note: no network namespace for the job ({''.join(error) or 'unshare failed'}); torchrun's "
                     "rendezvous port listens on every interface while it runs")  # fmt: skip
            return self
        self.holder = holder
        self.prefix = ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
        self.log("the job's processes run in a network namespace with only the loopback interface")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.holder is not None:
            if self.holder.stdin:
                self.holder.stdin.close()
            try:
                self.holder.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                self.holder.wait()
