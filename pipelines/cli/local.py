"""Local commands: run a pipeline on this machine without Docker or AWS, and look at its executions
(``local run``, ``local retry``, ``local list``, ``local describe``, ``local logs``, ``local gc``), and the HTML
report of any execution (``report``)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from pipelines.cli.common import (
    BUILD,
    CONFIG,
    JSON,
    LOCAL_EXECUTION,
    MOUNT,
    NO_CACHE,
    NPROC,
    PARALLEL,
    PARAMS,
    ROOT,
    TAIL,
    Group,
    UsageError,
    compile_spec,
    option,
    overrides,
    root_flags,
    run_root,
    store,
    view_dir,
    write_run_report,
)
from pipelines.cli.tracking import TRACKING, tracking_mode
from pipelines.cli.tracking import start as track
from pipelines.report.tracking import git_commit, spec_digest

group = Group("local", "run pipelines on this machine, without Docker or AWS (make pipeline-local)")
reports = Group()
UNTIL = option("--until", action="append", default=[], metavar="STEP[,STEP]",
               help="run only these steps and the steps they depend on (the rest: NotRun)")  # fmt: skip
RUN_OPTIONS = (ROOT, MOUNT, NPROC, PARALLEL, NO_CACHE, TAIL, TRACKING)  # what `local run` and `local retry` share


@group.command("run", "compile a spec and run its definition locally", CONFIG, PARAMS, *RUN_OPTIONS, UNTIL)
def run(args: argparse.Namespace) -> int:
    facts: dict[str, Any] = {}
    put: set[str] = set()  # the uploads already in the run's store (put beside the compile)

    def meanwhile(name: str, settings: Any, code: Any) -> None:
        """Beside the compile (`compile_spec`): the engine's modules; when compiling (``code``), the step scripts in
        place in the run's store and what their first job would wait for (`warm_up`); the API's model when
        overrides will be checked against it; what tracking records."""
        _run_modules()
        if code is not None:
            from pipelines.local.runners.base import warm_up

            uploads = code.uploads(settings.bucket, name)
            _put_missing(store(args), uploads)
            put.update(uploads)
            warm_up(data.decode(errors="replace") for file, data in code.files.items()
                    if file.startswith("requirements") and file.endswith(".txt"))  # fmt: skip
        if args.params:  # overrides are checked against the API's model (`overrides`): parsed here meanwhile
            from pipelines.requests.model import service_model

            service_model()
        if tracking_mode(args) != "off":
            facts.update({"smp.spec_sha256": spec_digest(Path(args.config).read_text()), "smp.spec": str(args.config),
                          "smp.git_commit": git_commit(Path(args.config).resolve().parent)})  # fmt: skip

    compiled = compile_spec(args.config, meanwhile=meanwhile)
    from pipelines.local.engine import Execution, LocalOptions

    compiled.write(BUILD / f"{compiled.name}.json")
    # from here on the engine sees only the definition JSON, as SageMaker would
    definition = json.loads(compiled.definition)
    values = overrides(compiled, definition, args.params)
    objects = store(args)
    _put_missing(objects, {uri: data for uri, data in compiled.uploads().items() if uri not in put})
    until = [name for item in args.until for name in item.split(",") if name] or None
    options = LocalOptions(nproc=args.nproc, max_parallel=args.parallel, use_cache=not args.no_cache, until=until)
    settings = {"experiment": compiled.spec.experiment, **facts}
    return _run_live(args, lambda on_change: Execution(
        run_root(args), definition, values, objects, options, on_change, compiled.name), settings)  # fmt: skip


def _put_missing(objects: Any, uploads: dict[str, bytes]) -> None:
    """What `pipeline-upsert` uploads, put in the run's store where it is not yet (its keys are content hashes)."""
    for uri, data in uploads.items():
        if not objects.path(uri).exists():
            objects.put_bytes(uri, data)


def _run_modules() -> None:
    """What `run` needs once the spec is compiled, imported while it compiles beside this process."""
    for name in ("pipelines.local.engine", "pipelines.local.progress", "pipelines.local.view", "pipelines.local.gc",
                 "pipelines.report.summary", "pipelines.report.html", "pipelines.report.outcomes",
                 "packaging.requirements"):  # fmt: skip  (the last: a job's requirements file, checked)
        importlib.import_module(name)


@group.command("retry", "run a Failed or Stopped execution again in place: succeeded steps keep their results, "
               "the others run again (RetryPipelineExecution)", LOCAL_EXECUTION, *RUN_OPTIONS)  # fmt: skip
