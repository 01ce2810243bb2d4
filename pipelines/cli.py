"""``python -m pipelines <command>``: every Makefile target's command.

Exit status: 0 success, 1 a failed run or an AWS error, 2 bad input (spec, parameters, settings).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.errors import RunFailure, UserError

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path("build")


class UsageError(UserError):
    """Bad input the user can fix: printed as one message, exit status 2."""


def _load(config: str):  # type: ignore[no-untyped-def]
    from pipelines.loader import load_spec

    return load_spec(config)


def _compile(config: str):  # type: ignore[no-untyped-def]
    """The spec compiled, and every request of its definition checked against the SageMaker API's model."""
    from pipelines import compile_cache
    from pipelines.settings import Settings

    spec = _load(config)
    settings = Settings()
    cached = compile_cache.load(BUILD / ".compile-cache", config, spec, settings)
    if cached is not None:  # nothing it is made of changed: no SDK import, no compile
        return cached
    from pipelines.compiler import compile_pipeline
    from pipelines.requests import check_instance_types, check_requests

    check_instance_types(config, spec)
    compiled = compile_pipeline(spec, settings)
    check_requests(config, compiled.spec, json.loads(compiled.definition))
    compile_cache.save(BUILD / ".compile-cache", config, compiled)
    return compiled


