"""``kind: processing``: a script in a SageMaker processing job (e.g. preprocess.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from pipelines.spec.base import PARAM, Path_, Scalar, ScriptStep, Source

if TYPE_CHECKING:
    from pipelines.spec.checks import Checks


class ProcessingSpec(ScriptStep):
    instance_shape = "ProcessingInstanceType"

    kind: Literal["processing"]
    inputs: dict[str, Source] = Field(
        default_factory=dict,
        description="name -> source ($Param, step.output or s3://...); mounted at /opt/ml/processing/input/<name>",
    )
    sharded: list[str] = Field(
        default_factory=list,
        description="inputs split among the instances by S3 key (ShardedByS3Key): each instance receives about "
        "1/count of the objects; every other input is copied to every instance (FullyReplicated)",
    )
    outputs: list[str] = Field(default_factory=list, description="written under /opt/ml/processing/output/<name>")
    arguments: dict[str, Annotated[Scalar | list[Scalar], PARAM]] = Field(
        default_factory=dict, description="--name value arguments of the script ($Param allowed)"
    )

    def output_names(self) -> list[str]:
        return list(self.outputs)

    def check(self, checks: Checks, here: Path_) -> None:
        super().check(checks, here)
        for j, name in enumerate(self.sharded):
            if name not in self.inputs:
                checks.add(
                    (*here, "sharded", j),
                    f"'{name}' is not one of this step's inputs ({', '.join(self.inputs) or 'none'})",
                    "name an input of the step's 'inputs' to split among its instances",
                )

    def script_options_used(self, here: Path_) -> list[tuple[Path_, str, str]]:
        # each mount is passed to the script as --<name> <directory>
        used = [((*here, "inputs", n), n, " to receive this input") for n in self.inputs]
        used += [((*here, "outputs", j), n, " to receive this output") for j, n in enumerate(self.outputs)]
        return used + [((*here, "arguments", n), n, "") for n in self.arguments]
