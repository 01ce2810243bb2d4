"""``deploy`` steps: model, endpoint configuration and endpoint (SageMaker's Endpoint step creates the
endpoint, or updates it in place with the new configuration when it exists). With a ``register`` step
named, the three run inside a condition on that model package's approval status."""

from __future__ import annotations

from typing import Any

from pipelines.compiler.context import CompileContext
from pipelines.compiler.register import model_step
from pipelines.spec import DeploySpec

APPROVED = "Approved"


def compile_deploy(step: DeploySpec, ctx: CompileContext) -> list[Any]:
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionEquals
    from sagemaker.workflow.endpoint_step import EndpointConfigStep, EndpointStep
    from sagemaker.workflow.execution_variables import ExecutionVariables
    from sagemaker.workflow.functions import Join

    instance_type = ctx.value(step.instance.type)
    model = model_step(step, ctx)
    capture = None
    if step.data_capture is not None:  # compiled as written; validate refuses it (`pipelines.limits`)
        destination = step.data_capture.destination
        if destination == "auto":
            destination = ctx.s3("data-capture", step.endpoint_name) + "/"
        capture = step.data_capture.config(destination)
    # a new configuration per execution: the Endpoint step moves an existing endpoint onto it
    config_name = Join(on="-", values=[step.endpoint_name, ExecutionVariables.PIPELINE_EXECUTION_ID])
    config_step = EndpointConfigStep(
        name=f"{step.name}-config",
        display_name=f"{step.display_name or step.name}: endpoint config",
        step_args=ctx.session.create_endpoint_config(
            name=config_name,
            model_name=model.properties.ModelName,
            initial_instance_count=step.instance.count,
            instance_type=instance_type,
            data_capture_config_dict=capture,
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
    steps: list[Any] = [model, config_step, endpoint_step]
    if step.registration is None:
        return steps
    # The package's approval status is a property of the register step: deploy only when it is Approved
    # (PendingManualApproval registers and ends there; a person approves, then deploys).
    package = ctx.sdk_steps[step.registration]
    approved = ConditionStep(
        name=f"{step.name}-if-approved",
        display_name=f"{step.display_name or step.name}: only if approved",
        description=f"deploys the model package of '{step.registration}' when its approval status is {APPROVED}",
        conditions=[ConditionEquals(left=package.properties.ModelApprovalStatus, right=APPROVED)],
        if_steps=steps,
        else_steps=[],
    )
    return [approved]
