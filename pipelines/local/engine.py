"""Execute a compiled definition locally: the DAG, parallelism, caching, retries and the execution record.

The engine reads the definition JSON only (what `make pipeline-upsert` would send), never the spec. The
run root holds the object store (``s3/``), the step cache (``cache/``) and one directory per execution
(``executions/<id>/``: the definition, parameters, and per step its status, timings, resolved
arguments, result and full log), which `python -m pipelines local list|describe|logs` read later.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines.local.expressions import ExpressionError, Resolver
from pipelines.local.runners import RUNNERS, Job, StepFailed
from pipelines.local.store import ObjectStore

CACHEABLE = ("Processing", "Training")


class DefinitionError(Exception):
    """The definition cannot run locally (unknown step type, bad parameter): nothing was started."""


@dataclass
class StepState:
    name: str
    type: str
    definition: dict[str, Any]
    depends: set[str]
    branch: tuple[str, str] | None = None  # (condition step, "IfSteps" | "ElseSteps")
    status: str = "Pending"
    cache_hit: bool = False
    started: float | None = None
    ended: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    failure_reason: str | None = None
    result: dict[str, Any] | None = None

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
        }  # fmt: skip


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


# --------------------------------------------------------------------------- the graph


def flatten(steps: list[dict[str, Any]], branch: tuple[str, str] | None = None) -> Iterator[tuple[dict, tuple | None]]:
    """Every step, the ones inside conditions' branches included, with the branch that holds it."""
    for step in steps:
        yield step, branch
        if step["Type"] == "Condition":
            for key in ("IfSteps", "ElseSteps"):
                yield from flatten(step["Arguments"].get(key, []), (step["Name"], key))


