"""What the CLI prints: tables of executions and their steps (local and SageMaker), of the jobs a step ran,
of model packages (the local registry and SageMaker's both give ``DescribeModelPackage``-shaped dicts) and
endpoints, and predictions; as tables on a terminal (full width when piped) or JSON."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from pipelines.report.outcomes import outcome
from pipelines.report.outcomes.base import is_number

if TYPE_CHECKING:
    from pipelines.report.view import RunView


def console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=200)


def print_packages(packages: list[dict[str, Any]], as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(packages, indent=2, default=str))
        return
    table = Table("group", "version", "approval", "created", "arn")
    for p in packages:
        table.add_row(
            p.get("ModelPackageGroupName", ""), str(p.get("ModelPackageVersion", "")), p.get("ModelApprovalStatus", ""),
            str(p.get("CreationTime", "")), p.get("ModelPackageArn", ""),
        )  # fmt: skip
    console().print(table)


def print_package(package: dict[str, Any], as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(package, indent=2, default=str))
        return
    out = console()
    out.print(
        f"{package['ModelPackageGroupName']} version {package['ModelPackageVersion']}: "
        f"{package['ModelApprovalStatus']}"
        + (f" ({package['ApprovalDescription']})" if package.get("ApprovalDescription") else "")
    )
    for container in package.get("InferenceSpecification", {}).get("Containers", []):
        out.print(f"  artifact: {container.get('ModelDataUrl')}")
        out.print(f"  image:    {container.get('Image')}")
    spec = package.get("InferenceSpecification", {})
    if spec.get("SupportedRealtimeInferenceInstanceTypes"):
        out.print(f"  serves on: {', '.join(spec['SupportedRealtimeInferenceInstanceTypes'])}")
    generated = package.get("MetadataProperties", {}).get("GeneratedBy")
    if generated:
        out.print(f"  produced by: {generated}")
    metrics = package.get("Metrics", {}).get("metrics", {})
    if metrics:
        table = Table("metric", "value", title="model quality (the evaluation report)", title_justify="left")
        for name, value in metrics.items():
            table.add_row(name, f"{value.get('value'):.4f}" if isinstance(value, dict) else str(value))
        out.print(table)


def print_predictions(name: str, body: bytes) -> None:
    """One line per image and head: the class (its name when the model has names) and its probability; one line
    per row of a table model (its keys: predicted_label, probability...)."""
    try:
        predictions = json.loads(body)["predictions"]
    except (ValueError, KeyError, TypeError):
        print(f"{name}: {body.decode(errors='replace')}")
        return
    for i, prediction in enumerate(predictions):
        heads = []
        for head, value in (prediction.items() if isinstance(prediction, dict) else [("prediction", prediction)]):
            if not isinstance(value, dict):  # a table model's keys (predicted_label, probability, ...)
                heads.append(f"{head}={value:.4g}" if isinstance(value, float) else f"{head}={value}")
                continue
            label = value.get("label", value.get("class"))
            heads.append(f"{head}={label} ({value.get('probability', 0):.3f})")
        prefix = name if len(predictions) == 1 else f"{name}[{i}]"
        print(f"{prefix}: {'  '.join(heads)}")


def print_remote_executions(executions: list[dict[str, Any]]) -> None:
    table = Table("execution ARN", "status", "started", "display name")
    for e in executions:
        table.add_row(e["PipelineExecutionArn"], e.get("PipelineExecutionStatus", ""), str(e.get("StartTime", "")),
                      e.get("PipelineExecutionDisplayName", ""))  # fmt: skip
    console().print(table)


def print_steps(view: RunView) -> None:
    table = Table("step", "type", "status", "cache", "reason")
    for name, step in view.steps.items():
        table.add_row(name, step.type, step.status, "hit" if step.cache_hit else "", step.failure_reason or "")
    console().print(table)


def print_executions(records: list[dict[str, Any]]) -> None:
    table = Table("execution", "pipeline", "status", "started", "failed step")
    for record in records:
        failed = (record.get("failure") or {}).get("step", "")
        table.add_row(record["id"], record["pipeline"], record["status"], record["started"] or "", failed)
    console().print(table)


def print_execution(record: dict[str, Any], view: RunView) -> None:
    """A local execution's record: parameters, each step, and the jobs each step ran."""
    out = console()
    out.print(f"execution {record['id']} of {record['pipeline']}: {record['status']} "
              f"(started {record['started']}, ended {record['ended']})")  # fmt: skip
    out.print(f"parameters: {json.dumps(record['parameters'])}")
    table = Table("step", "type", "status", "elapsed", "cache", "attempts", "reason")
    for name, step in record["steps"].items():
        elapsed = f"{step['elapsed_seconds']:.1f}s" if step["elapsed_seconds"] is not None else ""
        table.add_row(name, step["type"], step["status"], elapsed, "hit" if step["cache_hit"] else "",
                      str(len(step["attempts"])), step["failure_reason"] or "")  # fmt: skip
    out.print(table)
    for name, children in view.children.items():
        label = outcome(view.steps[name].type).child_label if name in view.steps else "job"
        out.print(children_table(name, children, label))


