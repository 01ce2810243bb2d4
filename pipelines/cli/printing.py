"""What the CLI prints about model packages and predictions: the same for the local registry and
SageMaker's (both give ``DescribeModelPackage``-shaped dicts), as tables on a terminal or JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table


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
    """One line per image and head: the class (its name when the model has names) and its probability."""
    try:
        predictions = json.loads(body)["predictions"]
    except (ValueError, KeyError, TypeError):
        print(f"{name}: {body.decode(errors='replace')}")
        return
    for i, prediction in enumerate(predictions):
        heads = []
        for head, value in prediction.items():
            label = value.get("label", value.get("class"))
            heads.append(f"{head}={label} ({value.get('probability', 0):.3f})")
        prefix = name if len(predictions) == 1 else f"{name}[{i}]"
        print(f"{prefix}: {'  '.join(heads)}")