def references(value: Any) -> set[str]:
    """Names of the steps a value reads from (``Steps.<name>...``)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Get" and isinstance(v, str) and v.startswith("Steps."):
                found.add(v.split(".")[1])
            elif k not in ("IfSteps", "ElseSteps"):
                found |= references(v)
    elif isinstance(value, list):
        for v in value:
            found |= references(v)
    return found


def build_graph(definition: dict[str, Any]) -> dict[str, StepState]:
    states: dict[str, StepState] = {}
    for step, branch in flatten(definition.get("Steps", [])):
        name = step["Name"]
        if name in states:
            raise DefinitionError(f"step name '{name}' appears twice in the definition")
        depends = set(step.get("DependsOn", [])) | references(step.get("Arguments", {}))
        if step["Type"] == "Condition":  # its branches' steps run after it, not before
            depends = set(step.get("DependsOn", [])) | references(step["Arguments"].get("Conditions", []))
        if branch:
            depends.add(branch[0])
        states[name] = StepState(name, step["Type"], step, depends - {name}, branch)
    for state in states.values():
        unknown = state.depends - set(states)
        if unknown:
            raise DefinitionError(f"step '{state.name}' depends on unknown step(s) {sorted(unknown)}")
    return states


def check_runnable(states: dict[str, StepState]) -> None:
    """Refuse, before anything runs, a definition holding a step type without a local runner."""
    for state in states.values():
        if state.type not in RUNNERS:
            raise DefinitionError(
                f"step '{state.name}' has type {state.type}, which the local engine cannot run "
                f"(it runs {', '.join(RUNNERS)}); nothing was started"
            )


def coerce_parameters(definition: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    unknown = set(overrides) - set(declared)
    if unknown:
        raise DefinitionError(f"unknown parameter(s) {sorted(unknown)}; declared: {', '.join(declared)}")
    values = {name: p.get("DefaultValue") for name, p in declared.items()}
    values |= overrides
    missing = [n for n, v in values.items() if v is None]
    if missing:
        raise DefinitionError(f"parameter(s) {missing} have no default and no value")
    return values


# --------------------------------------------------------------------------- caching


def parse_duration(text: str) -> timedelta:
    m = re.fullmatch(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", text)
    if not m:
        raise DefinitionError(f"bad ExpireAfter duration {text!r}")
    y, mo, w, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return timedelta(days=365 * y + 30 * mo + 7 * w + d, hours=h, minutes=mi, seconds=s)


def cache_key(step_type: str, step: dict[str, Any], args: dict[str, Any], store: ObjectStore) -> str:
    """The step's resolved arguments, with every input location replaced by the digest of its content
    and the locations it writes to left out: the same work on the same data gives the same key."""
    material = copy.deepcopy(args)
    if step_type == "Processing":
        for item in material.get("ProcessingInputs", []):
            item["S3Input"]["S3Uri"] = "sha256:" + store.digest(item["S3Input"]["S3Uri"])
        for item in material.get("ProcessingOutputConfig", {}).get("Outputs", []):
            item["S3Output"].pop("S3Uri", None)
    elif step_type == "Training":
        for channel in material.get("InputDataConfig", []):
            source = channel["DataSource"]["S3DataSource"]
            source["S3Uri"] = "sha256:" + store.digest(source["S3Uri"])
        submit = material.get("HyperParameters", {}).get("sagemaker_submit_directory")
        if submit:
            material["HyperParameters"]["sagemaker_submit_directory"] = "sha256:" + store.digest(json.loads(submit))
        material.pop("CheckpointConfig", None)
    blob = json.dumps(
        {"Type": step_type, "Arguments": material, "PropertyFiles": step.get("PropertyFiles", [])},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def outputs_of(result: dict[str, Any]) -> list[str]:
    uris = [o["S3Output"]["S3Uri"] for o in result.get("ProcessingOutputConfig", {}).get("Outputs", [])]
    if "ModelArtifacts" in result:
        uris.append(result["ModelArtifacts"]["S3ModelArtifacts"])
    return uris


# --------------------------------------------------------------------------- the engine


@dataclass
class LocalOptions:
    nproc: int | None = None  # torch_distributed processes (default: the instance type's GPUs, capped by cores)
    max_parallel: int = max(1, os.cpu_count() or 1)
    use_cache: bool = True
    sleep: Callable[[float], None] = time.sleep


class Execution:
    """One local run of a definition. `run` returns the final status; the record is on disk throughout."""

    def __init__(
        self,
        root: Path,
        definition: dict[str, Any],
        overrides: dict[str, Any] | None = None,
        store: ObjectStore | None = None,
        options: LocalOptions | None = None,
        on_change: Callable[[Execution, StepState], None] | None = None,
        pipeline_name: str | None = None,
    ):
        self.root = Path(root).resolve()
        self.definition = definition
        self.options = options or LocalOptions()
        self.store = store or ObjectStore(self.root / "s3")
        self.states = build_graph(definition)
        check_runnable(self.states)
        self.parameters = coerce_parameters(definition, overrides or {})
        self.id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        self.pipeline = pipeline_name or definition.get("PipelineName", "pipeline")
        self.directory = self.root / "executions" / self.id
        self.status = "Executing"
        self.started = time.time()
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
        self.directory.mkdir(parents=True)
        (self.directory / "definition.json").write_text(json.dumps(definition, indent=2, sort_keys=True))
        (self.directory / "parameters.json").write_text(json.dumps(self.parameters, indent=2, sort_keys=True))
        self._save()

    # ----------------------------------------------------------------- records

    def step_dir(self, name: str) -> Path:
        return self.directory / "steps" / name

    def _save(self) -> None:
        record = {
            "id": self.id, "pipeline": self.pipeline, "status": self.status, "started": _iso(self.started),
            "ended": _iso(self.ended), "parameters": self.parameters, "failure": self.failure,
            "steps": {name: s.summary() for name, s in self.states.items()},
        }  # fmt: skip
        tmp = self.directory / "execution.json.tmp"
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, self.directory / "execution.json")

    def _set(self, state: StepState, status: str, **changes: Any) -> None:
        with self.lock:
            state.status = status
            for k, v in changes.items():
                setattr(state, k, v)
            self._save()
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
                if state.branch and self.states[state.branch[0]].status == "Succeeded":
                    result = self.states[state.branch[0]].result or {}
                    taken = "IfSteps" if result.get("Outcome") == "True" else "ElseSteps"
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
        futures: dict[Future[None], StepState] = {}
        pool = ThreadPoolExecutor(max_workers=self.options.max_parallel, thread_name_prefix="step")
        try:
            while True:
                if not self.failure and not self.stopping.is_set():
                    for state in self._ready():
                        self._set(state, "Starting", started=time.time())
                        futures[pool.submit(self._run_step, state)] = state
                if not futures:
                    break
                done, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    futures.pop(future)
                    future.result()
        except KeyboardInterrupt:
            self.stop()
            wait(list(futures), timeout=30)
            self._settle()
            self._finish("Stopped")
            raise
        finally:
            pool.shutdown(wait=True)
        self._settle()
        self._finish("Failed" if self.failure else "Succeeded")
        return self.status

    def _settle(self) -> None:
        """After a failure or a stop nothing new starts: what is still pending never runs."""
        for state in self.states.values():
            if state.status == "Pending":
                self._set(state, "NotRun")

    def _finish(self, status: str) -> None:
        self.status, self.ended = status, time.time()
        with self.lock:
            self._save()

    def stop(self) -> None:
        """Ctrl-C: stop every running job's process group, then mark the execution Stopped."""
        self.stopping.set()
        with self.lock:
            procs = list(self.processes)
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.time() + 10
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)

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
                    self.failure = {"step": state.name, "reason": reason, "log": str(log_path)}
            self._set(state, "Stopped" if stopped else "Failed", ended=time.time(), failure_reason=reason)
        finally:
            log_file.close()

    def _execute(self, state: StepState, directory: Path, log: Callable[[str], None]) -> None:
        step = state.definition
        args: dict[str, Any] = {} if state.type == "Condition" else self.resolver(step.get("Arguments", {}))
        (directory / "arguments.json").write_text(json.dumps(args, indent=2, sort_keys=True, default=str))
        cache = step.get("CacheConfig", {})
        key = None
        if self.options.use_cache and cache.get("Enabled") and state.type in CACHEABLE:
            key = cache_key(state.type, step, args, self.store)
            hit = self._cache_lookup(key, cache.get("ExpireAfter"))
            if hit is not None:
                log(f"cache hit: reusing the results of execution {hit['execution']} (key {key[:12]})")
                self._complete(state, directory, hit["result"], cache_hit=True)
                return
        policies = step.get("RetryPolicies", [])
        attempt = 0
        while True:
            attempt += 1
            job = Job(
                state.name,
                f"pipelines-{self.id}-{state.name}"[:63] + (f"-{attempt}" if attempt > 1 else ""),
                directory,
                self.store,
                self.resolver,
                log,
                self.processes,
                self.lock,
                self.options.nproc,
            )
            self._set(state, "Executing")
            job.fresh_sandbox()
            started = time.time()
            try:
                result = RUNNERS[state.type](step, args, job)
            except StepFailed as exc:
                state.attempts.append(
                    {
                        "attempt": attempt,
                        "started": _iso(started),
                        "ended": _iso(time.time()),
                        "status": "Failed",
                        "reason": exc.reason,
                        "cause": exc.cause,
                    }
                )
                delay = self._retry_delay(policies, exc.cause, attempt)
                if delay is None or self.stopping.is_set():
                    raise
                log(f"attempt {attempt} failed ({exc.cause}); retrying in {delay:g} s")
                self.options.sleep(delay)
                continue
            state.attempts.append(
                {"attempt": attempt, "started": _iso(started), "ended": _iso(time.time()), "status": "Succeeded"}
            )
            break
        if key is not None:
            self._cache_store(key, result)
        self._complete(state, directory, result, cache_hit=False)

    def _complete(self, state: StepState, directory: Path, result: dict[str, Any], cache_hit: bool) -> None:
        (directory / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
        self._set(state, "Succeeded", result=result, cache_hit=cache_hit, ended=time.time())

    @staticmethod
    def _retry_delay(policies: list[dict[str, Any]], cause: str, attempt: int) -> float | None:
        """Seconds to wait before the next attempt under the first matching policy, or None: give up."""
        for policy in policies:
            if cause in policy.get("ExceptionType", []):
                if attempt >= int(policy.get("MaxAttempts", 1)):
                    return None
                return float(policy.get("IntervalSeconds", 1)) * float(policy.get("BackoffRate", 2.0)) ** (attempt - 1)
        return None

    def _cache_lookup(self, key: str, expire_after: str | None) -> dict[str, Any] | None:
        path = self.root / "cache" / f"{key}.json"
        if not path.exists():
            return None
        entry = json.loads(path.read_text())
        created = datetime.fromisoformat(entry["created"])
        if expire_after and datetime.now(UTC) - created > parse_duration(expire_after):
            return None
        if not all(self.store.exists(uri) for uri in entry["outputs"]):
            return None  # the earlier outputs are gone: run again
        return entry

    def _cache_store(self, key: str, result: dict[str, Any]) -> None:
        path = self.root / "cache" / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        # the outputs that hold something: a hit needs them still there (an empty output uploads nothing)
        written = [uri for uri in outputs_of(result) if self.store.exists(uri)]
        entry = {"created": datetime.now(UTC).isoformat(), "execution": self.id, "result": result, "outputs": written}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry, default=str))
        os.replace(tmp, path)


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


# --------------------------------------------------------------------------- reading records later


def list_executions(root: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((Path(root) / "executions").glob("*/execution.json"), reverse=True):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def load_execution(root: Path, execution_id: str) -> dict[str, Any]:
    path = Path(root) / "executions" / execution_id / "execution.json"
    if not path.exists():
        known = [e["id"] for e in list_executions(root)][:5]
        raise DefinitionError(
            f"no execution '{execution_id}' under {root}" + (f"; recent: {', '.join(known)}" if known else "")
        )
    return json.loads(path.read_text())
