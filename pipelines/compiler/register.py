"""``register`` steps: a model package whose metrics are the evaluation report.

A plain `Model` with the packed ``model.tar.gz`` (train.py puts ``code/inference.py`` inside it): a
`PyTorchModel` with an ``entry_point`` would add a hidden repack training job to the pipeline.
"""

from __future__ import annotations

from typing import Any

from pipelines.compiler.context import CompileContext
from pipelines.spec import DeploySpec, RegisterSpec, TransformSpec
from pipelines.spec.base import STEP_REF


def serving_model(step: RegisterSpec | DeploySpec | TransformSpec, ctx: CompileContext, instance_type: str) -> Any:
    """The SDK Model a step's ``model`` names: the one its producing step built (an automl step's best candidate,
    `CompileContext.models`), else the project's artifact served by the PyTorch inference image."""
    from sagemaker.model import Model

    match = STEP_REF.match(step.model)
    if match and (match.group(1), match.group(2)) in ctx.models:
        return ctx.models[(match.group(1), match.group(2))]()

    return Model(
        image_uri=ctx.image_uri(step.image, "inference", instance_type),
        model_data=ctx.source(step.model),
        role=ctx.role,
        env={
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            "SAGEMAKER_REGION": ctx.settings.compile_region,
        },
        sagemaker_session=ctx.session,
    )


def model_step(step: DeploySpec | TransformSpec, ctx: CompileContext) -> Any:
    """The Model step a deploy or transform step starts with: ``<step>-model``, on the step's instance type."""
    from sagemaker.workflow.model_step import ModelStep

    return ModelStep(
        name=f"{step.name}-model",
        display_name=f"{step.display_name or step.name}: model",
        step_args=serving_model(step, ctx, step.instance.type).create(instance_type=ctx.value(step.instance.type)),
        retry_policies=ctx.retry_policies(step, job=False),
        depends_on=ctx.depends_on(step.depends_on),
    )


def compile_register(step: RegisterSpec, ctx: CompileContext) -> list[Any]:
    from sagemaker.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.workflow.functions import Join
    from sagemaker.workflow.model_step import ModelStep

    metrics = None
    if step.evaluation:
        # the output prefix ends in '/': the file name follows it directly
        report_uri = Join(
            on="", values=[ctx.outputs[(step.evaluation, "evaluation")], ctx.report_files[step.evaluation]]
        )
        metrics = ModelMetrics(model_statistics=MetricsSource(content_type="application/json", s3_uri=report_uri))
    model = serving_model(step, ctx, step.inference_instances[0])
    step_args = model.register(
        content_types=step.content_types,
        response_types=step.response_types,
        inference_instances=step.inference_instances,
        transform_instances=step.transform_instances,
        model_package_group_name=step.model_package_group,
        approval_status=ctx.value(step.approval_status),
        model_metrics=metrics,
        description=step.description,
    )
    sdk_step = ModelStep(
        name=step.name,
        display_name=step.display_name,
        description=step.description,
        step_args=step_args,
        retry_policies=ctx.retry_policies(step, job=False),
        depends_on=ctx.depends_on(step.depends_on),
    )
    ctx.outputs[(step.name, "model_package_arn")] = sdk_step.properties.ModelPackageArn
    return [sdk_step]
