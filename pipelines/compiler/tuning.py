"""``tuning`` steps: a hyperparameter tuning job over the training estimator; its output is the best job's model."""

from __future__ import annotations

import json
from typing import Any

from pipelines.compiler.context import CompileContext
from pipelines.compiler.training import estimator, training_inputs
from pipelines.spec import TuningSpec

_SCALING = {"auto": "Auto", "linear": "Linear", "log": "Logarithmic", "reverse_log": "ReverseLogarithmic"}


def _deterministic_tuning_step(job_name: str) -> Any:
    from sagemaker.workflow.steps import TuningStep

    class DeterministicTuningStep(TuningStep):
        """The SDK stamps the time into ``sagemaker_job_name``; a fixed name keeps the definition stable. An
        unset MaxNumberOfTrainingJobs (Grid) is left out, not sent as null."""

        @property
        def arguments(self) -> Any:
            args: Any = super().arguments
            limits = args["HyperParameterTuningJobConfig"]["ResourceLimits"]
            if limits.get("MaxNumberOfTrainingJobs") is None:  # Grid without max_jobs: SageMaker computes it
                limits.pop("MaxNumberOfTrainingJobs", None)
            static = args["TrainingJobDefinition"]["StaticHyperParameters"]
            static["sagemaker_job_name"] = json.dumps(job_name)
            return args

    return DeterministicTuningStep


def compile_tuning(step: TuningSpec, ctx: CompileContext) -> list[Any]:
    from sagemaker.tuner import (
        CategoricalParameter,
        ContinuousParameter,
        HyperbandStrategyConfig,
        HyperparameterTuner,
        IntegerParameter,
        StrategyConfig,
    )

    ranges: dict[str, Any] = {}
    for name, r in step.ranges.items():
        if r.type == "continuous":
            ranges[name] = ContinuousParameter(r.min, r.max, scaling_type=_SCALING[r.scaling])
        elif r.type == "integer":
            ranges[name] = IntegerParameter(r.min, r.max, scaling_type=_SCALING[r.scaling])
        else:
            ranges[name] = CategoricalParameter([str(v) for v in r.values])
    tuner = HyperparameterTuner(
        estimator(step, ctx),
        objective_metric_name=step.objective.metric,
        objective_type=step.objective.type,
        hyperparameter_ranges=ranges,  # type: ignore[arg-type]
        metric_definitions=[{"Name": k, "Regex": v} for k, v in step.metrics.items()],
        strategy=step.strategy,
        max_jobs=None if step.jobs is None else ctx.value(step.jobs),  # type: ignore[arg-type]  # None: Grid
        max_parallel_jobs=ctx.value(step.max_parallel_jobs),
        early_stopping_type=step.early_stopping,
        strategy_config=None if step.hyperband is None else StrategyConfig(
            hyperband_strategy_config=HyperbandStrategyConfig(
                max_resource=step.hyperband.max_resource, min_resource=step.hyperband.min_resource
            )
        ),
        base_tuning_job_name=step.name,
    )
    sdk_step = _deterministic_tuning_step(step.name)(
        name=step.name,
        display_name=step.display_name,
        description=step.description,
        step_args=tuner.fit(inputs=training_inputs(step, ctx)),
        cache_config=ctx.cache_config(step),
        retry_policies=ctx.retry_policies(step),
        depends_on=ctx.depends_on(step.depends_on),
    )
    # the best job's model: <output_path>/<training job name>/output/model.tar.gz
    ctx.outputs[(step.name, "model")] = sdk_step.get_top_model_s3_uri(
        top_k=0, s3_bucket=ctx.bucket, prefix=f"{ctx.pipeline_name}/{step.name}"
    )
    return [sdk_step]
