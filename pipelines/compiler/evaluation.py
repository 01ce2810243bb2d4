"""``evaluation`` steps: a processing job whose report is published as a property file (the gate reads it)."""

from __future__ import annotations

from typing import Any

from pipelines.compiler.context import CompileContext
from pipelines.compiler.processing import processing_step
from pipelines.spec import EvaluationSpec


def compile_evaluation(step: EvaluationSpec, ctx: CompileContext) -> list[Any]:
    from sagemaker.workflow.properties import PropertyFile

    report = PropertyFile(name=f"{step.name}-report", output_name="evaluation", path=step.report)
    ctx.property_files[step.name] = report
    ctx.report_files[step.name] = step.report
    return [processing_step(step, ctx, property_files=[report])]
