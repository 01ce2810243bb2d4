"""``automl`` steps: SDK v2's ``AutoMLStep`` over ``AutoML(mode="ENSEMBLING").fit(...)``; its model is the best
candidate's inference containers as ``AutoMLStep.get_best_auto_ml_model`` builds it, and the gate may read the
best candidate's objective value (``BestCandidate.FinalAutoMLJobObjectiveMetric.Value``)."""

from __future__ import annotations

from typing import Any

from pipelines.compiler.context import CompileContext
from pipelines.spec import AutoMLSpec


def _automl_step(algorithms: list[str] | None, content_type: str | None) -> Any:
    from sagemaker.workflow.automl_step import AutoMLStep

    class AlgorithmsAutoMLStep(AutoMLStep):
        """SDK v2's ``AutoML`` (CreateAutoMLJob, V1) has no parameter for ``CandidateGenerationConfig.
        AlgorithmsConfig`` nor for a channel's ``ContentType``; both are members of the request the step's
        arguments are (botocore's model), added here."""

        @property
        def arguments(self) -> Any:
            args: Any = super().arguments
            if algorithms is not None:
                generation = args["AutoMLJobConfig"].setdefault("CandidateGenerationConfig", {})
                generation["AlgorithmsConfig"] = [{"AutoMLAlgorithms": list(algorithms)}]
            if content_type is not None:
                for channel in args["InputDataConfig"]:
                    channel["ContentType"] = content_type
            return args

    return AlgorithmsAutoMLStep


def compile_automl(step: AutoMLSpec, ctx: CompileContext) -> list[Any]:
    from sagemaker.automl.automl import AutoML, AutoMLInput

    metric = step.objective_metric
    typed = step.problem_type != "auto"
    automl = AutoML(
        role=ctx.role,
        target_attribute_name=step.target,
        output_path=ctx.s3(step.name),
        problem_type=step.problem_type if typed else None,
        job_objective={"MetricName": metric} if typed and metric else None,
        max_candidates=step.max_candidates,
        total_job_runtime_in_seconds=step.max_runtime_seconds,
        validation_fraction=step.validation_fraction,
        mode="ENSEMBLING",
        base_job_name=step.name,
        sagemaker_session=ctx.session,
    )
    step_args = automl.fit(
        inputs=AutoMLInput(inputs=ctx.source(step.input), target_attribute_name=step.target), wait=False, logs=False
    )
    sdk_step = _automl_step(step.algorithms, step.content_type)(
        name=step.name,
        display_name=step.display_name,
        description=step.description,
        step_args=step_args,
        cache_config=ctx.cache_config(step),
        retry_policies=ctx.retry_policies(step),
        depends_on=ctx.depends_on(step.depends_on),
    )
    ctx.outputs[(step.name, "candidates")] = sdk_step.properties.OutputDataConfig.S3OutputPath
    ctx.outputs[(step.name, "model")] = sdk_step.properties.BestCandidate.InferenceContainers[0].ModelDataUrl
    ctx.models[(step.name, "model")] = lambda: sdk_step.get_best_auto_ml_model(ctx.role, sagemaker_session=ctx.session)
    value = sdk_step.properties.BestCandidate.FinalAutoMLJobObjectiveMetric.Value
    for name in step.gate_metrics():
        ctx.gate_values[(step.name, name)] = value
    return [sdk_step]