def retry(args: argparse.Namespace) -> int:
    from pipelines.local.engine import Execution, LocalOptions
    from pipelines.local.records import load_execution, resolve_id

    execution_id = resolve_id(run_root(args), args.execution)
    record = load_execution(run_root(args), execution_id)
    path = run_root(args) / "executions" / execution_id / "definition.json"
    try:
        definition = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); the execution cannot be retried as it was") from None
    options = LocalOptions(nproc=args.nproc, max_parallel=args.parallel, use_cache=not args.no_cache)
    objects = store(args)
    return _run_live(args, lambda on_change: Execution(
        run_root(args), definition, None, objects, options, on_change, record["pipeline"], record), {})  # fmt: skip


def _run_live(args: argparse.Namespace, make: Any, tracking: dict[str, Any]) -> int:
    """Run an execution under the live progress view; Ctrl-C and SIGTERM stop it (the engine stops its jobs,
    then says which signal); then the summary, the report and what to do next."""
    from pipelines.local.progress import Progress

    progress = Progress()
    execution = make(progress.on_change)
    progress.attach(execution)
    print(f"execution {execution.id} of {execution.pipeline}: record in {execution.directory}", flush=True)
    try:
        with progress:
            execution.run()
    except KeyboardInterrupt as exc:
        how = {"SIGINT": "Ctrl-C"}.get(str(exc), str(exc) or "Ctrl-C")
        print(f"\nexecution {execution.id} Stopped ({how}): running jobs were stopped; "
              f"python -m pipelines local retry {execution.id} runs it again", file=sys.stderr)  # fmt: skip
        track(args, execution.id, tracking)  # its runs recorded KILLED
        return 143 if how == "SIGTERM" else 130
    view = close_execution(args, execution.id)
    track(args, execution.id, tracking)
    from pipelines.report.outcomes import outcome

    for step in view.steps.values():  # what to do next with what the run made
        if step.status == "Succeeded":
            for line in outcome(step.type).next_steps(step.result, root_flags(args)):
                print(f"    {line}")
    if execution.status != "Succeeded":
        print(f"    retry it: python -m pipelines local retry {execution.id}{root_flags(args, local=False)}",
              file=sys.stderr)  # fmt: skip
    return 0 if execution.status == "Succeeded" else 1


def close_execution(args: argparse.Namespace, execution_id: str, write: bool = True) -> Any:
    """The closing summary (after the failure, its reason and log, on stderr) and the HTML report."""
    from pipelines.local.gc import FIGURES
    from pipelines.local.view import REPORT, load_view
    from pipelines.report import summary

    view = load_view(run_root(args), execution_id, store(args))
    if write:
        write_run_report(view, run_root(args) / "executions" / view.id / REPORT, run_root(args) / FIGURES)
    if view.status != "Succeeded":
        log = Path((view.failure or {}).get("log") or "")
        tail_lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
        for line in summary.failure_lines(view, tail_lines, args.tail):
            print(line, file=sys.stderr)
    for line in summary.lines(view):
        print(line, flush=True)
    return view


@group.command("list", "executions under the run root, newest first", ROOT, JSON)
def list_executions(args: argparse.Namespace) -> int:
    from pipelines.cli.printing import print_executions
    from pipelines.local.records import list_executions as records

    found = records(run_root(args))
    if args.json:
        keys = ("id", "pipeline", "status", "started", "ended", "failure")
        print(json.dumps([{k: r.get(k) for k in keys} for r in found], indent=2))
    else:
        print_executions(found)
    return 0


@group.command("describe", "one execution: parameters, each step's status, the summary", LOCAL_EXECUTION, ROOT,
               option("--json", action="store_true", help="the record and the summary as JSON"), TAIL)  # fmt: skip
def describe(args: argparse.Namespace) -> int:
    from pipelines.cli.printing import print_execution
    from pipelines.local.records import load_execution, resolve_id
    from pipelines.local.view import load_view
    from pipelines.report import summary

    execution_id = resolve_id(run_root(args), args.execution)
    record = load_execution(run_root(args), execution_id)
    if args.json:
        view = load_view(run_root(args), execution_id, store(args))
        record["summary"] = summary.lines(view)
        record["report"] = str(view.report) if view.report else None
        print(json.dumps(record, indent=2))
    else:
        print_execution(record, load_view(run_root(args), execution_id, store(args)))
        close_execution(args, execution_id, write=False)
    return 0 if record["status"] in ("Succeeded", "Executing") else 1


@group.command("logs", "a step's full log", LOCAL_EXECUTION, option("step"), ROOT,
               option("--tail", type=int, default=0, help="only the last N lines"),
               option("--follow", "-f", action="store_true", help="keep printing as the step writes, until it ends"),
               option("--trial", help="one of the jobs the step ran (a tuning step's training job): its name, or its "
                      "number (1, 2, ...)"))  # fmt: skip
