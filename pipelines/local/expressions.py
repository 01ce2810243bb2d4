"""Evaluating what a definition leaves to run time: ``Get``, ``Std:Join``, ``Std:JsonGet`` and conditions.

Step properties resolve against each step's Describe-shaped result, so ``Steps.train.ModelArtifacts.
S3ModelArtifacts`` reads exactly what it reads on SageMaker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pipelines.errors import UserError

_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


class ExpressionError(UserError):
    pass


def path_tokens(path: str) -> list[str | int]:
    tokens: list[str | int] = []
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            raise ExpressionError(f"cannot parse property path {path!r} at {path[pos:]!r}")
        name, index, single_quoted, double_quoted = m.groups()
        if index is not None:
            tokens.append(int(index))
        elif name is not None:
            tokens.append(name)
        else:
            tokens.append(single_quoted if single_quoted is not None else double_quoted)
        pos = m.end()
    return tokens


NAME_KEYS = ("OutputName", "Name", "PropertyFileName", "MetricName", "InputName", "ChannelName", "VariantName")


def walk(value: Any, tokens: list[str | int], where: str) -> Any:
    for token in tokens:
        if isinstance(value, list) and isinstance(token, str):
            # Outputs['train'] selects the element whose ...Name is 'train', as SageMaker's property paths do
            # (FinalMetricDataList['val_loss'], ProcessingInputs['code'], InputDataConfig['train'], ...)
            match = [v for v in value if isinstance(v, dict) and token in (v.get(k) for k in NAME_KEYS)]
            if not match:
                raise ExpressionError(f"{where}: no element named {token!r}")
            value = match[0]
        elif isinstance(value, list):
            if not -len(value) <= token < len(value):  # type: ignore[operator]
                raise ExpressionError(f"{where}: index {token} out of range")
            value = value[token]  # type: ignore[index]
        elif isinstance(value, dict):
            if token not in value:
                raise ExpressionError(f"{where}: no property {token!r} (has {sorted(value)[:8]})")
            value = value[token]
        else:
            raise ExpressionError(f"{where}: cannot take {token!r} of {type(value).__name__}")
    return value


def json_path(document: Any, path: str, where: str) -> Any:
    """The JsonPath subset SageMaker's JsonGet uses: ``metrics.weighted_recall.value``, ``a[0].b``."""
    return walk(document, path_tokens(path), where)


class Resolver:
    """Resolves expressions against parameters, execution variables and finished steps' results."""

    def __init__(
        self,
        parameters: dict[str, Any],
        execution: dict[str, Any],
        step_result: Callable[[str], dict[str, Any]],
        read_s3_json: Callable[[str], Any],
    ):
        self.parameters, self.execution = parameters, execution
        self.step_result, self.read_s3_json = step_result, read_s3_json

    def for_job(self, job_name: str) -> Resolver:
        """This resolver inside one step's job: ``Execution.TrainingJobName`` / ``ProcessingJobName`` name it."""
        variables = self.execution | {"TrainingJobName": job_name, "ProcessingJobName": job_name}
        return Resolver(self.parameters, variables, self.step_result, self.read_s3_json)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Get"}:
            return self.get(value["Get"])
        if set(value) == {"Std:Join"}:
            join = value["Std:Join"]
            return str(join["On"]).join(_text(self(v)) for v in join["Values"])
        if set(value) == {"Std:JsonGet"}:
            spec = value["Std:JsonGet"]
            if "PropertyFile" in spec:
                document = self.property_file(spec["PropertyFile"])
            else:
                document = self.read_s3_json(_text(self(spec["S3Uri"])))
            return json_path(document, spec["Path"], f"JsonGet {spec['Path']}")
        return {k: self(v) for k, v in value.items()}

    def get(self, reference: str) -> Any:
        head, _, rest = reference.partition(".")
        if head == "Parameters":
            if rest not in self.parameters:
                raise ExpressionError(f"unknown parameter {rest!r}")
            return self.parameters[rest]
        if head == "Execution":
            if rest not in self.execution:
                raise ExpressionError(f"unknown execution variable {rest!r}")
            return self.execution[rest]
        if head == "Steps":
            step, _, path = rest.partition(".")
            return walk(self.step_result(step), path_tokens(path), f"Steps.{step}")
        raise ExpressionError(f"cannot resolve {reference!r}")

    def property_file(self, ref: Any) -> Any:
        reference = ref["Get"] if isinstance(ref, dict) else ref
        match = re.fullmatch(r"Steps\.([^.]+)\.PropertyFiles\.(.+)", reference)
        if not match:
            raise ExpressionError(f"not a property file reference: {reference!r}")
        files = self.step_result(match.group(1)).get("PropertyFiles", {})
        if match.group(2) not in files:
            raise ExpressionError(f"step {match.group(1)!r} has no property file {match.group(2)!r}")
        return files[match.group(2)]

    def condition(self, cond: dict[str, Any]) -> bool:
        condition_type = cond["Type"]
        if condition_type == "Not":
            return not self.condition(cond["Condition"])
        if condition_type == "Or":
            return any(self.condition(c) for c in cond["Conditions"])
        if condition_type == "In":
            query = self(cond["QueryValue"])
            return any(_equal(query, self(v)) for v in cond["Values"])
        left, right = self(cond["LeftValue"]), self(cond["RightValue"])
        if condition_type == "Equals":
            return _equal(left, right)
        compare = {
            "GreaterThan": lambda a, b: a > b,
            "GreaterThanOrEqualTo": lambda a, b: a >= b,
            "LessThan": lambda a, b: a < b,
            "LessThanOrEqualTo": lambda a, b: a <= b,
        }
        if condition_type not in compare:
            raise ExpressionError(f"unknown condition type {condition_type!r}")
        try:
            return bool(compare[condition_type](_number(left), _number(right)))
        except ValueError as exc:
            raise ExpressionError(f"{condition_type}: cannot compare {left!r} with {right!r}") from exc


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    return float(value)


def _equal(a: Any, b: Any) -> bool:
    try:
        return _number(a) == _number(b)
    except (TypeError, ValueError):
        return _text(a) == _text(b)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def text(value: Any) -> str:
    return _text(value)
