"""``evaluation`` steps: a processing job whose report is published as a property file (the gate reads it)."""

from __future__ import annotations

from typing import Any

from pipelines.compiler.context import CompileContext
from pipelines.compiler.processing import processing_step
from pipelines.spec import EvaluationSpec


def compile_evaluation(step: EvaluationSpec, ctx: CompileContext) -> list[Any]:
    from sagemaker.workflow.functions import JsonGet
    from sagemaker.workflow.properties import PropertyFile

    report = PropertyFile(name=f"{step.name}-report", output_name="evaluation", path=step.report)
    ctx.property_files[step.name] = report
    ctx.report_files[step.name] = step.report
    for metric in step.metrics:
        ctx.gate_values[(step.name, metric)] = JsonGet(
            step_name=step.name, property_file=report, json_path=f"metrics.{metric}.value"
        )
    return [processing_step(step, ctx, property_files=[report])]
