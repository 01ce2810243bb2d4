"""SageMaker commands: upsert a pipeline, run it and follow it, and look at its executions (``upsert``, ``run``,
``list``, ``describe``, ``logs``, ``retry``, ``stop``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipelines.cli.common import (
    BUILD,
    CONFIG,
    EXECUTION_ARN,
    JSON,
    NO_WAIT,
    PARAMS,
    Group,
    UsageError,
    compile_spec,
    load,
    option,
    overrides,
    remote_client,
    view_dir,
    write_run_report,
)

group = Group()


def close_remote(remote: Any, arn: str, into: Path, write: bool = True,
                 tracking: dict[str, Any] | None = None) -> Any:  # fmt: skip
    """The closing summary of a SageMaker execution and its report, from what it describes and downloads; with
    ``tracking`` ({uri, experiment, tags}), its run tree recorded in that MLflow server first (the jobs' own
    runs, which `steps/train.py` logged there, adopted as its children) and linked from the report."""
    from pipelines.report import summary

    view = remote.view(arn, into)
    if tracking:
        record_remote(view, tracking)
    if write:
        write_run_report(view, into / "report.html")
    for line in summary.lines(view):
        print(line, flush=True)
    return view


def record_remote(view: Any, tracking: dict[str, Any]) -> None:
    """The execution's tree in the spec's MLflow server (SageMaker's managed MLflow, through the sagemaker-mlflow
    plugin); a server that cannot be reached costs a warning, never the command's outcome."""
    try:
        from pipelines.report.tracking import Recorder

        recorder = Recorder(tracking["uri"], tracking["experiment"])
        view.tracking = recorder.record(view, tracking.get("tags")) | {"experiment": tracking["experiment"]}
        print(f"tracking: recorded in {tracking['uri']} (experiment {tracking['experiment']}, run "
              f"{view.tracking['parent']})", flush=True)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - MLflow's and the plugin's errors are many; each is only a warning
        print(f"warning: tracking: the execution was not recorded in {tracking['uri']}: {type(exc).__name__}: {exc}",
              file=sys.stderr)  # fmt: skip


def tracking_of(compiled: Any, values: dict[str, Any], config: str) -> dict[str, Any] | None:
    """Where a SageMaker execution of the spec is recorded: its ``tracking.mlflow`` server (a parameter's value as
    this execution got it), or None."""
    from pipelines.report.tracking import git_commit, spec_digest

    arn = compiled.spec.tracking.mlflow
    if arn is None:
        return None
    if arn.startswith("$"):
        name = arn[1:]
        arn = str(values.get(name, compiled.spec.parameters[name].default))
    text = Path(config).read_text()
    tags = {"smp.spec_sha256": spec_digest(text), "smp.spec": str(config),
            "smp.git_commit": git_commit(Path(config).resolve().parent) or ""}  # fmt: skip
    return {"uri": arn, "experiment": compiled.spec.experiment, "tags": {k: v for k, v in tags.items() if v}}


def _follow(remote: Any, arn: str, tracking: dict[str, Any] | None = None) -> int:
    """Wait for an execution to end, print its failure and summary; exit 0 when it succeeded."""
    status = remote.wait(arn)
    if status != "Succeeded":
        for line in remote.failure_report(arn):
            print(line, file=sys.stderr)
    close_remote(remote, arn, view_dir(arn), tracking=tracking)
    return 0 if status == "Succeeded" else 1


@group.command("upsert", "upload the code, create or update the pipeline (make pipeline-upsert)", CONFIG)
def upsert(args: argparse.Namespace) -> int:
    from pipelines.remote import Remote, require_settings
    from pipelines.settings import Settings

    require_settings(Settings())
    compiled = compile_spec(args.config)
    compiled.write(BUILD / f"{compiled.name}.json")
    remote = Remote(compiled.settings)
    arn = remote.upsert(
        compiled.name, compiled.definition, compiled.uploads(), compiled.spec.description, compiled.spec.tags
    )
    print(arn)
    return 0


@group.command("run", "start an execution and follow it (make pipeline-run)", CONFIG, PARAMS, NO_WAIT)
def run(args: argparse.Namespace) -> int:
    from pipelines.remote import Remote, require_settings
    from pipelines.settings import Settings

    compiled = compile_spec(args.config)
    values = overrides(compiled, json.loads(compiled.definition), args.params)
    settings = Settings()
    require_settings(settings)
    remote = Remote(settings)
    arn = remote.start(compiled.name, values)
    return 0 if args.no_wait else _follow(remote, arn, tracking_of(compiled, values, args.config))


@group.command("list", "a pipeline's SageMaker executions, newest first",
               option("config", nargs="?", help="the spec naming the pipeline"),
               option("--pipeline", help="the pipeline's name instead of a spec"), JSON)  # fmt: skip
def list_executions(args: argparse.Namespace) -> int:
    from pipelines.cli.printing import print_remote_executions

    name = (args.pipeline or load(args.config).name) if (args.pipeline or args.config) else None
    if not name:
        raise UsageError("say which pipeline: python -m pipelines list CONFIG (or --pipeline NAME)")
    executions = remote_client().executions(name)
    if args.json:
        print(json.dumps(executions, indent=2, default=str))
    else:
        print_remote_executions(executions)
    return 0


@group.command("describe", "a SageMaker execution: each step, the summary (results downloaded to build/)",
               EXECUTION_ARN, JSON)  # fmt: skip
def describe(args: argparse.Namespace) -> int:
    from pipelines.cli.printing import print_steps
    from pipelines.report import summary

    remote = remote_client()
    view = remote.view(args.execution, view_dir(args.execution))
    if args.json:
        steps = {n: {"type": s.type, "status": s.status, "cache_hit": s.cache_hit, "failure_reason": s.failure_reason,
                     "started": s.started, "ended": s.ended} for n, s in view.steps.items()}  # fmt: skip
        print(json.dumps({"arn": args.execution, "pipeline": view.pipeline, "status": view.status,
                          "parameters": view.parameters, "steps": steps, "failure": view.failure,
                          "summary": summary.lines(view)}, indent=2, default=str))  # fmt: skip
    else:
        print_steps(view)
        if view.status != "Succeeded":
            for line in remote.failure_report(args.execution):
                print(line, file=sys.stderr)
        for line in summary.lines(view):
            print(line)
    return 0 if view.status in ("Succeeded", "Executing") else 1


@group.command("logs", "a SageMaker step's CloudWatch logs, every host (a tuning step: every training job)",
               EXECUTION_ARN, option("step"),
               option("--tail", type=int, default=0, help="only the last N lines of each log stream"))  # fmt: skip
def logs(args: argparse.Namespace) -> int:
    for line in remote_client().step_logs(args.execution, args.step, args.tail):
        print(line)
    return 0


@group.command("retry", "retry a failed or stopped SageMaker execution and follow it (make pipeline-retry)",
               EXECUTION_ARN, option("--no-wait", action="store_true", help="return once the retry started"))
def retry(args: argparse.Namespace) -> int:
    """RetryPipelineExecution for a Failed or Stopped SageMaker execution, then follow it like `run`."""
    remote = remote_client()
    remote.retry(args.execution)
    return 0 if args.no_wait else _follow(remote, args.execution)


@group.command("stop", "stop a SageMaker execution", EXECUTION_ARN)
def stop(args: argparse.Namespace) -> int:
    remote_client().stop(args.execution)
    return 0
