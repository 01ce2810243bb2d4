"""``training`` steps: the SageMaker PyTorch estimator running steps/train.py (tuning reuses it)."""

from __future__ import annotations

from typing import Any

from pipelines.compiler.context import CompileContext
from pipelines.spec import TrainingSpec


def estimator(step: TrainingSpec, ctx: CompileContext) -> Any:
    from sagemaker.pytorch import PyTorch
    from sagemaker.workflow.execution_variables import ExecutionVariables
    from sagemaker.workflow.functions import Join

    checkpoint: Any = step.checkpoint_s3_uri
    if isinstance(checkpoint, str) and checkpoint.startswith("s3://") and not checkpoint.endswith("/"):
        checkpoint += "/"  # a prefix, not the start of every key that begins the same way
    if checkpoint == "auto":
        # per execution: a spot restart or a retried job resumes, a new execution starts fresh
        checkpoint = Join(
            on="/",
            values=[
                f"s3://{ctx.bucket}",
                ctx.pipeline_name,
                "checkpoints",
                ExecutionVariables.PIPELINE_EXECUTION_ID,
                step.name,
                "",  # a trailing '/': step 'tune' must not sync 'tune-large''s checkpoints
            ],
        )
    kwargs: dict[str, Any] = {}
    if step.image.custom:
        kwargs["image_uri"] = ctx.image_uri(step.image, "training", step.instance.type)
    else:
        kwargs |= {"framework_version": step.image.framework_version, "py_version": step.image.py_version}
    if step.distribution == "torch_distributed":
        kwargs["distribution"] = {"torch_distributed": {"enabled": True}}
    if step.spot is not None:
        kwargs |= {"use_spot_instances": True, "max_wait": step.spot.max_wait_seconds}
    if step.keep_alive_seconds:
        kwargs["keep_alive_period_in_seconds"] = step.keep_alive_seconds
    return PyTorch(
        entry_point=step.script,
        source_dir=ctx.code.sourcedir_uri(ctx.bucket, ctx.pipeline_name),
        role=ctx.role,
        instance_count=step.instance.count,
        instance_type=ctx.value(step.instance.type),
        volume_size=step.instance.volume_gb,
        max_run=step.max_runtime_seconds,
        hyperparameters={k: ctx.value(v) for k, v in step.hyperparameters.items()},
        metric_definitions=[{"Name": k, "Regex": v} for k, v in step.metrics.items()],
        checkpoint_s3_uri=checkpoint,
        environment=ctx.tracking_environment(step.environment),
        output_path=ctx.s3(step.name) + "/",
        code_location=ctx.code.prefix(ctx.bucket, ctx.pipeline_name),
        base_job_name=step.name,
        disable_profiler=True,
        debugger_hook_config=False,
        sagemaker_session=ctx.session,
        **kwargs,
    )


def training_inputs(step: TrainingSpec, ctx: CompileContext) -> dict[str, Any]:
    from sagemaker.inputs import TrainingInput

    return {channel: TrainingInput(s3_data=ctx.source(src), distribution=step.data_distribution(channel))
            for channel, src in step.inputs.items()}  # fmt: skip


def _training_step(mlflow: dict[str, Any] | None) -> Any:
    from sagemaker.workflow.steps import TrainingStep

    if mlflow is None:
        return TrainingStep
    config = dict(mlflow)

    class TrackedTrainingStep(TrainingStep):
        """SDK v2's estimator has no MlflowConfig parameter; it is a member of CreateTrainingJob (botocore's
        model), added here: SageMaker links the job to the MLflow experiment."""

        @property
        def arguments(self) -> Any:
            args: Any = super().arguments
            args["MlflowConfig"] = dict(config)
            return args

    return TrackedTrainingStep


def compile_training(step: TrainingSpec, ctx: CompileContext) -> list[Any]:
    sdk_step = _training_step(ctx.mlflow_config())(
        name=step.name,
        display_name=step.display_name,
        description=step.description,
        step_args=estimator(step, ctx).fit(inputs=training_inputs(step, ctx)),
        cache_config=ctx.cache_config(step),
        retry_policies=ctx.retry_policies(step),
        depends_on=ctx.depends_on(step.depends_on),
    )
    ctx.outputs[(step.name, "model")] = sdk_step.properties.ModelArtifacts.S3ModelArtifacts
    return [sdk_step]
