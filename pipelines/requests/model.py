"""Every request a definition holds, checked against botocore's SageMaker service model before anything is
sent or run: required members, types, enums, lengths, ranges and patterns, read from the model botocore
ships (no limit is copied here), with the pipeline parameters at their defaults or as overridden.

A step's arguments are the request its Type makes (``Training`` -> ``CreateTrainingJob``...), as the Type's
`pipelines.remote.jobs.RemoteStep` names it; the members the pipeline service supplies itself (a job's name)
are not required of the definition. Values computed at run time (another step's property, the execution id)
are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pipelines.definition import all_steps
from pipelines.limits import broken
from pipelines.remote.jobs import operations


class _Unknown:
    """A value only the running execution knows (another step's output)."""


UNKNOWN = _Unknown()
# A pipeline execution's id is 12 lowercase letters and digits (``.../execution/0y8lzm3wmpu7``): names composed
# with it (an endpoint configuration named <endpoint>-<execution id>) are checked at the length they will have.
EXECUTION_ID = "e" * 12


@dataclass(frozen=True)
class Violation:
    step: str
    path: tuple[str | int, ...]  # members from the step's arguments down to the value
    rule: str
    allowed: tuple[str, ...] = ()  # an enum's values, for a did-you-mean
    parameter: str | None = None  # the pipeline parameter the value came from, if any
    fix: str = ""  # how to fix it, where the rule says (`pipelines.limits`)

    def __str__(self) -> str:
        where = ".".join(str(p) for p in self.path)
        return f"step '{self.step}' {where}: {self.rule}"


@lru_cache(maxsize=1)
def service_model() -> Any:
    """botocore's SageMaker service model, read from the files botocore ships (no session: nothing of the
    caller's AWS configuration, such as a profile, is read)."""
    from botocore.loaders import create_loader
    from botocore.model import ServiceModel

    from pipelines.compiler.sdk import share_service_models

    share_service_models()  # the SDK reads the same model while compiling: parse it once

    return ServiceModel(create_loader().load_service_model("sagemaker", "service-2"), "sagemaker")


def resolve(value: Any, parameters: dict[str, Any]) -> Any:
    """A definition value with parameters substituted; UNKNOWN where only the execution can say."""
    if isinstance(value, list):
        return [resolve(v, parameters) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Get"}:
        ref = str(value["Get"])
        if ref.startswith("Parameters."):
            return parameters.get(ref.split(".", 1)[1], UNKNOWN)
        if ref == "Execution.PipelineExecutionId":
            return EXECUTION_ID
        return UNKNOWN
    if set(value) == {"Std:Join"}:
        parts = [resolve(v, parameters) for v in value["Std:Join"]["Values"]]
        if any(p is UNKNOWN for p in parts):
            return UNKNOWN
        return str(value["Std:Join"]["On"]).join(_text(p) for p in parts)
    if set(value) == {"Std:JsonGet"}:
        return UNKNOWN
    return {k: resolve(v, parameters) for k, v in value.items()}


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _parameter_of(raw: Any) -> str | None:
    if isinstance(raw, dict) and set(raw) == {"Get"} and str(raw["Get"]).startswith("Parameters."):
        return str(raw["Get"]).split(".", 1)[1]
    return None


# a definition step's own fields -> the API's shape for them (PipelineExecutionStep's StepName, StepDisplayName,
# StepDescription: what SageMaker stores of a step)
STEP_FIELDS = {"Name": "StepName", "DisplayName": "StepDisplayName", "Description": "StepDescription"}
STEP_FIELD_WORDS = {"Name": "name", "DisplayName": "display name", "Description": "description"}


def check_pipeline_request(name: str, definition: str, description: str | None,
                           tags: dict[str, str]) -> list[Violation]:  # fmt: skip
    """The CreatePipeline request `pipeline-upsert` sends, against the service model: the name, the definition's
    size, the description and the tags."""
    shape = service_model().operation_model("CreatePipeline").input_shape
    request = {"PipelineName": name, "PipelineDefinition": definition, "PipelineDescription": description or "",
               "ClientRequestToken": "00000000-0000-0000-0000-000000000000",  # botocore fills it in
               "RoleArn": "arn:aws:iam::000000000000:role/r", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
    return [Violation("", path, f"{rule} (CreatePipeline)", allowed) for path, rule, allowed in
            _check(shape, request, ())]  # fmt: skip


def check_definition(definition: dict[str, Any], overrides: dict[str, Any] | None = None) -> list[Violation]:
    """Every violation of the service model in the definition, parameters at their defaults plus ``overrides``."""
    model = service_model()
    parameters = {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])} | (overrides or {})
    out: list[Violation] = []
    calls = operations()
    for step, _, _ in all_steps(definition):
        for key, shape_name in STEP_FIELDS.items():  # the step's own fields, as a pipeline's steps have them
            if key in step:
                out += [Violation(step["Name"], (key,), f"step {STEP_FIELD_WORDS[key]} {rule}") for rule in
                        _scalar(model.shape_for(shape_name), step[key])]  # fmt: skip
        if step.get("Type", "") not in calls:
            continue
        operation, supplied = calls[step["Type"]]
        shape = model.operation_model(operation).input_shape
        raw = step.get("Arguments", {})
        resolved = resolve(raw, parameters)
        out += [
            Violation(step["Name"], path, f"{rule} ({operation})", allowed, _parameter_of(_at(raw, path)))
            for path, rule, allowed in _check(shape, resolved, (), supplied=frozenset(supplied))
        ]
        out += [Violation(step["Name"], b.path, f"{b.rule} ({b.source})", (), _parameter_of(_at(raw, b.path)), b.fix)
                for b in broken(step["Type"], resolved)]  # fmt: skip
    return out


def _at(value: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _check(
    shape: Any, value: Any, path: tuple[str | int, ...], supplied: frozenset[str] = frozenset()
) -> Iterator[tuple]:
    """Each (path, rule, enum values) ``value`` breaks; ``supplied``: required members not asked of it (the
    top-level request's, which the pipeline service fills in)."""
    if value is UNKNOWN:
        return
    shape_type = shape.type_name
    if shape_type == "structure":
        if not isinstance(value, dict):
            yield path, f"must be a structure ({shape.name}), got {type(value).__name__}", ()
            return
        for name in shape.required_members:
            if name not in value and name not in supplied:
                yield (*path, name), f"is required by {shape.name}", ()
        for key, item in value.items():
            member = shape.members.get(key)
            if member is None:
                yield (*path, key), f"is not a member of {shape.name}", tuple(shape.members)
                continue
            yield from _check(member, item, (*path, key))
    elif shape_type == "list":
        if not isinstance(value, list):
            yield path, f"must be a list, got {type(value).__name__}", ()
            return
        yield from ((path, r, ()) for r in _length(shape, len(value), "items"))
        for i, item in enumerate(value):
            yield from _check(shape.member, item, (*path, i))
    elif shape_type == "map":
        if not isinstance(value, dict):
            yield path, f"must be a map, got {type(value).__name__}", ()
            return
        yield from ((path, r, ()) for r in _length(shape, len(value), "entries"))
        for key, item in value.items():
            yield from (((*path, key), f"key {r}", ()) for r in _scalar(shape.key, key))
            yield from _check(shape.value, item, (*path, key))
    else:
        for rule in _scalar(shape, value):
            yield path, rule, tuple(shape.enum) if getattr(shape, "enum", None) else ()


def _length(shape: Any, n: int, what: str) -> Iterator[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and n < low:
        yield f"needs at least {low} {what}, has {n}"
    if high is not None and n > high:
        yield f"takes at most {high} {what}, has {n}"


def _scalar(shape: Any, value: Any) -> Iterator[str]:
    shape_type, meta = shape.type_name, shape.metadata
    if value is UNKNOWN:
        return
    if shape_type == "string":
        if not isinstance(value, str):
            yield f"must be a string, got {value!r}"
            return
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            yield f"{value!r} is not a valid {shape.name}"
            return
        if meta.get("min") is not None and len(value) < meta["min"]:
            yield f"{value!r} is shorter than {meta['min']} characters"
        if meta.get("max") is not None and len(value) > meta["max"]:
            composed = " (with the execution id SageMaker adds)" if value.endswith("-" + EXECUTION_ID) else ""
            yield f"{value[:40]!r}... is {len(value)} characters{composed}, over the limit of {meta['max']}"
            return  # a pattern that bounds the length too would say it again
        pattern = meta.get("pattern")
        if pattern and not _matches(pattern, value):
            yield f"{value!r} does not match {shape.name}'s pattern {pattern}"
    elif shape_type in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            yield f"must be an integer, got {value!r}"
            return
        yield from _range(meta, value)
    elif shape_type in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            yield f"must be a number, got {value!r}"
            return
        yield from _range(meta, value)
    elif shape_type == "boolean" and not isinstance(value, bool):
        yield f"must be true or false, got {value!r}"


def _range(meta: dict[str, Any], value: float) -> Iterator[str]:
    if meta.get("min") is not None and value < meta["min"]:
        yield f"{value} is below the minimum {meta['min']}"
    if meta.get("max") is not None and value > meta["max"]:
        yield f"{value} is above the maximum {meta['max']}"


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error:
        return None  # a Java-only construct: the pattern cannot be checked here


def _matches(pattern: str, value: str) -> bool:
    regex = _compiled(pattern)
    return regex is None or regex.fullmatch(value) is not None
