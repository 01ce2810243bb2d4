"""Work done in a forked child process while this one does the rest of the command's start-up beside it.

A ``local run`` of a spec that the compile cache does not hold must, before its first job can start, import
the SageMaker SDK, compile and check the definition against botocore's SageMaker model (about 0.25 s), ask
the compile cache (15 ms), import the engine and put the step scripts in the run's store (about 0.1 s). On a
machine with two cores or more the compile and its checks go beside the rest: a child forked from this process
(a copy of it: the loaded spec, the settings, the environment) does them, and hands back what the command
uses of the result through a pipe; a compile-cache hit stops it. The compile cache and everything after run
here, as after a compile in this process, on the same definition.

The fork is taken only where it is safe and can help: Linux (``fork`` without ``exec`` is unsafe on macOS),
one thread in this process (a fork copies no other thread, nor any lock one of them holds), and two CPUs or
more; ``SMP_NO_COMPILE_ASIDE=1`` turns it off. A child that fails hands back nothing, and the caller does the
work itself: an error is then raised where it always was, with its traceback or its one-line message, and
nothing of the child's attempt is shown. What a child that succeeded printed is printed here.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import IO, Any

OFF = "SMP_NO_COMPILE_ASIDE"


def can_fork() -> bool:
    return (sys.platform == "linux" and threading.active_count() == 1 and len(os.sched_getaffinity(0)) > 1
            and os.environ.get(OFF, "") in ("", "0"))  # fmt: skip


class Aside:
    """``Aside.start(work)``; do other work here; then `result` (``None``: do ``work`` here) or `cancel`."""

    def __init__(self, pid: int, pipe: int, stdout: IO[bytes], stderr: IO[bytes]):
        self.pid, self.pipe, self.stdout, self.stderr = pid, pipe, stdout, stderr

    @classmethod
    def start(cls, work: Callable[[], Any]) -> Aside | None:
        """A child running ``work`` (its result must pickle), or ``None`` where no fork is taken (`can_fork`)."""
        if not can_fork():
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            # what the child prints, printed here if it succeeds; closed in `result` or `cancel`
            stdout, stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115
            read, write = os.pipe()
            pid = os.fork()
        except OSError:  # no temporary directory, no process to spare: the caller does the work itself
            return None
        if pid == 0:  # the child: work, hand back, and leave without running anything of the parent's
            status = 1
            try:
                # Ctrl-C or a SIGTERM ends it where it stands (the parent handles them), not as an exception
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.close(read)
                os.dup2(stdout.fileno(), 1)
                os.dup2(stderr.fileno(), 2)
                data = pickle.dumps(work(), pickle.HIGHEST_PROTOCOL)
                sys.stdout.flush()  # all it printed is in its files before the parent reads them
                sys.stderr.flush()
                with os.fdopen(write, "wb") as pipe:
                    pipe.write(data)
                status = 0
            except BaseException:  # noqa: BLE001, S110 - the parent does the work again, and raises what this did
                pass
            finally:
                with contextlib.suppress(BaseException):  # nothing may carry it on into the parent's code
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(status)
        os.close(write)
        return cls(pid, read, stdout, stderr)

    def result(self) -> Any | None:
        """The child's result (waiting for it), or ``None`` when it failed."""
        try:
            with os.fdopen(self.pipe, "rb") as pipe:
                data = pipe.read()
            if not data:  # it failed (or was killed) before handing anything back
                _reap(self.pid)
                return None
            # handed back whole: what is left of it is its exit, a few milliseconds of the kernel freeing its
            # memory, which this process need not wait for (it is reaped when this one exits)
            atexit.register(_reap, self.pid)
            for captured, stream in ((self.stdout, sys.stdout), (self.stderr, sys.stderr)):
                captured.seek(0)
                text = captured.read().decode(errors="replace")
                if text:
                    stream.write(text)
            return pickle.loads(data)  # noqa: S301 - written by this process's own child
        finally:
            self.stdout.close()
            self.stderr.close()

    def cancel(self) -> None:
        """Stop the child: this process does not need its work (it failed first, or found it done)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        atexit.register(_reap, self.pid)  # gone at once; its exit is the kernel's, not waited for here
        for closing in (lambda: os.close(self.pipe), self.stdout.close, self.stderr.close):
            with contextlib.suppress(OSError):
                closing()


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