def cmd_validate(args: argparse.Namespace) -> int:
    from pipelines.loader import SpecError

    if args.json:
        try:
            spec = _compile(args.config).spec
        except SpecError as exc:
            problems = [dataclasses.asdict(issue) for issue in exc.issues]
            print(json.dumps({"config": args.config, "ok": False, "problems": problems}, indent=2))
            return 2
        print(json.dumps({
            "config": args.config, "ok": True, "pipeline": spec.name,
            "steps": [{"name": s.name, "kind": s.kind} for s in spec.steps],
            "parameters": {n: {"type": p.type, "default": p.default} for n, p in spec.parameters.items()},
        }, indent=2, default=str))  # fmt: skip
        return 0
    spec = _compile(args.config).spec  # the spec, and every request it compiles to against the API's model
    kinds = ", ".join(f"{s.name} ({s.kind})" for s in spec.steps)
    print(f"{args.config}: ok: pipeline '{spec.name}', {len(spec.steps)} steps: {kinds}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from pipelines.report import graph

    compiled = _compile(args.config)
    out = Path(args.out) if args.out else BUILD / f"{compiled.name}-graph.svg"
    written = graph.write(json.loads(compiled.definition), out, title=compiled.name)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def cmd_definition(args: argparse.Namespace) -> int:
    compiled = _compile(args.config)
    out = Path(args.out) if args.out else BUILD / f"{compiled.name}.json"
    compiled.write(out)
    print(f"wrote {out} ({len(compiled.definition):,} bytes, code {compiled.code.digest})")
    return 0


def cmd_upsert(args: argparse.Namespace) -> int:
    from pipelines.remote import Remote, require_settings
    from pipelines.settings import Settings

    require_settings(Settings())
    compiled = _compile(args.config)
    compiled.write(BUILD / f"{compiled.name}.json")
    remote = Remote(compiled.settings)
    arn = remote.upsert(
        compiled.name, compiled.definition, compiled.uploads(), compiled.spec.description, compiled.spec.tags
    )
    print(arn)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipelines.remote import Remote, require_settings
    from pipelines.settings import Settings

    compiled = _compile(args.config)
    overrides = _overrides(compiled, json.loads(compiled.definition), args.params)
    settings = Settings()
    require_settings(settings)
    remote = Remote(settings)
    name = compiled.name
    arn = remote.start(name, overrides)
    if args.no_wait:
        return 0
    status = remote.wait(arn)
    if status != "Succeeded":
        for line in remote.failure_report(arn):
            print(line, file=sys.stderr)
    _close_remote(remote, arn, BUILD / name / arn.rsplit("/", 1)[-1])
    return 0 if status == "Succeeded" else 1


def _close_remote(remote, arn: str, into: Path, write: bool = True) -> None:  # type: ignore[no-untyped-def]
    """The closing summary of a SageMaker execution and its report, from what it describes and downloads."""
    from pipelines.report import summary

    view = remote.view(arn, into)
    if write:
        _write_run_report(view, into / "report.html")
    for line in summary.lines(view):
        print(line, flush=True)


def _write_run_report(view, path: Path, figures: Path | None = None) -> None:  # type: ignore[no-untyped-def]
    """The report at the end of a run: the execution's outcome stands whatever happens to its report."""
    try:
        from pipelines.report.html import write_report

        write_report(view, path, figures)
    except Exception as exc:
        print(f"warning: the report could not be written: {type(exc).__name__}: {exc}", file=sys.stderr)


def _remote():  # type: ignore[no-untyped-def]
    from pipelines.remote import Remote
    from pipelines.settings import Settings

    settings = Settings()
    settings.require_region()
    return Remote(settings)


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from pipelines.views import console

    name = (args.pipeline or _load(args.config).name) if (args.pipeline or args.config) else None
    if not name:
        raise UsageError("say which pipeline: python -m pipelines list CONFIG (or --pipeline NAME)")
    executions = _remote().executions(name)
    if args.json:
        print(json.dumps(executions, indent=2, default=str))
        return 0
    table = Table("execution ARN", "status", "started", "display name")
    for e in executions:
        table.add_row(e["PipelineExecutionArn"], e.get("PipelineExecutionStatus", ""), str(e.get("StartTime", "")),
                      e.get("PipelineExecutionDisplayName", ""))  # fmt: skip
    console().print(table)
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from pipelines.report import summary

    remote = _remote()
    view = remote.view(args.execution, BUILD / view_dir(args.execution))
    if args.json:
        steps = {n: {"type": s.type, "status": s.status, "cache_hit": s.cache_hit, "failure_reason": s.failure_reason,
                     "started": s.started, "ended": s.ended} for n, s in view.steps.items()}  # fmt: skip
        print(json.dumps({"arn": args.execution, "pipeline": view.pipeline, "status": view.status,
                          "parameters": view.parameters, "steps": steps, "failure": view.failure,
                          "summary": summary.lines(view)}, indent=2, default=str))  # fmt: skip
    else:
        from rich.table import Table

        from pipelines.views import console

        table = Table("step", "type", "status", "cache", "reason")
        for n, s in view.steps.items():
            table.add_row(n, s.type, s.status, "hit" if s.cache_hit else "", s.failure_reason or "")
        console().print(table)
        if view.status != "Succeeded":
            for line in remote.failure_report(args.execution):
                print(line, file=sys.stderr)
        for line in summary.lines(view):
            print(line)
    return 0 if view.status in ("Succeeded", "Executing") else 1


def view_dir(arn: str) -> str:
    """build/<pipeline>/<execution id>: where a SageMaker execution's results are downloaded."""
    pipeline = arn.split(":pipeline/", 1)[-1].split("/", 1)[0]
    return f"{pipeline}/{arn.rsplit('/', 1)[-1]}"


def cmd_logs(args: argparse.Namespace) -> int:
    for line in _remote().step_logs(args.execution, args.step, args.tail):
        print(line)
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    """RetryPipelineExecution for a Failed or Stopped SageMaker execution, then follow it like `run`."""
    remote = _remote()
    remote.retry(args.execution)
    if args.no_wait:
        return 0
    status = remote.wait(args.execution)
    if status != "Succeeded":
        for line in remote.failure_report(args.execution):
            print(line, file=sys.stderr)
    _close_remote(remote, args.execution, BUILD / view_dir(args.execution))
    return 0 if status == "Succeeded" else 1


def cmd_stop(args: argparse.Namespace) -> int:
    _remote().stop(args.execution)
    return 0


def _overrides(compiled, definition: dict, pairs: list[str]) -> dict:  # type: ignore[no-untyped-def]
    """``Name=Value`` overrides, typed against the definition the pipeline was compiled to (as for a local and
    a SageMaker run alike), then given the checks defaults get: the parameter's min, max and choices, and the
    SageMaker API's model for every request they reach. Exit 2 before anything runs."""
    from pipelines.parameters import ParameterError, parse_overrides
    from pipelines.requests import check_overrides

    overrides = parse_overrides(definition, pairs)
    problems = compiled.spec.refuse_overrides(overrides)
    if problems:
        raise ParameterError("; ".join(problems))
    check_overrides(definition, overrides)
    return overrides


def _docker(cmd: list[str]) -> int:
    print("+ " + " ".join(cmd), flush=True)
    try:
        return subprocess.call(cmd)
    except FileNotFoundError:
        raise UsageError("docker is not installed; image-build and image-push need a Docker engine") from None


def _images() -> list[tuple[str, str, str]]:
    """(kind, base image, target URI) for the training and inference images."""
    from pipelines.compiler.context import base_image_uri, custom_image_uri
    from pipelines.settings import Settings

    settings = Settings()
    return [
        (kind, base_image_uri(settings, kind), custom_image_uri(settings, kind)) for kind in ("training", "inference")
    ]


def cmd_image_build(args: argparse.Namespace) -> int:
    for kind, base, target in _images():
        rc = _docker(
            [
                "docker",
                "build",
                "--build-arg",
                f"BASE_IMAGE={base}",
                "-t",
                target,
                "-f",
                str(ROOT / "containers" / kind / "Dockerfile"),
                str(ROOT / "containers" / kind),
            ]
        )
        if rc:
            return rc
    return 0


def cmd_image_push(args: argparse.Namespace) -> int:
    for _, _, target in _images():
        rc = _docker(["docker", "push", target])
        if rc:
            return rc
    return 0


def _root(args: argparse.Namespace) -> Path:
    return Path(args.root or os.environ.get("SMP_LOCAL_ROOT", "runs"))


def _mounts(pairs: list[str]) -> dict[str, Path]:
    mounts = {}
    for pair in pairs:
        bucket, sep, directory = pair.partition("=")
        if not sep or not bucket:
            raise UsageError(f"--mount {pair!r} is not BUCKET=DIRECTORY")
        mounts[bucket] = Path(directory)
    return mounts


def cmd_local_run(args: argparse.Namespace) -> int:
    from pipelines.local.display import Display
    from pipelines.local.engine import Execution, LocalOptions
    from pipelines.local.store import ObjectStore

    compiled = _compile(args.config)
    compiled.write(BUILD / f"{compiled.name}.json")
    # from here on the engine sees only the definition JSON, as SageMaker would
    definition = json.loads(compiled.definition)
    overrides = _overrides(compiled, definition, args.params)
    root = _root(args)
    store = ObjectStore(root / "s3", _mounts(args.mount))
    for uri, data in compiled.uploads().items():
        if not store.path(uri).exists():
            store.put_bytes(uri, data)
    until = [name for item in args.until for name in item.split(",") if name] or None
    options = LocalOptions(nproc=args.nproc, max_parallel=args.parallel, use_cache=not args.no_cache, until=until)
    display = Display()
    execution = Execution(root, definition, overrides, store, options, display.on_change, compiled.name)
    return _follow_local(args, execution, display, store)


def cmd_local_retry(args: argparse.Namespace) -> int:
    """Run a Failed or Stopped execution again in place, as RetryPipelineExecution does."""
    from pipelines.local.display import Display
    from pipelines.local.engine import Execution, LocalOptions
    from pipelines.local.records import load_execution, resolve_id

    execution_id = resolve_id(_root(args), args.execution)
    record = load_execution(_root(args), execution_id)
    path = _root(args) / "executions" / execution_id / "definition.json"
    try:
        definition = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); the execution cannot be retried as it was") from None
    options = LocalOptions(nproc=args.nproc, max_parallel=args.parallel, use_cache=not args.no_cache)
    display = Display()
    store = _store(args)
    execution = Execution(_root(args), definition, None, store, options, display.on_change, record["pipeline"], record)
    return _follow_local(args, execution, display, store)


