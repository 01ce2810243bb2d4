"""The compiled definition's requests checked against the SageMaker service model (`pipelines.requests.model`),
each violation reported at the spec's file:line of the value that caused it: the step's key, or the
parameter whose default (or override) the value came from, with the rule and a did-you-mean for enums."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipelines.loader import SpecError, SpecIssue, format_path, read_yaml
from pipelines.parameters import ParameterError
from pipelines.requests.model import Violation, check_definition, check_pipeline_request
from pipelines.suggest import did_you_mean


def _spec_step(spec: Any, name: str) -> int | None:
    """The spec step a definition step came from: the same name, or the longest name it extends."""
    names = [s.name for s in spec.steps]
    if name in names:
        return names.index(name)
    owners = [n for n in names if name.startswith(n + "-")]
    return names.index(max(owners, key=len)) if owners else None


def _key(step: Any, path: tuple[str | int, ...]) -> tuple[str, ...]:
    """The spec key (under the step) that set the request member at ``path``, as the step's kind maps them."""
    fields = step.request_fields() if step is not None else {}
    for part in reversed(path):
        if isinstance(part, str) and part in fields:
            return fields[part]
    return ()


def _fix(violation: Violation, value: Any = None) -> str:
    if violation.fix:
        return violation.fix
    limit = re.search(r"is (\d+) characters.*, over the limit of (\d+)", violation.rule)
    if limit:
        length, most = int(limit.group(1)), int(limit.group(2))
        return f"shorten it by {length - most} character(s)" + ("" if "execution id" in violation.rule else
                                                                f", to at most {most}")  # fmt: skip
    if violation.allowed and isinstance(value, str):
        hint = did_you_mean(value, violation.allowed)
        if hint:
            return hint
    if violation.allowed and len(violation.allowed) <= 12:
        return "allowed: " + ", ".join(violation.allowed)
    if violation.allowed:
        return f"one of the {len(violation.allowed)} values of the SageMaker API (botocore's service model)"
    return "change the value to one the SageMaker API accepts"


def _offending(violation: Violation) -> Any:
    text = violation.rule
    return text.split("'")[1] if text.count("'") >= 2 else None


def check_instance_types(config: str | Path, spec: Any) -> None:
    """Every literal instance type (and every parameter default one comes from) against the API's enum."""
    from pipelines.requests.model import service_model

    model = service_model()
    found: list[tuple[tuple[str | int, ...], str, str]] = []  # (spec path, value, enum shape)
    for i, step in enumerate(spec.steps):
        for path, value, shape in step.instance_types(("steps", i)):
            name = value[1:] if value.startswith("$") else None
            if name is None:
                found.append((path, value, shape))
            elif name in spec.parameters and isinstance(spec.parameters[name].default, str):
                found.append((("parameters", name, "default"), spec.parameters[name].default, shape))
    issues = []
    positions = None
    for path, value, shape_name in found:
        allowed = model.shape_for(shape_name).enum
        if value not in allowed:
            if positions is None:
                _, positions = read_yaml(Path(config))
            line, column = positions.at(path)
            fix = did_you_mean(value, allowed) or f"one of the {len(allowed)} {shape_name} values SageMaker accepts"
            rule = f"{value!r} is not a valid {shape_name} (the SageMaker API's enum)"
            issues.append(SpecIssue(str(config), line, column, format_path(path), rule, fix))
    if issues:
        raise SpecError(issues)


def check_requests(config: str | Path, spec: Any, definition: dict[str, Any]) -> None:
    """Raise `SpecError` (exit 2) for every request the definition would send that the API refuses."""
    violations = check_definition(definition)
    if not violations:
        return
    _, positions = read_yaml(Path(config))
    issues = []
    for v in violations:
        index = _spec_step(spec, v.step)
        if v.parameter is not None:
            path: tuple[str | int, ...] = ("parameters", v.parameter, "default")
        elif index is not None:
            path = ("steps", index, *_key(spec.steps[index], v.path))
        else:
            path = ()
        line, column = positions.at(path)
        where = ".".join(str(p) for p in v.path)
        rule = f"{v.rule}, at {where} of step '{v.step}'" + (f" (from ${v.parameter})" if v.parameter else "")
        issues.append(SpecIssue(str(config), line, column, format_path(path), rule, _fix(v, _offending(v))))
    raise SpecError(issues)


# CreatePipeline's members -> the spec key that sets them
PIPELINE_FIELDS: dict[str, tuple[str, ...]] = {"PipelineName": ("name",), "PipelineDescription": ("description",),
                                               "Tags": ("tags",), "PipelineDefinition": ("steps",)}  # fmt: skip


def check_pipeline(config: str | Path, spec: Any, name: str, definition: str) -> None:
    """The CreatePipeline request the pipeline's upsert sends (its name with the prefix, the definition's size,
    the description, the tags): a value the API refuses is an error at its spec line."""
    violations = check_pipeline_request(name, definition, spec.description, spec.tags)
    if not violations:
        return
    _, positions = read_yaml(Path(config))
    issues = []
    for v in violations:
        path = PIPELINE_FIELDS.get(str(v.path[0]), ()) if v.path else ()
        line, column = positions.at(path)
        where = ".".join(str(p) for p in v.path)
        rule, fix = f"{v.rule}, at {where}", _fix(v, _offending(v))
        if v.path == ("PipelineDefinition",):
            rule = f"the compiled definition is {len(definition):,} characters; {v.rule.split(', ')[-1]}"
            fix = "fewer steps: split the pipeline into pipelines that read each other's outputs"
        issues.append(SpecIssue(str(config), line, column, format_path(path), rule, fix))
    raise SpecError(issues)


def check_overrides(definition: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Overrides get the same checks as defaults: a value the API refuses is an error before any run."""
    if not overrides:
        return
    problems = [(v, v.parameter) for v in check_definition(definition, overrides) if v.parameter in overrides]
    if problems:
        lines = [
            f"override {name}={overrides[name]!r}: {v.rule}, at {'.'.join(map(str, v.path))} of step "
            f"'{v.step}'; {_fix(v, overrides[name])}"
            for v, name in problems
            if name is not None
        ]
        raise ParameterError("\n".join(dict.fromkeys(lines)))
