"""``transform`` steps: the model (a Model step: an automl step's best candidate, or the project's artifact on
the PyTorch inference image), then SDK v2's ``TransformStep`` over ``Transformer.transform(...)``."""

from __future__ import annotations

from typing import Any

from pipelines.compiler.context import CompileContext
from pipelines.compiler.register import model_step
from pipelines.spec import TransformSpec


def compile_transform(step: TransformSpec, ctx: CompileContext) -> list[Any]:
    from sagemaker.transformer import Transformer
    from sagemaker.workflow.steps import TransformStep

    model = model_step(step, ctx)
    transformer = Transformer(
        model_name=model.properties.ModelName,
        instance_type=ctx.value(step.instance.type),
        instance_count=step.instance.count,
        strategy=step.batch_strategy,
        assemble_with="Line" if step.split_type == "Line" else "None",
        output_path=ctx.s3(step.name, "predictions"),
        accept=step.accept,
        max_payload=step.max_payload_mb,
        env=dict(step.environment) or None,  # type: ignore[arg-type]
        volume_kms_key=None,
        sagemaker_session=ctx.session,
    )
    sdk_step = TransformStep(
        name=step.name,
        display_name=step.display_name,
        description=step.description,
        step_args=transformer.transform(
            data=ctx.source(step.input), content_type=step.content_type, split_type=step.split_type
        ),
        cache_config=ctx.cache_config(step),
        retry_policies=ctx.retry_policies(step),
    )
    ctx.outputs[(step.name, "predictions")] = sdk_step.properties.TransformOutput.S3OutputPath
    return [model, sdk_step]
