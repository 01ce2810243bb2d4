"""Execute a compiled definition locally: the DAG, parallelism, retries, and when to cache and record.

The engine reads the definition JSON only (what `make pipeline-upsert` would send), never the spec, and
names no step Type: everything Type-specific is asked of the Type's runner (`RUNNERS`). The run root
holds the object store (``s3/``), the step cache (``cache/``, `pipelines.local.cache`) and one
directory per execution (``executions/<id>/``, `pipelines.local.records`: the definition, parameters,
and per step its status, timings, resolved arguments, result and full log).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.definition import references
from pipelines.errors import UserError
from pipelines.local.cache import StepCache, cache_key
from pipelines.local.expressions import ExpressionError, Resolver
from pipelines.local.groups import stop_groups
from pipelines.local.records import this_engine, write_record
from pipelines.local.runners import RUNNERS, Job, StepFailed
from pipelines.local.store import ObjectStore
from pipelines.parameters import ParameterError, resolve
from pipelines.report.outcomes import outcome
from pipelines.suggest import did_you_mean


class DefinitionError(UserError):
    """The definition cannot run locally (unknown step type, bad parameter): nothing was started."""


@dataclass
class StepState:
    name: str
    type: str
    definition: dict[str, Any]
    depends: set[str]
    branch: tuple[str, str] | None = None  # (the step that nests it, which of its branches)
    status: str = "Pending"
    cache_hit: bool = False
    started: float | None = None
    ended: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    failure_reason: str | None = None
    result: dict[str, Any] | None = None
    detail: str = ""  # what the running step reports it is doing (e.g. "3/8 trials, best 0.91")
    cache_note: str | None = None  # a cache hit whose input data changed under the same URIs

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started

    def summary(self) -> dict[str, Any]:
        return {
            "type": self.type, "status": self.status, "cache_hit": self.cache_hit, "started": _iso(self.started),
            "ended": _iso(self.ended), "elapsed_seconds": round(self.elapsed, 3) if self.elapsed is not None else None,
            "attempts": self.attempts, "failure_reason": self.failure_reason, "depends_on": sorted(self.depends),
            "cache_note": self.cache_note,
        }  # fmt: skip


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


# --------------------------------------------------------------------------- the graph


def refuse(state: StepState) -> DefinitionError:
    return DefinitionError(
        f"step '{state.name}' has type {state.type}, which the local engine cannot run "
        f"(it runs {', '.join(RUNNERS)}); nothing was started"
        + ("" if state.branch is None else "; --until can run the steps before it")
    )


def flatten(steps: list[dict[str, Any]], branch: tuple[str, str] | None = None) -> Iterator[tuple[dict, tuple | None]]:
    """Every step, the ones nested in other steps' branches included, with the branch that holds it."""
    for step in steps:
        yield step, branch
        runner = RUNNERS.get(step.get("Type", ""))
        for key, nested in (runner.branches(step) if runner else {}).items():
            yield from flatten(nested, (step["Name"], key))


def build_graph(definition: dict[str, Any]) -> dict[str, StepState]:
    """Every step with what it waits for (a step whose Type has no runner is checked in `select`)."""
    states: dict[str, StepState] = {}
    for step, branch in flatten(definition.get("Steps", [])):
        name = step["Name"]
        if name in states:
            raise DefinitionError(f"step name '{name}' appears twice in the definition")
        runner = RUNNERS.get(step.get("Type", ""))
        depends = set(step.get("DependsOn", [])) | references(
            runner.reads(step) if runner else step.get("Arguments", {})
        )
        if branch:
            depends.add(branch[0])
        states[name] = StepState(name, step["Type"], step, depends - {name}, branch)
    for state in states.values():
        unknown = state.depends - set(states)
        if unknown:
            raise DefinitionError(f"step '{state.name}' depends on unknown step(s) {sorted(unknown)}")
    return states


def select(states: dict[str, StepState], until: list[str] | None) -> set[str]:
    """The steps that run: all, or (``--until``) the named ones and everything they wait for. Refuse, before
    anything runs, a step that would run and whose Type has no runner."""
    if until:
        for name in until:
            if name not in states:
                hint = did_you_mean(name, states)
                raise DefinitionError(
                    f"--until: no step '{name}'" + (f"; {hint}" if hint else "") + f" (steps: {', '.join(states)})"
                )
        selected: set[str] = set()
        todo = list(until)
        while todo:
            name = todo.pop()
            if name not in selected:
                selected.add(name)
                todo += states[name].depends
    else:
        selected = set(states)
    for name in states:  # in definition order, so the first offender is named
        if name in selected and states[name].type not in RUNNERS:
            raise refuse(states[name])
    return selected


