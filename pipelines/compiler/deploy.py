"""``deploy`` steps: model, endpoint configuration and endpoint (created, or updated when it exists)."""

from __future__ import annotations

from typing import Any

from pipelines.compiler.context import CompileContext
from pipelines.compiler.register import serving_model
from pipelines.spec import DeploySpec


def compile_deploy(step: DeploySpec, ctx: CompileContext) -> list[Any]:
    from sagemaker.workflow.endpoint_step import EndpointConfigStep, EndpointStep
    from sagemaker.workflow.execution_variables import ExecutionVariables
    from sagemaker.workflow.functions import Join
    from sagemaker.workflow.model_step import ModelStep

    instance_type = ctx.value(step.instance.type)
    model_step = ModelStep(
        name=f"{step.name}-model",
        display_name=f"{step.display_name or step.name}: model",
        step_args=serving_model(step, ctx, step.instance.type).create(instance_type=instance_type),
        retry_policies=ctx.retry_policies(step, job=False),
        depends_on=ctx.depends_on(step.depends_on),
    )
    # a new configuration per execution, so an existing endpoint is updated rather than clashing
    config_name = Join(on="-", values=[step.endpoint_name, ExecutionVariables.PIPELINE_EXECUTION_ID])
    config_step = EndpointConfigStep(
        name=f"{step.name}-config",
        display_name=f"{step.display_name or step.name}: endpoint config",
        step_args=ctx.session.create_endpoint_config(
            name=config_name,
            model_name=model_step.properties.ModelName,
            initial_instance_count=step.instance.count,
            instance_type=instance_type,
        ),
    )
    endpoint_step = EndpointStep(
        name=step.name,
        display_name=step.display_name,
        description=step.description,
        step_args=ctx.session.create_endpoint(
            endpoint_name=step.endpoint_name, config_name=config_step.properties.EndpointConfigName
        ),
    )
    ctx.outputs[(step.name, "endpoint")] = endpoint_step.properties.EndpointName
    return [model_step, config_step, endpoint_step]
