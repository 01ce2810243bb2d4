"""The quality gate: a condition on an evaluation metric; register and deploy run only when it passes,
otherwise the execution ends in a Fail step naming the metric, its value and the threshold."""

from __future__ import annotations

from typing import Any

from pipelines.compiler.context import CompileContext
from pipelines.spec import GateSpec


def compile_gate(gate: GateSpec, gated: list[Any], ctx: CompileContext) -> Any:
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import (
        ConditionGreaterThan,
        ConditionGreaterThanOrEqualTo,
        ConditionLessThan,
        ConditionLessThanOrEqualTo,
    )
    from sagemaker.workflow.fail_step import FailStep
    from sagemaker.workflow.functions import Join

    step_name, _, metric = gate.metric.partition(".")
    value = ctx.gate_values[(step_name, metric)]
    threshold = ctx.value(gate.threshold)
    condition = {
        ">=": ConditionGreaterThanOrEqualTo,
        ">": ConditionGreaterThan,
        "<=": ConditionLessThanOrEqualTo,
        "<": ConditionLessThan,
    }[gate.comparison](left=value, right=threshold)  # type: ignore[arg-type]  # JsonGet is accepted at run time
    fail = FailStep(
        name="quality-gate-failed",
        display_name="Quality gate failed",
        error_message=Join(
            on=" ",
            values=[
                f"{gate.metric} =",
                value,
                f"does not pass the gate ({gate.comparison}",
                threshold,
                "); the model was not registered or deployed.",
            ],
        ),
    )
    return ConditionStep(
        name="quality-gate",
        display_name="Quality gate",
        description=f"{gate.metric} {gate.comparison} threshold",
        conditions=[condition],
        if_steps=gated,
        else_steps=[fail],
    )
