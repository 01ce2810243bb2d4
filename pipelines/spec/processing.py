"""``kind: processing``: a script in a SageMaker processing job (e.g. preprocess.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from pipelines.spec.base import PARAM, Path_, Scalar, ScriptStep, Sharded, Source

if TYPE_CHECKING:
    from pipelines.spec.checks import Checks


class ProcessingSpec(Sharded, ScriptStep):
    instance_shape = "ProcessingInstanceType"

    kind: Literal["processing"]
    inputs: dict[str, Source] = Field(
        default_factory=dict,
        description="name -> source ($Param, step.output or s3://...); mounted at /opt/ml/processing/input/<name>",
    )
    outputs: list[str] = Field(default_factory=list, description="written under /opt/ml/processing/output/<name>")
    arguments: dict[str, Annotated[Scalar | list[Scalar], PARAM]] = Field(
        default_factory=dict, description="--name value arguments of the script ($Param allowed)"
    )

    def output_names(self) -> list[str]:
        return list(self.outputs)

    def check(self, checks: Checks, here: Path_) -> None:
        super().check(checks, here)
        self.check_sharded(checks, here)

    def script_options_used(self, here: Path_) -> list[tuple[Path_, str, str]]:
        # each mount is passed to the script as --<name> <directory>
        used = [((*here, "inputs", n), n, " to receive this input") for n in self.inputs]
        used += [((*here, "outputs", j), n, " to receive this output") for j, n in enumerate(self.outputs)]
        return used + [((*here, "arguments", n), n, "") for n in self.arguments]