# --------------------------------------------------------------------------- the engine

STOP_GRACE = 10.0  # seconds a stopped job has between SIGTERM and SIGKILL


class Interrupts:
    """While an execution runs, SIGINT (Ctrl-C) and SIGTERM set a flag that the engine's loop reads, instead
    of raising KeyboardInterrupt wherever the main thread happens to be.

    Python raises KeyboardInterrupt between any two bytecodes of the main thread, library code included.
    Raised inside ``concurrent.futures.wait`` after it has acquired a future's lock and before its ``with``
    block begins, it leaves that lock held for good: the worker thread finishing the future then blocks on
    it forever, and so does every join of that thread (``ThreadPoolExecutor.shutdown``, the interpreter's
    exit). That was the Ctrl-C that hung (found by interrupting such a wait in a loop: once in about 1,400
    interrupts). Here the signal only sets `fired`; the loop raises KeyboardInterrupt itself, at a point of
    its own, after which every job is stopped. Only the main thread can handle signals: elsewhere (an
    execution run from a thread) nothing is installed.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.fired: str | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: object) -> None:
        self.fired = self.fired or signal.Signals(signum).name

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@dataclass
class LocalOptions:
    nproc: int | None = None  # torch_distributed processes (default: the instance type's GPUs, capped by cores)
    max_parallel: int = max(1, os.cpu_count() or 1)
    use_cache: bool = True
    sleep: Callable[[float], None] | None = None  # the wait between attempts (None: one a stop interrupts)
    until: list[str] | None = None  # run only these steps and what they wait for (selective execution)


class Execution:
    """One local run of a definition. `run` returns the final status; the record is on disk throughout."""

    def __init__(  # noqa: PLR0913 - where, what, its values, its store, how, who watches, what it retries
        self,
        root: Path,
        definition: dict[str, Any],
        overrides: dict[str, Any] | None = None,
        store: ObjectStore | None = None,
        options: LocalOptions | None = None,
        on_change: Callable[[Execution, StepState], None] | None = None,
        pipeline_name: str | None = None,
        retry_of: dict[str, Any] | None = None,
    ):
        """``retry_of``: the record of a Failed or Stopped execution to run again in place, as SageMaker's
        RetryPipelineExecution does (its definition and parameters; succeeded steps keep their results)."""
        self.root = Path(root).resolve()
        self.definition = definition
        self.options = options or LocalOptions()
        self.store = store or ObjectStore(self.root / "s3")
        self.states = build_graph(definition)
        if retry_of is not None:
            self.options.until = retry_of.get("until")
        self.selected = select(self.states, self.options.until)
        for name, state in self.states.items():
            if name not in self.selected:
                state.status, state.failure_reason = "NotRun", "not selected (--until)"
        try:
            self.parameters = resolve(definition, overrides or {}) if retry_of is None else retry_of["parameters"]
        except ParameterError as exc:
            raise DefinitionError(str(exc)) from None
        self.cache = StepCache(self.root, self.store)
        self.id = retry_of["id"] if retry_of else datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        self.pipeline = pipeline_name or definition.get("PipelineName", "pipeline")
        self.directory = self.root / "executions" / self.id
        self.status = "Executing"
        self.started = time.time()
        self.runs: list[dict[str, Any]] = []  # earlier runs of this execution (each retry adds one)
        if retry_of is not None:
            self._restore(retry_of)
        self.ended: float | None = None
        self.failure: dict[str, Any] | None = None
        self.on_change = on_change
        self.processes: set[subprocess.Popen[str]] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        pipeline_arn = f"arn:aws:sagemaker:local:000000000000:pipeline/{self.pipeline}"
        execution_vars = {
            "PipelineExecutionId": self.id,
            "PipelineName": self.pipeline,
            "PipelineExecutionArn": f"{pipeline_arn}/execution/{self.id}",
            "StartDateTime": _iso(self.started),
            "CurrentDateTime": _iso(self.started),
            "PipelineArn": pipeline_arn,
        }
        self.resolver = Resolver(self.parameters, execution_vars, self._result_of, self._read_s3_json)
        self.directory.mkdir(parents=True, exist_ok=retry_of is not None)
        (self.directory / "definition.json").write_text(json.dumps(definition, indent=2, sort_keys=True))
        (self.directory / "parameters.json").write_text(json.dumps(self.parameters, indent=2, sort_keys=True))
        self._save()

    def _restore(self, record: dict[str, Any]) -> None:
        """A retry: succeeded steps keep their results and timings; the others run again (a condition's
        untaken branch is worked out again), and every step keeps its earlier attempts."""
        if record["status"] not in ("Failed", "Stopped"):
            raise DefinitionError(
                f"execution {record['id']} is {record['status']}: only a Failed or Stopped execution can be retried"
            )
        self.started = datetime.fromisoformat(record["started"]).timestamp()
        self.runs = record.get("runs", []) + [
            {"started": record["started"], "ended": record["ended"], "status": record["status"],
             "failure": record.get("failure")}
        ]  # fmt: skip
        for name, summary in record["steps"].items():
            state = self.states.get(name)
            if state is None:
                continue
            state.attempts = list(summary.get("attempts", []))
            if summary["status"] == "Succeeded":
                result_path = self.step_dir(name) / "result.json"
                state.status, state.cache_hit = "Succeeded", summary.get("cache_hit", False)
                state.result = json.loads(result_path.read_text()) if result_path.exists() else {}
                state.started = datetime.fromisoformat(summary["started"]).timestamp() if summary["started"] else None
                state.ended = datetime.fromisoformat(summary["ended"]).timestamp() if summary["ended"] else None

    # ----------------------------------------------------------------- records

    def step_dir(self, name: str) -> Path:
        return self.directory / "steps" / name

    def _save(self) -> None:
        record = {
            "id": self.id, "pipeline": self.pipeline, "status": self.status, "started": _iso(self.started),
            "ended": _iso(self.ended), "parameters": self.parameters, "failure": self.failure,
            "until": self.options.until, "runs": self.runs, "engine": this_engine(),
            "processes": sorted(p.pid for p in self.processes),  # job process groups, killed if the engine dies
            "steps": {name: s.summary() for name, s in self.states.items()},
        }  # fmt: skip
        write_record(self.directory, record)

    def _set(self, state: StepState, status: str, **changes: Any) -> None:
        with self.lock:
            state.status = status
            for k, v in changes.items():
                setattr(state, k, v)
            self._save()
        if self.on_change:
            self.on_change(self, state)

    def _spawned(self) -> None:
        """A job process started or ended: the record names the live process groups, for `reap`."""
        with self.lock:
            self._save()

    def _progress(self, state: StepState, text: str) -> None:
        state.detail = text
        if self.on_change:
            self.on_change(self, state)

    def _result_of(self, name: str) -> dict[str, Any]:
        state = self.states.get(name)
        if state is None or state.result is None:
            raise ExpressionError(f"step '{name}' has no result (status {state.status if state else 'unknown'})")
        return state.result

    def _read_s3_json(self, uri: str) -> Any:
        return json.loads(self.store.path(uri).read_text())

    # ----------------------------------------------------------------- scheduling

    def _ready(self) -> list[StepState]:
        """Steps whose dependencies all succeeded; on the way, settle the ones that will never run: the
        branch a condition did not take (Skipped) and whatever waits on a failure (NotRun)."""
        changed = True
        while changed:
            changed = False
            for state in self.states.values():
                if state.status != "Pending":
                    continue
                deps = [self.states[d] for d in state.depends]
                outcome = None
                parent = self.states[state.branch[0]] if state.branch else None
                if state.branch and parent and parent.status == "Succeeded":
                    taken = RUNNERS[parent.type].branch_taken(parent.result or {})
                    outcome = "Skipped" if taken != state.branch[1] else None
                if outcome is None and any(d.status == "Skipped" for d in deps):
                    outcome = "Skipped"
                if outcome is None and any(d.status in ("Failed", "Stopped", "NotRun") for d in deps):
                    outcome = "NotRun"
                if outcome:
                    self._set(state, outcome)
                    changed = True
        return [
            s for s in self.states.values()
            if s.status == "Pending" and all(self.states[d].status == "Succeeded" for d in s.depends)
        ]  # fmt: skip

    def run(self) -> str:
        """Run every selected step, at most ``max_parallel`` at once; the final status. Ctrl-C (SIGINT) and
        SIGTERM stop the execution (see `Interrupts`): KeyboardInterrupt is raised from here once every job
        is stopped, its name the signal's."""
        done: queue.SimpleQueue[StepState] = queue.SimpleQueue()  # steps whose thread ended
        running: dict[str, threading.Thread] = {}
        with Interrupts() as interrupts:
            try:
                while True:
                    if interrupts.fired:
                        raise KeyboardInterrupt(interrupts.fired)
                    if not self.failure and not self.stopping.is_set():
                        for state in self._ready()[: self.options.max_parallel - len(running)]:
                            self._set(state, "Starting", started=time.time())
                            running[state.name] = self._start(state, done)
                    if not running:
                        break
                    with contextlib.suppress(queue.Empty):
                        ended = done.get(timeout=0.5)
                        running.pop(ended.name).join()
            except KeyboardInterrupt:
                self.stop()
                for thread in running.values():  # their jobs are gone: they end at once
                    thread.join(timeout=STOP_GRACE)
                self._settle()
                self._finish("Stopped")
                raise
        self._settle()
        self._finish("Failed" if self.failure else "Stopped" if self.stopping.is_set() else "Succeeded")
        return self.status

    def _start(self, state: StepState, done: queue.SimpleQueue[StepState]) -> threading.Thread:
        """The step on a thread of its own, which says on ``done`` when it ended. Daemon threads: nothing
        left running can keep the process from exiting once the execution is recorded."""

        def work() -> None:
            try:
                self._run_step(state)
            finally:
                done.put(state)

        thread = threading.Thread(target=work, name=f"step-{state.name}", daemon=True)
        thread.start()
        return thread

    def _settle(self) -> None:
        """After a failure or a stop nothing new starts: what is still pending never runs."""
        for state in self.states.values():
            if state.status == "Pending":
                self._set(state, "NotRun")

    def _finish(self, status: str) -> None:
        self.status, self.ended = status, time.time()
        if status == "Succeeded":  # its steps become cache entries only now (`StepCache.put`)
            self.cache.publish(self.directory)
        with self.lock:
            self._save()

    def stop(self, grace: float | None = None) -> None:
        """Stop every running job, bounded: each job's process group gets SIGTERM, and whatever of it still runs
        ``grace`` seconds later (a job that ignores SIGTERM, or one that started meanwhile) gets SIGKILL. Returns
        once no process of any job runs (`pipelines.local.groups.stop_groups`)."""
        self.stopping.set()
        deadline = time.time() + (STOP_GRACE if grace is None else grace)
        stop_groups(self._running(), deadline, self._running)

    def _running(self) -> list[subprocess.Popen[str]]:
        with self.lock:  # a job started after the first look was sent SIGTERM as it registered (`Job.run`)
            return list(self.processes)

    # ----------------------------------------------------------------- one step

    def _run_step(self, state: StepState) -> None:
        directory = self.step_dir(state.name)
        directory.mkdir(parents=True, exist_ok=True)
        log_path = directory / "log.txt"
        log_lock = threading.Lock()
        log_file = open(log_path, "a", buffering=1)  # noqa: SIM115 - closed in finally

        def log(line: str) -> None:
            with log_lock:
                log_file.write(line + "\n")

        try:
            self._execute(state, directory, log)
        except Exception as exc:  # StepFailed, or an unreadable reference: fail this step, keep the record
            reason = exc.reason if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"
            log(f"step failed: {reason}")
            stopped = self.stopping.is_set()
            with self.lock:
                if self.failure is None and not stopped:
                    excerpt = exc.excerpt if isinstance(exc, StepFailed) else []
                    self.failure = {"step": state.name, "reason": reason, "log": str(log_path), "excerpt": excerpt}
            self._set(state, "Stopped" if stopped else "Failed", ended=time.time(), failure_reason=reason)
        finally:
            log_file.close()

    def _execute(self, state: StepState, directory: Path, log: Callable[[str], None]) -> None:
        step = state.definition
        runner = RUNNERS[state.type]
        first_job = self._job_name(state, len(state.attempts) + 1)
        resolver = self.resolver.for_job(first_job)
        args: dict[str, Any] = resolver(step.get("Arguments", {})) if runner.resolve_arguments else {}
        (directory / "arguments.json").write_text(json.dumps(args, indent=2, sort_keys=True, default=str))
        cache = step.get("CacheConfig", {})
        key = None
        if self.options.use_cache and cache.get("Enabled") and runner.cacheable:
            key = cache_key(self.pipeline, state.name, runner, state.type, args)
            hit = self.cache.lookup(key, cache.get("ExpireAfter"))
            if hit is not None:
                log(f"cache hit: reusing the results of execution {hit['execution']} (key {key[:12]})")
                changed = self.cache.changed_inputs(hit)
                if changed:
                    state.cache_note = (
                        f"the data under {', '.join(changed)} changed since execution {hit['execution']}; its "
                        "result is reused anyway, as SageMaker would (its cache keys on URIs, not content)"
                    )
                    log(f"note: {state.cache_note}")
                self._complete(state, directory, hit["result"], cache_hit=True)
                return
        policies = step.get("RetryPolicies", [])
        attempt = 0  # this run's attempts, which retry policies count
        first_started = time.time()
        while True:
            attempt += 1
            number = len(state.attempts) + 1  # every attempt of the step, an earlier run's included
            job = Job(
                state.name,
                self._job_name(state, number),
                directory,
                self.store,
                resolver,
                log,
                self.processes,
                self.lock,
                self.options.nproc,
                stopping=self.stopping,
                root=self.root,
                execution_arn=self.resolver.execution["PipelineExecutionArn"],
                progress=lambda text, state=state: self._progress(state, text),  # type: ignore[misc]
                on_spawn=self._spawned,
            )
            self._set(state, "Executing")
            job.fresh_sandbox()
            started = time.time()
            try:
                result = runner.run(step, args, job)
            except StepFailed as exc:
                state.attempts.append(
                    {
                        "attempt": number,
                        "started": _iso(started),
                        "ended": _iso(time.time()),
                        "status": "Failed",
                        "reason": exc.reason,
                        "cause": exc.cause,
                    }
                )
                if exc.cause in runner.never_retried:
                    log(f"{exc.cause} is never retried for a {state.type} step (its jobs retry internally)")
                    raise
                delay = self._retry_delay(policies, exc.cause, attempt, time.time() - first_started)
                if delay is None or self.stopping.is_set():
                    raise
                log(f"attempt {attempt} failed ({exc.cause}); retrying in {delay:g} s")
                if self.options.sleep is not None:
                    self.options.sleep(delay)
                elif self.stopping.wait(delay):  # a stop during the wait ends it: no new attempt
                    raise
                continue
            state.attempts.append(
                {"attempt": number, "started": _iso(started), "ended": _iso(time.time()), "status": "Succeeded"}
            )
            break
        if key is not None:
            # what the result published (its Type's Outcome says): a later hit needs it still there
            self.cache.put(key, result, outcome(state.type).published(result), self.directory,
                           runner.input_uris(args))  # fmt: skip
        self._complete(state, directory, result, cache_hit=False)

    def _job_name(self, state: StepState, number: int) -> str:
        """The job a step's attempt runs (a retried attempt is a new job, as on SageMaker)."""
        return f"pipelines-{self.id}-{state.name}"[:63] + (f"-{number}" if number > 1 else "")

    def _complete(self, state: StepState, directory: Path, result: dict[str, Any], cache_hit: bool) -> None:
        (directory / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
        self._set(state, "Succeeded", result=result, cache_hit=cache_hit, ended=time.time())

    @staticmethod
    def _retry_delay(policies: list[dict[str, Any]], cause: str, attempt: int, elapsed: float) -> float | None:
        """Seconds to wait before the next attempt under the first matching policy, or None: give up.

        As SageMaker documents them: ``MaxAttempts`` counts retries (the first attempt is not one, so
        MaxAttempts 2 means up to three attempts); ``ExpireAfterMin`` ends retrying that many minutes after
        the step's first attempt started; the wait is ``IntervalSeconds * BackoffRate ** (retry - 1)``."""
        for policy in policies:
            if cause in policy.get("ExceptionType", []):
                retries_done = attempt - 1
                if "MaxAttempts" in policy and retries_done >= int(policy["MaxAttempts"]):
                    return None
                if "ExpireAfterMin" in policy and elapsed >= float(policy["ExpireAfterMin"]) * 60:
                    return None
                return float(policy.get("IntervalSeconds", 1)) * float(policy.get("BackoffRate", 2.0)) ** retries_done
        return None