def children_table(step: str, children: list[dict[str, Any]], label: str = "job") -> Table:
    """The jobs a step ran on its own (a tuning step's training jobs), in the order they started."""
    tuned = list(dict.fromkeys(k for c in children for k in c.get("Parameters", {})))
    metric = children[0].get("Metric", "objective") if children else "objective"
    table = Table(title=f"{step}: {len(children)} {label}(s)", title_justify="left")
    for column in (label, "status", metric, "epochs", "duration", *tuned):
        table.add_column(column)
    for c in children:
        value, duration = c.get("Value"), c.get("DurationSeconds")
        table.add_row(
            str(c["Name"]), str(c.get("Status", "")), f"{value:.4g}" if value is not None else "",
            str(len((c.get("Curves") or {}).get(metric, []))), f"{duration:.1f}s" if duration is not None else "",
            *(f"{float(v):.4g}" if is_number(v) else str(v) for v in (c["Parameters"].get(k, "") for k in tuned)),
        )  # fmt: skip
    return table


def print_endpoints(endpoints: list[dict[str, Any]]) -> None:
    table = Table("endpoint", "status", "url", "serving", "pid", "updated")
    for e in endpoints:
        table.add_row(e["name"], e["status"], e["url"], e["endpoint_config"], str(e["pid"]), e["updated"])
    console().print(table)


def print_comparison(executions: list[dict[str, Any]]) -> None:
    """Executions side by side (one column each, newest first): what they ran with and what they reached."""
    import datetime

    from pipelines.report.outcomes.base import number

    table = Table("", *[e["execution"] or e["run_id"][:8] for e in executions])

    def row(label: str, values: list[Any]) -> None:
        table.add_row(label, *["" if v is None else number(v) for v in values])

    row("pipeline", [e["pipeline"] for e in executions])
    row("status", [e["status"] for e in executions])
    row("started", [datetime.datetime.fromtimestamp(e["started"] / 1000).strftime("%Y-%m-%d %H:%M")
                    if e["started"] else None for e in executions])  # fmt: skip
    row("gate", [e["gate"] for e in executions])
    row("model package", [e["model_package"] for e in executions])
    for name in sorted({k for e in executions for k in e["parameters"]}):
        row(f"parameter {name}", [e["parameters"].get(name) for e in executions])
    for name in sorted({k for e in executions for k in e["metrics"]}):
        row(name, [e["metrics"].get(name) for e in executions])
    row("best job", [e["best_job"] for e in executions])
    for name in sorted({k for e in executions for k in e["best_params"]}):
        row(f"  {name}", [e["best_params"].get(name) for e in executions])
    for name in sorted({k for e in executions for k in e["best_metrics"]}):
        row(f"  {name}", [e["best_metrics"].get(name) for e in executions])
    console().print(table)