def _follow_local(args: argparse.Namespace, execution, display, store) -> int:  # type: ignore[no-untyped-def]
    """Run an execution under the live view; SIGTERM stops it as Ctrl-C does; then the summary and report."""
    import signal

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, terminate)
    display.attach(execution)
    print(f"execution {execution.id} of {execution.pipeline}: record in {execution.directory}", flush=True)
    try:
        with display:
            execution.run()
    except KeyboardInterrupt as exc:
        how = str(exc) or "Ctrl-C"
        print(f"\nexecution {execution.id} Stopped ({how}): running jobs were stopped; "
              f"python -m pipelines local retry {execution.id} runs it again", file=sys.stderr)  # fmt: skip
        return 143 if how == "SIGTERM" else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    status = execution.status
    _close_execution(args, execution.id, store)
    for state in execution.states.values():  # what to do next with what the run made
        result = state.result or {}
        local = f" --local{'' if args.root is None else f' --root {args.root}'}"
        if state.status == "Succeeded" and "ModelPackageArn" in result:
            print(f"    inspect it: python -m pipelines registry describe "
                  f"{result['ModelPackageGroupName']}:{result['ModelPackageVersion']}{local}")  # fmt: skip
        if state.status == "Succeeded" and "EndpointStatus" in result:
            name, root_flag = result["EndpointName"], local.replace(" --local", "")
            print(f"    call it: python -m pipelines invoke {name} IMAGE.png{local}  "
                  f"(stop it: python -m pipelines endpoints stop {name}{root_flag})")  # fmt: skip
    if status != "Succeeded":
        print(f"    retry it: python -m pipelines local retry {execution.id}"
              + ("" if args.root is None else f" --root {args.root}"), file=sys.stderr)  # fmt: skip
    return 0 if status == "Succeeded" else 1


