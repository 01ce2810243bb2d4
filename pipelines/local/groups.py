"""A job's process group stands in for its container: what SageMaker's container boundary does to a job's
processes, the engine does to the process group the job's main process leads (each job starts in a session
of its own).

* When the job's main process exits, the job is over, and so is every process it left. On SageMaker the
  entry point is the container's first process, and "if the 'init' process of a PID namespace terminates,
  the kernel terminates all of the processes in the namespace via a SIGKILL signal" (pid_namespaces(7)).
  Here `end_with_leader` sends SIGKILL to the group as soon as its leader exits, before anyone reaps the
  leader, so the group's id cannot have been taken by another process.
* Stopping a job is bounded: SIGTERM to the group, then SIGKILL to whatever of it still runs after the
  grace period, and the stop waits until no process of the group runs (`stop_groups`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable

KILL_WAIT = 5.0  # seconds a stop waits for SIGKILLed processes to be gone (they cannot refuse)


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_running(pgid: int) -> bool:
    """Whether a process of the group still runs. A zombie (exited, not yet reaped by its parent) does not:
    a member orphaned by its leader waits for init to reap it, which no one here can hurry."""
    if not sys.platform.startswith("linux"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()  # after the command's name: state, ppid, pgrp
        except (OSError, IndexError):
            continue  # it ended while listed
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def end_with_leader(proc: subprocess.Popen[str]) -> threading.Thread | None:
    """A thread that waits for ``proc`` (a group leader) to exit without reaping it, then kills what is left
    of its group; None where the platform cannot wait so. Join it before reaping ``proc``: while the leader
    is unreaped its id names only its own group."""
    if not hasattr(os, "waitid"):
        return None

    def watch() -> None:
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # reaped already (a stop waited for it): members keep the group's id taken
            if not group_running(proc.pid):
                return
        signal_group(proc.pid, signal.SIGKILL)

    thread = threading.Thread(target=watch, name=f"group-{proc.pid}", daemon=True)
    thread.start()
    return thread


def _await(procs: Iterable[subprocess.Popen[str]], deadline: float) -> list[subprocess.Popen[str]]:
    """Wait until each leader is reaped and no process of its group runs, or the deadline; those still not."""
    left = []
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.time()))
        running = group_running(proc.pid)
        while running and time.time() < deadline:
            time.sleep(0.02)
            running = group_running(proc.pid)
        if proc.returncode is None or running:
            left.append(proc)
    return left


def stop_groups(procs: list[subprocess.Popen[str]], deadline: float,
                running: Callable[[], list[subprocess.Popen[str]]]) -> None:  # fmt: skip
    """SIGTERM to each group of ``procs``; at ``deadline`` SIGKILL to every group that still runs, of ``procs``
    and of what ``running()`` then lists (a job that started meanwhile, sent SIGTERM as it started); returns
    once none runs, or `KILL_WAIT` seconds after the SIGKILL."""
    for proc in procs:
        signal_group(proc.pid, signal.SIGTERM)
    left = _await(procs, deadline)
    left += [p for p in running() if p not in procs and (p.poll() is None or group_running(p.pid))]
    for proc in left:
        signal_group(proc.pid, signal.SIGKILL)
    _await(left, time.time() + KILL_WAIT)
