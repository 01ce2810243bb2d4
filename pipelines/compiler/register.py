"""``register`` steps: a model package whose metrics are the evaluation report.

A plain `Model` with the packed ``model.tar.gz`` (train.py puts ``code/inference.py`` inside it): a
`PyTorchModel` with an ``entry_point`` would add a hidden repack training job to the pipeline.
"""

from __future__ import annotations

from typing import Any

from pipelines.compiler.context import CompileContext
from pipelines.spec import DeploySpec, RegisterSpec


def serving_model(step: RegisterSpec | DeploySpec, ctx: CompileContext, instance_type: str) -> Any:
    from sagemaker.model import Model

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