def _close_execution(args: argparse.Namespace, execution_id: str, store, write: bool = True) -> None:  # type: ignore[no-untyped-def]
    """The closing summary (after the failure, its reason and log, on stderr) and the HTML report."""
    from pipelines.local.gc import FIGURES
    from pipelines.local.view import REPORT, load_view
    from pipelines.report import summary

    view = load_view(_root(args), execution_id, store)
    if write:
        _write_run_report(view, _root(args) / "executions" / view.id / REPORT, _root(args) / FIGURES)
    if view.status != "Succeeded":
        log = Path((view.failure or {}).get("log") or "")
        tail_lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
        for line in summary.failure_lines(view, tail_lines, args.tail):
            print(line, file=sys.stderr)
    for line in summary.lines(view):
        print(line, flush=True)


def cmd_local_list(args: argparse.Namespace) -> int:
    from pipelines.local.display import print_executions
    from pipelines.local.records import list_executions

    records = list_executions(_root(args))
    if args.json:
        keys = ("id", "pipeline", "status", "started", "ended", "failure")
        print(json.dumps([{k: r.get(k) for k in keys} for r in records], indent=2))
        return 0
    print_executions(records)
    return 0


def cmd_local_describe(args: argparse.Namespace) -> int:
    from pipelines.local.display import print_execution
    from pipelines.local.records import load_execution, resolve_id
    from pipelines.local.view import load_view
    from pipelines.report import summary

    execution_id = resolve_id(_root(args), args.execution)
    record = load_execution(_root(args), execution_id)
    if args.json:
        view = load_view(_root(args), execution_id, _store(args))
        record["summary"] = summary.lines(view)
        record["report"] = str(view.report) if view.report else None
        print(json.dumps(record, indent=2))
    else:
        print_execution(record, _root(args) / "executions" / execution_id)
        _close_execution(args, execution_id, _store(args), write=False)
    return 0 if record["status"] in ("Succeeded", "Executing") else 1


