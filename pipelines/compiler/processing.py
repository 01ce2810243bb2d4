"""``processing`` steps: a script in a processing job, the code mounted as an input."""

from __future__ import annotations

from typing import Any

from pipelines.compiler.context import CompileContext
from pipelines.spec import ProcessingSpec

PROCESSING = "/opt/ml/processing"


def container_arguments(step: ProcessingSpec, ctx: CompileContext) -> list[Any]:
    """Every input and output directory as ``--<name> <path>``, then the spec's own arguments.

    The script is told where each mount is (as the container contract says) instead of assuming
    /opt/ml paths, which is also what lets the local engine relocate them.
    """
    args: list[Any] = []
    for name in step.inputs:
        args += [f"--{name}", f"{PROCESSING}/input/{name}"]
    for name in step.output_names():
        args += [f"--{name}", f"{PROCESSING}/output/{name}"]
    for key, value in step.arguments.items():
        args.append(f"--{key}")
        for item in value if isinstance(value, list) else [value]:
            args.append(ctx.value(item, as_string=True))
    return args


def entrypoint(step: ProcessingSpec) -> list[Any]:
    """On the stock image, ``processing_entry.sh`` installs ``requirements-processing.txt`` and runs the
    script (what the SDK's FrameworkProcessor does); the project's own image holds them already."""
    script = f"{PROCESSING}/input/code/{step.script}"
    if step.image.custom:
        return ["python3", script]
    return ["/bin/bash", f"{PROCESSING}/input/code/processing_entry.sh", script]


def compile_processing(step: ProcessingSpec, ctx: CompileContext) -> list[Any]:
    return [processing_step(step, ctx)]


def processing_step(step: ProcessingSpec, ctx: CompileContext, property_files: list[Any] | None = None) -> Any:
    """The SDK step of a processing job; ``property_files`` are published from its outputs."""
    from sagemaker.processing import ProcessingInput, ProcessingOutput, Processor
    from sagemaker.workflow.execution_variables import ExecutionVariables
    from sagemaker.workflow.functions import Join
    from sagemaker.workflow.steps import ProcessingStep

    processor = Processor(
        role=ctx.role,
        image_uri=ctx.image_uri(step.image, "training", step.instance.type),
        instance_count=step.instance.count,
        instance_type=ctx.value(step.instance.type),
        volume_size_in_gb=step.instance.volume_gb,
        max_runtime_in_seconds=step.max_runtime_seconds,
        entrypoint=entrypoint(step),
        env=ctx.tracking_environment(step.environment),
        sagemaker_session=ctx.session,
    )
    inputs = [
        ProcessingInput(
            input_name=name,
            source=ctx.source(src),
            destination=f"{PROCESSING}/input/{name}",
            s3_data_distribution_type=step.data_distribution(name),
        )
        for name, src in step.inputs.items()
    ]
    inputs.append(
        ProcessingInput(
            input_name="code",
            source=ctx.code.scripts_uri(ctx.bucket, ctx.pipeline_name),
            destination=f"{PROCESSING}/input/code",
        )
    )
    outputs = [
        ProcessingOutput(
            output_name=name,
            source=f"{PROCESSING}/output/{name}",
            # per execution, so concurrent executions never overwrite each other
            destination=Join(
                on="/",
                values=[
                    f"s3://{ctx.bucket}",
                    ctx.pipeline_name,
                    ExecutionVariables.PIPELINE_EXECUTION_ID,
                    step.name,
                    name,
                    "",  # a trailing '/': S3 matches key prefixes, so 'train' must not also take 'train-large'
                ],
            ),
        )
        for name in step.output_names()
    ]
    sdk_step = ProcessingStep(
        name=step.name,
        display_name=step.display_name,
        description=step.description,
        step_args=processor.run(inputs=inputs, outputs=outputs, arguments=container_arguments(step, ctx) or None),
        property_files=property_files,
        cache_config=ctx.cache_config(step),
        retry_policies=ctx.retry_policies(step),
        depends_on=ctx.depends_on(step.depends_on),
    )
    for name in step.output_names():
        ctx.outputs[(step.name, name)] = sdk_step.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri
    return sdk_step