def logs(args: argparse.Namespace) -> int:
    from pipelines.local.records import load_execution, resolve_id
    from pipelines.suggest import did_you_mean

    args.execution = resolve_id(run_root(args), args.execution)
    record = load_execution(run_root(args), args.execution)
    if args.step not in record["steps"]:
        hint = did_you_mean(args.step, record["steps"])
        raise UsageError(f"execution {args.execution} has no step '{args.step}'" + (f"; {hint}" if hint else ""))
    step_dir = run_root(args) / "executions" / args.execution / "steps" / args.step
    log = _child_log(step_dir, args.step, args.trial) if args.trial else step_dir / "log.txt"
    if args.follow:
        return _tail_log(args, log)
    if not log.exists():
        print(f"step '{args.step}' wrote no log (status {record['steps'][args.step]['status']})")
        return 0
    lines = log.read_text().splitlines()
    for line in lines[-args.tail :] if args.tail else lines:
        print(line)
    return 0


def _child_log(step_dir: Path, step: str, wanted: str) -> Path:
    """The log of one of the jobs a step ran, by its name or its number (1 is the first started)."""
    from pipelines.local.runners.base import CHILDREN_FILE
    from pipelines.suggest import did_you_mean

    try:
        children = json.loads((step_dir / CHILDREN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        children = []
    names = [str(c["Name"]) for c in children]
    number = int(wanted) if wanted.isdigit() else 0
    found = [c for i, c in enumerate(children, 1) if c["Name"] == wanted or i == number]
    if not found or not found[0].get("Log"):
        hint = did_you_mean(wanted, names)
        known = f"; its jobs: {', '.join(names)}" if names else f"; step '{step}' ran no jobs of its own"
        raise UsageError(f"no trial '{wanted}'" + (f" ({hint})" if hint else "") + known)
    return Path(found[0]["Log"])


FINISHED = ("Succeeded", "Failed", "Stopped", "Skipped", "NotRun")


def _tail_log(args: argparse.Namespace, log: Path, poll: float = 0.3) -> int:
    """Print the log as it grows until the step (and, for a trial, its log) is finished; Ctrl-C stops."""
    from pipelines.local.records import load_execution

    position = 0
    try:
        while True:
            record = load_execution(run_root(args), args.execution)
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


@group.command("gc", "remove old executions and the outputs nothing kept still needs",
               option("--keep", type=int, help="keep the newest N executions"),
               option("--older-than", type=float, metavar="DAYS", help="remove executions started over DAYS ago"),
               option("--dry-run", action="store_true", help="say what would go, remove nothing"), ROOT,
               option("--mount", action="append", default=None, metavar="BUCKET=DIR",
                      help="buckets served from your directories: never touched"))  # fmt: skip
def gc(args: argparse.Namespace) -> int:
    from pipelines.local.gc import collect, plan

    if args.keep is None and args.older_than is None:
        raise UsageError("say what to keep: --keep N (the newest N executions) and/or --older-than DAYS")
    if (args.keep is not None and args.keep < 0) or (args.older_than is not None and args.older_than < 0):
        raise UsageError("--keep and --older-than take numbers >= 0")
    objects = store(args)
    garbage = plan(run_root(args), objects, args.keep, args.older_than)
    verb = "would free" if args.dry_run else "freed"
    if not args.dry_run:
        collect(run_root(args), objects, garbage)
    print(f"{verb} {garbage.bytes / 1e6:.1f} MB: {len(garbage.executions)} execution(s), "
          f"{len(garbage.outputs)} output(s); {len(garbage.kept_outputs)} output(s) kept because a cache entry, "
          "a registered model, an endpoint or a kept execution still reads them")  # fmt: skip
    for execution_id in garbage.executions:
        print(f"    {'would remove' if args.dry_run else 'removed'} execution {execution_id}")
    return 0


@reports.command("report", "write an execution's HTML report again (a local id, latest, or an ARN)",
                 option("execution", metavar="ID|latest|ARN"), ROOT,
                 option("--out", help="HTML file (default: report.html in the execution's directory)"))  # fmt: skip
def report(args: argparse.Namespace) -> int:
    """The HTML report of a local execution (an id, or latest), or of a SageMaker one (its ARN)."""
    from pipelines.report.html import write_report

    if args.execution.startswith("arn:"):
        from pipelines.remote import Remote
        from pipelines.settings import Settings

        into = view_dir(args.execution)
        view = Remote(Settings()).view(args.execution, into)
        out = Path(args.out) if args.out else into / "report.html"
    else:
        from pipelines.local.records import resolve_id
        from pipelines.local.view import REPORT, load_view

        execution_id = resolve_id(run_root(args), args.execution)
        view = load_view(run_root(args), execution_id, store(args))
        out = Path(args.out) if args.out else run_root(args) / "executions" / execution_id / REPORT
    print(f"wrote {write_report(view, out)}")
    return 0
