"""Spec -> SageMaker Pipeline (SDK v2), through one compile function per step kind.

`compile_pipeline` is the thin facade; `COMPILERS` is the explicit table from a spec ``kind`` to its
builder. Compiling needs no network and no credentials, and the same spec compiles to byte-identical
definition JSON (code is addressed by content hash, no timestamps).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.compiler.automl import compile_automl
from pipelines.compiler.code import CodeBundle, pack_steps
from pipelines.compiler.context import CompileContext, CompileError, offline_aws, offline_session, sdk_environment
from pipelines.compiler.deploy import compile_deploy
from pipelines.compiler.evaluation import compile_evaluation
from pipelines.compiler.gate import compile_gate
from pipelines.compiler.processing import compile_processing
from pipelines.compiler.register import compile_register
from pipelines.compiler.training import compile_training
from pipelines.compiler.transform import compile_transform
from pipelines.compiler.tuning import compile_tuning
from pipelines.settings import Settings
from pipelines.spec import PipelineSpec

__all__ = ["COMPILERS", "CompileError", "CompiledPipeline", "compile_pipeline"]

# kind -> builder (compiler/<kind>.py); each returns the SDK steps for one spec step, the one other
# steps reference last (deploy needs three). Definition Types they emit each need a local runner.
COMPILERS: dict[str, Callable[[Any, CompileContext], list[Any]]] = {
    "processing": compile_processing,  # Processing
    "evaluation": compile_evaluation,  # Processing, with a property file
    "training": compile_training,  # Training
    "tuning": compile_tuning,  # Tuning
    "register": compile_register,  # RegisterModel
    "deploy": compile_deploy,  # Model, EndpointConfig, Endpoint
    "automl": compile_automl,  # AutoML
    "transform": compile_transform,  # Model, Transform
}


@dataclass(frozen=True)
class CompiledPipeline:
    name: str
    definition: str  # the JSON SageMaker receives, canonical form
    code: CodeBundle
    pipeline: Any  # sagemaker.workflow.pipeline.Pipeline
    settings: Settings
    spec: PipelineSpec

    def uploads(self) -> dict[str, bytes]:
        return self.code.uploads(self.settings.bucket, self.name)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.definition)
        return path


def canonical_json(definition: str) -> str:
    return json.dumps(json.loads(definition), indent=2, sort_keys=True) + "\n"


def compile_pipeline(spec: PipelineSpec, settings: Settings | None = None) -> CompiledPipeline:
    """The spec's definition, compiled offline: no network, and none of the caller's AWS configuration read."""
    with offline_aws():
        return _compile(spec, settings)


def _compile(spec: PipelineSpec, settings: Settings | None = None) -> CompiledPipeline:
    sdk_environment()
    from sagemaker.workflow.execution_variables import ExecutionVariables
    from sagemaker.workflow.parameters import ParameterBoolean, ParameterFloat, ParameterInteger, ParameterString
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.pipeline_experiment_config import PipelineExperimentConfig

    settings = settings or Settings()
    name = settings.pipeline_name(spec.name)
    ctx = CompileContext(spec, settings, offline_session(settings), pack_steps(), name)
    kinds: dict[str, Any] = {
        "String": ParameterString,
        "Integer": ParameterInteger,
        "Float": ParameterFloat,
        "Boolean": ParameterBoolean,
    }
    for pname, p in spec.parameters.items():
        if p.type == "String" and p.choices:  # SageMaker refuses any other value at StartPipelineExecution
            ctx.parameters[pname] = ParameterString(
                name=pname, default_value=str(p.default), enum_values=[str(c) for c in p.choices]
            )
        else:
            ctx.parameters[pname] = kinds[p.type](name=pname, default_value=p.default)

    top_level: list[Any] = []
    gated: list[Any] = []
    for step_name in spec.execution_order():
        step = spec.step(step_name)
        assert step is not None
        sdk_steps = COMPILERS[step.kind](step, ctx)
        ctx.sdk_steps[step.name] = sdk_steps[-1]
        (gated if step.gated else top_level).extend(sdk_steps)
    if spec.gate is not None:
        top_level.append(compile_gate(spec.gate, gated, ctx))

    pipeline = Pipeline(
        name=name,
        parameters=list(ctx.parameters.values()),
        steps=top_level,
        sagemaker_session=ctx.session,
        pipeline_experiment_config=PipelineExperimentConfig(
            ExecutionVariables.PIPELINE_NAME, ExecutionVariables.PIPELINE_EXECUTION_ID
        ),
    )
    definition = canonical_json(pipeline.definition())
    return CompiledPipeline(name, definition, ctx.code, pipeline, settings, spec)
