"""``kind: echo``: says a message into the object store, under an experiment's name."""

from __future__ import annotations

from typing import Annotated, Literal

from pipelines.spec.base import PARAM, StepBase


class EchoSpec(StepBase):
    REQUEST_FIELDS = {**StepBase.REQUEST_FIELDS, "ExperimentName": ("experiment",), "Description": ("message",)}

    kind: Literal["echo"]
    message: Annotated[str, PARAM]
    experiment: str
