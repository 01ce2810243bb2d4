"""``echo`` steps: one step of Type ``Callback`` whose arguments are a CreateExperiment request."""

from __future__ import annotations

from typing import Any

from pipelines.compiler.context import CompileContext


def compile_echo(step: Any, ctx: CompileContext) -> list[Any]:
    from sagemaker.workflow.execution_variables import ExecutionVariables
    from sagemaker.workflow.functions import Join
    from sagemaker.workflow.steps import Step, StepTypeEnum

    output = Join(on="/", values=[ctx.s3(), ExecutionVariables.PIPELINE_EXECUTION_ID, step.name, "said.txt"])

    class EchoStep(Step):
        @property
        def arguments(self) -> dict[str, Any]:
            return {"ExperimentName": step.experiment, "Description": ctx.value(step.message),
                    "Tags": [{"Key": "output", "Value": output}]}  # fmt: skip

        @property
        def properties(self) -> Any:
            return None

    return [EchoStep(name=step.name, step_type=StepTypeEnum.CALLBACK, depends_on=ctx.depends_on(step.depends_on))]
