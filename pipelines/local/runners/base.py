"""What every runner shares: the `Runner` seam, the `Job` a runner works in, and `StepFailed`.

A runner owns everything the engine needs to know about one definition ``Type``: how to run it (its
result shaped like the matching ``Describe*`` response, so property references resolve as on
SageMaker), which steps it nests (a condition's branches), what it reads before running, whether it
is cacheable and from what. What its result published (which a cache hit needs still there) is its
Type's `pipelines.report.outcomes.Outcome.published`. The engine only dispatches.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import RunFailure
from pipelines.local.arns import arn
from pipelines.local.environment import contained
from pipelines.local.expressions import Resolver
from pipelines.local.groups import end_with_leader, signal_group
from pipelines.local.store import ObjectStore, StoreError

OPT_ML = "/opt/ml/"
# what a step's runner may leave beside its log for the run views (`pipelines.local.view`):
CURVES_FILE = "curves.json"  # {job name: {metric: [every value captured, in order]}}
CHILDREN_FILE = "children.json"  # the jobs the step ran on its own, `pipelines.report.view.child_record` each


def _prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl() if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before it runs: die when the engine's thread that started it dies (kill -9 included)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


@functools.lru_cache(maxsize=1)
def _setpriv() -> str | None:
    """util-linux's ``setpriv`` where it can set the parent-death signal (2.33 and later), else None."""
    found = shutil.which("setpriv") if _PRCTL is not None else None
    if found is None:
        return None
    try:
        usage = subprocess.run([found, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return found if "--pdeathsig" in usage else None


def _dying_with_parent(cmd: list[str], path: str | None) -> tuple[list[str], Callable[[], None] | None]:
    """A job's command, and what runs in its process before it, so that it dies with the engine's thread that
    started it (kill -9 included): through ``setpriv --pdeathsig KILL``, which sets the signal and then runs the
    command in the same process, where it exists; else a ``preexec_fn`` that sets it. The second makes
    `subprocess` fork the whole engine (3 ms a job) where it would vfork, and runs Python in a child forked
    from a process with threads (the engine's steps), which the `subprocess` documentation warns against."""
    setpriv = _setpriv()
    # a program that is not there fails to start here, as without setpriv, not as a job that exited 127
    if setpriv is not None and shutil.which(cmd[0], path=path) is not None:
        return [setpriv, "--pdeathsig", "KILL", "--", *cmd], None
    return cmd, (_die_with_parent if _PRCTL is not None else None)


class StepFailed(RunFailure):
    """A step that did not succeed; ``cause`` is what retry policies match (e.g. SageMaker.JOB_INTERNAL_ERROR);
    ``excerpt`` the log lines that explain it (the first traceback), when the job printed one."""

    def __init__(self, reason: str, cause: str = "AlgorithmError", excerpt: list[str] | None = None):
        super().__init__(reason)
        self.reason, self.cause, self.excerpt = reason, cause, excerpt or []


_RANK_PREFIX = re.compile(r"^\[(?:rank|default)\d+\]:\s?")
_WRAPPERS = ("ChildFailedError", "SystemExit")  # torchrun's own report of a failed rank, not the cause


class RootCause:
    """Watches a job's output for what made it fail: the first traceback that is not torchrun's own report
    of a failed rank (its workers print theirs first), else the first ``<script>: error: ...`` line."""

    def __init__(self) -> None:
        self.excerpt: list[str] = []
        self.message: str | None = None
        self._block: list[str] | None = None

    def feed(self, line: str) -> None:
        if self.message is not None:
            return
        line = _RANK_PREFIX.sub("", line)
        if self._block is None:
            if line.startswith("Traceback (most recent call last)"):
                self._block = [line]
            elif re.match(r"^[\w.-]+: error: ", line):
                self.message, self.excerpt = line, [line]
            return
        self._block.append(line)
        if line and not line[0].isspace() and not line.startswith(("Traceback", "During handling", "The above")):
            if line.split(":")[0].rsplit(".", 1)[-1] in _WRAPPERS:
                self._block = None  # a wrapper's traceback: keep looking
            elif len(self._block) > 1:
                self.message, self.excerpt, self._block = line, self._block[-60:], None


@dataclass
class Job:
    """What a runner gets besides the step: where to work, the store, logging, and the process registry."""

    step_name: str
    job_name: str
    directory: Path
    store: ObjectStore
    resolver: Resolver
    log: Callable[[str], None]  # one line to the step's log
    processes: set[subprocess.Popen[str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    nproc: int | None = None
    python: str = sys.executable
    stopping: threading.Event = field(default_factory=threading.Event)  # set when the execution is stopping
    progress: Callable[[str], None] = lambda _: None  # a short line of what the step is doing now
    environment: dict[str, str] = field(default_factory=dict)  # added to every process this job starts
    root: Path | None = None  # the run root (registry, endpoints, model records live there)
    execution_arn: str = ""  # the execution this job belongs to (a registered package's GeneratedBy)
    stopped: bool = False  # stopped on purpose (`stop`), not failed
    on_spawn: Callable[[], None] = lambda: None  # a process of this job started or ended (the record names them)
    staged: dict[str, str] = field(default_factory=dict)  # sandbox copy -> the object it came from
    _current: subprocess.Popen[str] | None = None

    def stop(self) -> None:
        """Stop this job's running process group (a tuner stopping a trial early)."""
        self.stopped = True
        proc = self._current
        if proc is not None:
            signal_group(proc.pid, signal.SIGTERM)

    @property
    def sandbox(self) -> Path:
        return self.directory / "sandbox"

    def fresh_sandbox(self) -> None:
        """Each attempt starts clean, as a retried SageMaker job gets a new container."""
        shutil.rmtree(self.sandbox, ignore_errors=True)
        self.sandbox.mkdir(parents=True)

    def relocate(self, value: Any) -> Any:
        """Every ``/opt/ml/...`` path inside the sandbox, recursively."""
        if isinstance(value, str) and value.startswith(OPT_ML):
            return str(self.sandbox) + value
        if isinstance(value, list):
            return [self.relocate(v) for v in value]
        if isinstance(value, dict):
            return {k: self.relocate(v) for k, v in value.items()}
        return value

    def arn(self, resource: str, name: str | None = None) -> str:
        return arn(resource, name or self.job_name)

    @property
    def run_root(self) -> Path:
        # executions/<id>/steps/<step> lies under the run root when none is given
        return self.root or self.directory.parents[3]

    def run(self, cmd: list[str], env: dict[str, str], cwd: Path, on_line: Callable[[str], None] | None = None) -> None:
        """Run a job's process, streaming its output into the log; raise `StepFailed` unless it exits 0."""
        if self.stopped:  # stopped before it started (another instance of the job failed)
            raise StepFailed("Stopped: the job was stopped early", "Stopped")
        self.log("$ " + " ".join(cmd))
        launched, preexec = _dying_with_parent(cmd, env.get("PATH"))
        proc = subprocess.Popen(
            launched, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True,  # its own process group: Ctrl-C stops it and its children
            preexec_fn=preexec,
        )  # fmt: skip
        with self.lock:
            self.processes.add(proc)
            # a stop that came between the start and the registration did not see this process: stop it now
            late = self.stopping.is_set()
        if late:
            signal_group(proc.pid, signal.SIGTERM)
        # the job ends with its main process, and so does every process it left (`pipelines.local.groups`)
        container = end_with_leader(proc)
        self.on_spawn()
        self._current = proc
        cause = RootCause()
        followed = False
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                self.log(line)
                cause.feed(line)
                if on_line:
                    on_line(line)
            followed = True
        finally:
            if not followed:  # its output could not be followed (an error in a reader of it): it ends with the step
                signal_group(proc.pid, signal.SIGKILL)
            if container is not None:
                container.join()  # before the leader is reaped
            rc = proc.wait()
            self._current = None
            with self.lock:
                self.processes.discard(proc)
            self.on_spawn()
        if self.stopped:
            raise StepFailed("Stopped: the job was stopped early", "Stopped")
        program = next((Path(c).name for c in cmd[1:] if c.endswith(".py")), Path(cmd[0]).name)
        if rc < 0:
            raise killed(cmd, program, -rc)
        if rc != 0:
            why = f"{cause.message} ({program} exited with status {rc})" if cause.message else (
                f"{program} exited with status {rc}"
            )  # fmt: skip
            raise StepFailed(self.sources(f"AlgorithmError: {why}"), excerpt=[self.sources(x) for x in cause.excerpt])

    def sources(self, text: str) -> str:
        """A message about staged inputs naming the objects they came from, not their sandbox copies."""
        for local, uri in sorted(self.staged.items(), key=lambda item: -len(item[0])):
            text = text.replace(local + "/", uri.rstrip("/") + "/").replace(local, uri)
        return text

    def instances(self, count: int) -> list[Job]:
        """The instances of a job of ``count``: itself when one (its sandbox the engine made fresh for the
        attempt); else each with its own fresh sandbox under ``algo-<k>/``, its log lines prefixed with its host
        name, the same store, processes and stop signal."""
        return [self] if count == 1 else [self._instance(host) for host in host_names(count)]

    def _instance(self, host: str) -> Job:
        instance = dataclasses.replace(
            self, directory=self.directory / host, log=lambda line: self.log(f"[{host}] {line}"), staged={},
            _current=None, stopped=False,
        )  # fmt: skip
        instance.fresh_sandbox()
        return instance

    def stage(self, uri: str, local_path: str, share: tuple[int, int] | None = None) -> Path:
        target = Path(self.relocate(local_path))
        try:
            n = self.store.download(uri, target, share)
        except StoreError as exc:
            hint = "; put the data there or serve its bucket from a directory with --mount BUCKET=DIR"
            raise StepFailed(f"ClientError: input {uri}: {exc}{hint}", "ClientError") from exc
        except OSError as exc:
            raise StepFailed(f"cannot stage {uri}: {exc}", "Step.SERVICE_FAULT") from exc
        self.log(f"staged {n} object(s) from {uri} into {local_path}")
        self.staged[str(target)] = uri
        return target


def killed(cmd: list[str], program: str, signum: int) -> StepFailed:
    """A job's process killed by a signal, classed as SageMaker classes it.

    * The script: the training toolkit runs it as a subprocess and reports any non-zero exit, a signal's
      included, as ``ExecuteUserScriptError`` (sagemaker-training ``process.check_error``, which adds
      "OutOfMemory: Process killed by SIGKILL (signal 9)" for exit 137), a client error the job fails with as
      an AlgorithmError: no retry policy retries it. A processing container whose process dies fails the job
      the same way.
    * A torchrun agent: the node's own launcher gone, as when an instance is lost. SageMaker reports an
      instance failure as InternalServerError, which retry policies match as ``SageMaker.JOB_INTERNAL_ERROR``
      (developer guide, "Retry policies for pipeline steps": "JOB_INTERNAL_ERROR occurs when the SageMaker job
      returns InternalServerError").
    """
    name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
    if "torch.distributed.run" in cmd:
        return StepFailed(f"InternalServerError: the node's torchrun agent was killed by {name} (a lost instance)",
                          "SageMaker.JOB_INTERNAL_ERROR")  # fmt: skip
    memory = "; OutOfMemory: Process killed by SIGKILL (signal 9)" if signum == signal.SIGKILL else ""
    return StepFailed(f"AlgorithmError: ExecuteUserScriptError: {program} was killed by {name} (ExitCode "
                      f"-{signum}){memory}")  # fmt: skip


def run_program(job: Job, cmd: list[str], spec: dict[str, Any], error: str, on_line: Callable[[str], None],
                env: dict[str, str] | None = None) -> None:  # fmt: skip
    """Run one of the engine's own job programs (the local AutoML search, a batch transform): ``spec`` written to
    ``<sandbox>/job.json`` and passed last; a line ``<error>: <message>`` it prints before failing becomes the
    step's failure reason, as a ClientError (what the job refused in the input, said in one line)."""
    path = job.sandbox / "job.json"
    path.write_text(json.dumps(spec, indent=2))
    said: list[str] = []

    def watch(line: str) -> None:
        if line.startswith(f"{error}: "):
            said.append(line.removeprefix(f"{error}: "))
        else:
            on_line(line)

    try:
        job.run([*cmd, str(path)], job_environment(env or {}, job), job.sandbox, watch)
    except StepFailed:
        if said:
            raise StepFailed(f"ClientError: {said[-1]}", "ClientError") from None
        raise


def job_environment(extra: dict[str, str], job: Job) -> dict[str, str]:
    """A job's process environment: the allow-listed one (`pipelines.local.environment`), HOME in its sandbox,
    the job's own settings (threads) and ``extra`` (the toolkit's variables, the spec's environment)."""
    return contained(job.sandbox / "home", job.environment | extra)


def check_requirements(path: Path, job: Job, installer: str) -> None:
    """A requirements file the job installs when it starts (``installer`` says who: the training toolkit, a
    processing job's entry script); locally nothing is downloaded at run time, so every requirement must
    already be met by this environment, or the job fails saying which."""
    if not path.is_file():
        return
    missing = _unmet(path.read_text())
    if missing:
        raise StepFailed(
            f"ClientError: {path.name} asks for what this environment lacks: {'; '.join(missing)}. On SageMaker "
            f"{installer} in the container; locally, install it into the project's .venv",
            "ClientError",
        )
    job.log(f"{path.name}: every requirement is met by this environment")


@functools.lru_cache(maxsize=32)
def _unmet(text: str) -> tuple[str, ...]:
    """The requirements of a requirements file's text this environment does not meet (the same for every job of
    an execution: the engine's environment does not change while it runs)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            missing.append(f"{line} (not a requirement)")
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            missing.append(f"{line} (not installed)")
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            missing.append(f"{line} (installed: {installed})")
    return tuple(missing)


def warm_up(requirements: Iterable[str]) -> None:
    """What a run's first job would otherwise wait for, answered ahead (`local run` does it beside the compile;
    both answers are kept per process): whether ``setpriv`` can set the parent-death signal (it runs
    ``setpriv --help``), and what of each requirements file's text this environment does not meet."""
    _setpriv()
    for text in requirements:
        _unmet(text)


class Runner:
    """The seam for one definition ``Type``; subclasses override what differs from these defaults."""

    resolve_arguments = True  # resolve the step's Arguments before `run` (a condition evaluates its own)
    cacheable = False  # whether a CacheConfig applies to this Type
    never_retried: tuple[str, ...] = ()  # failure causes no retry policy retries for this Type

    def branches(self, step: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Steps nested in this one, by branch (a condition's IfSteps/ElseSteps); they run after it."""
        return {}

    def reads(self, step: dict[str, Any]) -> Any:
        """The part of the step whose ``Get Steps.X`` references make it wait for X."""
        return step.get("Arguments", {})

    def branch_taken(self, result: dict[str, Any]) -> str | None:
        """After it ran: the branch whose steps run (the others are Skipped)."""
        return None

    def cache_material(self, args: dict[str, Any]) -> Any:
        """What SageMaker's cache key is made of for this Type: its documented attributes of the request, on
        URIs as given (not content). The engine adds the pipeline and the step name."""
        raise NotImplementedError(f"{type(self).__name__} is not cacheable")

    def input_uris(self, args: dict[str, Any]) -> list[str]:
        """The locations a run reads: a hit whose data under them changed says so (SageMaker would not see it)."""
        return []

    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        raise NotImplementedError


def host_names(count: int) -> list[str]:
    """SageMaker's names for a job's instances: ``algo-1`` .. ``algo-<count>``."""
    return [f"algo-{k + 1}" for k in range(count)]


def on_every_instance(instances: list[Job], work: Callable[[int, Job], None]) -> None:
    """``work(k, instance)`` for each instance of a job, side by side as SageMaker runs them; the first failure
    stops the other instances and fails the job, naming the host it happened on."""
    if len(instances) == 1:
        work(0, instances[0])
        return
    failures: list[tuple[str, BaseException]] = []
    lock = threading.Lock()

    def one(k: int, host: str, instance: Job) -> None:
        try:
            work(k, instance)
        except BaseException as exc:  # noqa: BLE001 - reported below, on the caller's thread
            with lock:
                failures.append((host, exc))
                first = len(failures) == 1
            if first:
                for other in instances:
                    if other is not instance:
                        other.stop()

    threads = [
        threading.Thread(target=one, args=(k, host, instance), name=host, daemon=True)
        for k, (host, instance) in enumerate(zip(host_names(len(instances)), instances, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        host, exc = failures[0]
        if isinstance(exc, StepFailed):
            raise StepFailed(f"{exc.reason} (on {host})", exc.cause, exc.excerpt) from exc
        raise exc
