"""``kind: processing``: a script in a SageMaker processing job (e.g. preprocess.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipelines.spec.base import Scalar, ScriptStep


class ProcessingSpec(ScriptStep):
    kind: Literal["processing"]
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description="name -> source ($Param, step.output or s3://...); mounted at /opt/ml/processing/input/<name>",
    )
    outputs: list[str] = Field(default_factory=list, description="written under /opt/ml/processing/output/<name>")
    arguments: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="--name value arguments of the script ($Param allowed)"
    )

    def references(self) -> list[tuple[tuple[str | int, ...], str]]:
        refs: list[tuple[tuple[str | int, ...], str]] = [(("inputs", k), v) for k, v in self.inputs.items()]
        for key, value in self.arguments.items():
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                if isinstance(item, str):
                    refs.append((("arguments", key, i) if isinstance(value, list) else ("arguments", key), item))
        return refs

    def output_names(self) -> list[str]:
        return list(self.outputs)