def cmd_local_gc(args: argparse.Namespace) -> int:
    from pipelines.local.gc import collect, plan

    if args.keep is None and args.older_than is None:
        raise UsageError("say what to keep: --keep N (the newest N executions) and/or --older-than DAYS")
    if (args.keep is not None and args.keep < 0) or (args.older_than is not None and args.older_than < 0):
        raise UsageError("--keep and --older-than take numbers >= 0")
    store = _store(args)
    garbage = plan(_root(args), store, args.keep, args.older_than)
    verb = "would free" if args.dry_run else "freed"
    if not args.dry_run:
        collect(_root(args), store, garbage)
    print(f"{verb} {garbage.bytes / 1e6:.1f} MB: {len(garbage.executions)} execution(s), "
          f"{len(garbage.outputs)} output(s); {len(garbage.kept_outputs)} output(s) kept because a cache entry, "
          "a registered model, an endpoint or a kept execution still reads them")  # fmt: skip
    for execution_id in garbage.executions:
        print(f"    {'would remove' if args.dry_run else 'removed'} execution {execution_id}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """The HTML report of a local execution (an id, or latest), or of a SageMaker one (its ARN)."""
    from pipelines.report.html import write_report

    if args.execution.startswith("arn:"):
        from pipelines.remote import Remote
        from pipelines.settings import Settings

        remote = Remote(Settings())
        into = BUILD / view_dir(args.execution)
        view = remote.view(args.execution, into)
        out = Path(args.out) if args.out else into / "report.html"
    else:
        from pipelines.local.records import resolve_id
        from pipelines.local.view import REPORT, load_view

        execution_id = resolve_id(_root(args), args.execution)
        view = load_view(_root(args), execution_id, _store(args))
        out = Path(args.out) if args.out else _root(args) / "executions" / execution_id / REPORT
    print(f"wrote {write_report(view, out)}")
    return 0


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pipelines.local.store import ObjectStore

    return ObjectStore(_root(args) / "s3", _mounts(getattr(args, "mount", None) or ["sm-pipelines-data=data"]))


def cmd_local_logs(args: argparse.Namespace) -> int:
    from pipelines.local.records import load_execution, resolve_id

    args.execution = resolve_id(_root(args), args.execution)
    record = load_execution(_root(args), args.execution)
    if args.step not in record["steps"]:
        from pipelines.suggest import did_you_mean

        hint = did_you_mean(args.step, record["steps"])
        raise UsageError(f"execution {args.execution} has no step '{args.step}'" + (f"; {hint}" if hint else ""))
    step_dir = _root(args) / "executions" / args.execution / "steps" / args.step
    log = step_dir / "log.txt"
    if args.trial:
        trials = sorted(p.name for p in (step_dir / "trials").glob("*") if p.is_dir())
        names = [
            t
            for t in trials
            if t == args.trial or (args.trial.isdigit() and t.split("-")[-2] == f"{int(args.trial):03d}")
        ]
        if not names:
            from pipelines.suggest import did_you_mean

            hint = did_you_mean(args.trial, trials)
            known = f"; trials: {', '.join(trials)}" if trials else f"; step '{args.step}' ran no trials"
            raise UsageError(f"no trial '{args.trial}'" + (f" ({hint})" if hint else "") + known)
        log = step_dir / "trials" / names[0] / "log.txt"
    if args.follow:
        return _follow(args, log)
    if not log.exists():
        print(f"step '{args.step}' wrote no log (status {record['steps'][args.step]['status']})")
        return 0
    lines = log.read_text().splitlines()
    for line in lines[-args.tail :] if args.tail else lines:
        print(line)
    return 0


FINISHED = ("Succeeded", "Failed", "Stopped", "Skipped", "NotRun")


def _follow(args: argparse.Namespace, log: Path, poll: float = 0.3) -> int:
    """Print the log as it grows until the step (and, for a trial, its log) is finished; Ctrl-C stops."""
    import time

    from pipelines.local.records import load_execution

    position = 0
    try:
        while True:
            record = load_execution(_root(args), args.execution)
            done = record["steps"][args.step]["status"] in FINISHED or record["status"] != "Executing"
            if log.exists():
                with open(log, "rb") as fh:
                    fh.seek(position)
                    chunk = fh.read()
                # only whole lines: the rest is printed once its newline is written
                whole = chunk if done else chunk[: chunk.rfind(b"\n") + 1]
                position += len(whole)
                sys.stdout.write(whole.decode(errors="replace"))
                sys.stdout.flush()
            if done:
                return 0
            time.sleep(poll)
    except KeyboardInterrupt:
        return 130


# --------------------------------------------------------------------------- registry, endpoints, invoke


def _registry(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The local registry (``--local``) or SageMaker's: the same calls, the same shapes."""
    if args.local:
        from pipelines.local.registry import LocalRegistry

        return LocalRegistry(_root(args))
    import boto3

    from pipelines.remote.registry import SageMakerRegistry
    from pipelines.settings import Settings

    return SageMakerRegistry(boto3.Session(region_name=Settings().require_region()))


def cmd_registry_list(args: argparse.Namespace) -> int:
    from pipelines.views import print_packages

    print_packages(_registry(args).list(args.group), args.json)
    return 0


def cmd_registry_describe(args: argparse.Namespace) -> int:
    from pipelines.local.registry import parse_ref
    from pipelines.views import print_package

    print_package(_registry(args).describe(*parse_ref(args.package)), args.json)
    return 0


def cmd_registry_status(args: argparse.Namespace) -> int:
    from pipelines.local.registry import parse_ref

    group, version = parse_ref(args.package)
    if version is None:
        raise UsageError(f"say which version to {args.registry_command}: {group}:VERSION")
    status = "Approved" if args.registry_command == "approve" else "Rejected"
    package = _registry(args).set_status(group, version, status, args.reason)
    print(f"{group} version {version}: {package['ModelApprovalStatus']}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from pipelines.local.registry import parse_ref

    group, version = parse_ref(args.package)
    registry = _registry(args)
    package = registry.describe(group, version)
    if package["ModelApprovalStatus"] != "Approved":
        raise UsageError(
            f"{group} version {package['ModelPackageVersion']} is {package['ModelApprovalStatus']}, not Approved: "
            f"approve it first (python -m pipelines registry approve {group}:{package['ModelPackageVersion']}"
            + (" --local" if args.local else "")
            + ")"
        )
    if args.local:
        from pipelines.local.serving import deploy
        from pipelines.local.store import ObjectStore

        store = ObjectStore(_root(args) / "s3", _mounts(args.mount))
        archive = store.path(package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"])
        config = f"{group}-v{package['ModelPackageVersion']}"[:63]
        state = deploy(_root(args), args.endpoint, archive, config)
        print(f"endpoint {args.endpoint} serves {group} version {package['ModelPackageVersion']} "
              f"at http://127.0.0.1:{state['port']}")  # fmt: skip
        return 0
    from pipelines.remote import require_settings
    from pipelines.settings import Settings

    settings = Settings()
    require_settings(settings)
    how = registry.deploy(package, args.endpoint, settings.role, args.instance_type, args.instance_count)
    print(f"endpoint {args.endpoint} {how}: serving {group} version {package['ModelPackageVersion']}")
    return 0


def cmd_endpoints_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from pipelines.local.serving import list_endpoints
    from pipelines.views import console

    endpoints = list_endpoints(_root(args))
    if args.json:
        print(json.dumps(endpoints, indent=2))
        return 0
    table = Table("endpoint", "status", "url", "serving", "pid", "updated")
    for e in endpoints:
        table.add_row(e["name"], e["status"], e["url"], e["endpoint_config"], str(e["pid"]), e["updated"])
    console().print(table)
    return 0


def cmd_endpoints_logs(args: argparse.Namespace) -> int:
    from pipelines.local.serving import endpoints_dir, find

    find(_root(args), args.name)
    lines = (endpoints_dir(_root(args)) / args.name / "log.txt").read_text().splitlines()
    for line in lines[-args.tail :] if args.tail else lines:
        print(line)
    return 0


def cmd_endpoints_stop(args: argparse.Namespace) -> int:
    from pipelines.local.serving import stop, stop_all

    if args.name == "all":
        print(f"stopped: {', '.join(stop_all(_root(args))) or 'none was running'}")
        return 0
    print(f"endpoint {args.name} " + ("stopped" if stop(_root(args), args.name) else "was not running"))
    return 0


CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".npy": "application/x-npy",
                 ".json": "application/json"}  # fmt: skip


def cmd_invoke(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from pipelines.views import print_predictions

    failures = 0
    for file in args.files:
        path = Path(file)
        content_type = args.content_type or CONTENT_TYPES.get(path.suffix.lower())
        if content_type is None:
            raise UsageError(f"{file}: unknown file type; use .png, .jpg, .npy or .json, or say --content-type")
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"{file}: {exc.strerror}") from None
        if args.local:
            from pipelines.local.serving import HOST, find

            state = find(_root(args), args.endpoint)
            request = urllib.request.Request(
                f"http://{HOST}:{state['port']}/invocations", data=body, method="POST",
                headers={"Content-Type": content_type, "Accept": args.accept},
            )  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    answer = response.read()
            except urllib.error.HTTPError as exc:
                print(f"{file}: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
                failures += 1
                continue
            except urllib.error.URLError as exc:
                raise UsageError(f"endpoint {args.endpoint} does not answer ({exc.reason}); "
                                 "python -m pipelines endpoints list") from None  # fmt: skip
        else:
            import boto3

            from pipelines.settings import Settings

            runtime = boto3.Session(region_name=Settings().require_region()).client("sagemaker-runtime")
            answer = runtime.invoke_endpoint(
                EndpointName=args.endpoint, ContentType=content_type, Accept=args.accept, Body=body
            )["Body"].read()
        if args.json:
            print(answer.decode(errors="replace"))
        else:
            print_predictions(path.name, answer)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help: str) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = command("validate", cmd_validate, "check a spec and the requests it compiles to (make validate)")
    p.add_argument("config")
    p.add_argument("--json", action="store_true", help="the result (or the problems) as JSON")
    p = command("graph", cmd_graph, "draw the compiled pipeline as SVG and PNG (make pipeline-graph)")
    p.add_argument("config")
    p.add_argument("--out", help="SVG file; the PNG goes beside it (default build/<pipeline>-graph.svg)")
    p = command("report", cmd_report, "write an execution's HTML report again (a local id, latest, or an ARN)")
    p.add_argument("execution", metavar="ID|latest|ARN")
    p.add_argument("--root", help="run root of a local execution (default: $SMP_LOCAL_ROOT or runs)")
    p.add_argument("--out", help="HTML file (default: report.html in the execution's directory)")
    p = command("definition", cmd_definition, "compile a spec to its definition JSON (make pipeline-definition)")
    p.add_argument("config")
    p.add_argument("--out", help="output file (default build/<pipeline>.json)")
    p = command("upsert", cmd_upsert, "upload the code, create or update the pipeline (make pipeline-upsert)")
    p.add_argument("config")
    p = command("run", cmd_run, "start an execution and follow it (make pipeline-run)")
    p.add_argument("config")
    p.add_argument("params", nargs="*", metavar="Name=Value", help="parameter overrides")
    p.add_argument("--no-wait", action="store_true", help="return once the execution has started")
    p = command("list", cmd_list, "a pipeline's SageMaker executions, newest first")
    p.add_argument("config", nargs="?", help="the spec naming the pipeline")
    p.add_argument("--pipeline", help="the pipeline's name instead of a spec")
    p.add_argument("--json", action="store_true")
    p = command(
        "describe", cmd_describe, "a SageMaker execution: each step, the summary (results downloaded to build/)"
    )
    p.add_argument("execution", metavar="EXECUTION_ARN")
    p.add_argument("--json", action="store_true")
    p = command("logs", cmd_logs, "a SageMaker step's CloudWatch logs, every host (a tuning step: every training job)")
    p.add_argument("execution", metavar="EXECUTION_ARN")
    p.add_argument("step")
    p.add_argument("--tail", type=int, default=0, help="only the last N lines of each log stream")
    p = command("retry", cmd_retry, "retry a failed or stopped SageMaker execution and follow it (make pipeline-retry)")
    p.add_argument("execution", metavar="EXECUTION_ARN")
    p.add_argument("--no-wait", action="store_true", help="return once the retry has started")
    p = command("stop", cmd_stop, "stop a SageMaker execution")
    p.add_argument("execution", metavar="EXECUTION_ARN")
    local = sub.add_parser("local", help="run pipelines on this machine, without Docker or AWS (make pipeline-local)")
    local_sub = local.add_subparsers(dest="local_command", required=True, metavar="COMMAND")
    root_help = "run root holding the object store, cache and executions (default: $SMP_LOCAL_ROOT or runs)"
    p = local_sub.add_parser("run", help="compile a spec and run its definition locally")
    p.set_defaults(func=cmd_local_run)
    p.add_argument("config")
    p.add_argument("params", nargs="*", metavar="Name=Value", help="parameter overrides")
    p.add_argument("--root", help=root_help)
    p.add_argument(
        "--mount",
        action="append",
        default=["sm-pipelines-data=data"],
        metavar="BUCKET=DIR",
        help="serve an S3 bucket from a local directory (default: sm-pipelines-data=data)",
    )
    p.add_argument(
        "--nproc", type=int, help="processes for torch_distributed (default: the instance's GPUs, at most the cores)"
    )
    p.add_argument("--parallel", type=int, default=max(1, os.cpu_count() or 1), help="steps run at once")
    p.add_argument("--no-cache", action="store_true", help="ignore the step cache")
    p.add_argument(
        "--until",
        action="append",
        default=[],
        metavar="STEP[,STEP]",
        help="run only these steps and the steps they depend on (the rest: NotRun)",
    )
    p.add_argument("--tail", type=int, default=30, help="log lines shown for a failed step")
    p = local_sub.add_parser(
        "retry",
        help="run a Failed or Stopped execution again in place: succeeded steps keep "
        "their results, the others run again (RetryPipelineExecution)",
    )
    p.set_defaults(func=cmd_local_retry)
    p.add_argument("execution", metavar="ID|latest")
    p.add_argument("--root", help=root_help)
    p.add_argument(
        "--mount", action="append", default=["sm-pipelines-data=data"], metavar="BUCKET=DIR", help="as for local run"
    )
    p.add_argument("--nproc", type=int, help="as for local run")
    p.add_argument("--parallel", type=int, default=max(1, os.cpu_count() or 1), help="steps run at once")
    p.add_argument("--no-cache", action="store_true", help="ignore the step cache")
    p.add_argument("--tail", type=int, default=30, help="log lines shown for a failed step")
    p = local_sub.add_parser("list", help="executions under the run root, newest first")
    p.set_defaults(func=cmd_local_list)
    p.add_argument("--root", help=root_help)
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p = local_sub.add_parser("describe", help="one execution: parameters, each step's status, the summary")
    p.set_defaults(func=cmd_local_describe)
    p.add_argument("execution", metavar="ID|latest")
    p.add_argument("--root", help=root_help)
    p.add_argument("--json", action="store_true", help="the record and the summary as JSON")
    p.add_argument("--tail", type=int, default=30, help="log lines shown for a failed step")
    p = local_sub.add_parser("logs", help="a step's full log")
    p.set_defaults(func=cmd_local_logs)
    p.add_argument("execution", metavar="ID|latest")
    p.add_argument("step")
    p.add_argument("--root", help=root_help)
    p.add_argument("--tail", type=int, default=0, help="only the last N lines")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing as the step writes, until it ends")
    p.add_argument("--trial", help="a tuning step's training job: its name, or its number (1, 2, ...)")
    p = local_sub.add_parser("gc", help="remove old executions and the outputs nothing kept still needs")
    p.set_defaults(func=cmd_local_gc)
    p.add_argument("--keep", type=int, help="keep the newest N executions")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="remove executions started over DAYS ago")
    p.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    p.add_argument("--root", help=root_help)
    p.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="BUCKET=DIR",
        help="buckets served from your directories (never touched; default sm-pipelines-data=data)",
    )
    registry = sub.add_parser(
        "registry", help="model packages: list, describe, approve, reject (SageMaker, or --local)"
    )
    registry_sub = registry.add_subparsers(dest="registry_command", required=True, metavar="COMMAND")

    def registry_command(name: str, func, help: str) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        p = registry_sub.add_parser(name, help=help)
        p.set_defaults(func=func)
        p.add_argument("--local", action="store_true", help="the local registry under the run root")
        p.add_argument("--root", help=root_help)
        p.add_argument("--json", action="store_true", help="JSON instead of a table")
        return p

    registry_command("list", cmd_registry_list, "packages, newest first").add_argument("group", nargs="?")
    registry_command("describe", cmd_registry_describe, "one package: metrics, artifact, image, approval").add_argument(
        "package", metavar="GROUP[:VERSION]"
    )
    for verb in ("approve", "reject"):
        p = registry_command(verb, cmd_registry_status, f"{verb} a version")
        p.add_argument("package", metavar="GROUP:VERSION")
        p.add_argument("--reason", help="kept as the approval description")
    p = command("deploy", cmd_deploy, "deploy an approved model package to an endpoint (SageMaker, or --local)")
    p.add_argument("package", metavar="GROUP[:VERSION]")
    p.add_argument("--endpoint", required=True, help="endpoint name; an existing one is updated in place")
    p.add_argument("--local", action="store_true", help="a local endpoint on 127.0.0.1")
    p.add_argument("--root", help=root_help)
    p.add_argument("--mount", action="append", default=[], metavar="BUCKET=DIR", help="as for local run")
    p.add_argument("--instance-type", default="ml.m5.large", help="SageMaker instance type (default ml.m5.large)")
    p.add_argument("--instance-count", type=int, default=1)
    endpoints = sub.add_parser("endpoints", help="local endpoints: list, logs, stop")
    endpoints_sub = endpoints.add_subparsers(dest="endpoints_command", required=True, metavar="COMMAND")
    p = endpoints_sub.add_parser("list", help="local endpoints and whether they serve")
    p.set_defaults(func=cmd_endpoints_list)
    p.add_argument("--root", help=root_help)
    p.add_argument("--json", action="store_true")
    p = endpoints_sub.add_parser("logs", help="an endpoint's log")
    p.set_defaults(func=cmd_endpoints_logs)
    p.add_argument("name")
    p.add_argument("--root", help=root_help)
    p.add_argument("--tail", type=int, default=0)
    p = endpoints_sub.add_parser("stop", help="stop an endpoint (or all)")
    p.set_defaults(func=cmd_endpoints_stop)
    p.add_argument("name", help="endpoint name, or all")
    p.add_argument("--root", help=root_help)
    p = command("invoke", cmd_invoke, "send images (PNG/JPEG/.npy/.json) to an endpoint and print its predictions")
    p.add_argument("endpoint")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--local", action="store_true", help="a local endpoint")
    p.add_argument("--root", help=root_help)
    p.add_argument("--content-type", help="default: from the file's extension")
    p.add_argument("--accept", default="application/json")
    p.add_argument("--json", action="store_true", help="print the endpoint's answer as it is")
    command("image-build", cmd_image_build, "build the training and inference images (make image-build)")
    command("image-push", cmd_image_push, "push them to ECR (make image-push)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Name=Value overrides may follow the options too (`local run CONFIG --nproc 2 Epochs=3`)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if hasattr(args, "params"):
        args.params += overrides
        extra = [a for a in extra if a not in overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args))
    except (UserError, RunFailure) as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_status
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError | BotoCoreError):
            print(f"error: AWS: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
