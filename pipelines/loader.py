"""Load a YAML spec: parse with positions, validate with pydantic, run the spec's checks.

This module knows YAML and positions: every problem (a pydantic error, or one of the checks in
`pipelines.spec.checks`) becomes a `SpecIssue` naming the file, line and column of the offending key,
its path in the spec, the rule it breaks and the fix; `SpecError` carries all of them, so one run shows
every mistake. Nothing here touches AWS.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pipelines.errors import UserError
from pipelines.spec import PipelineSpec, Problem, check_pipeline
from pipelines.spec.base import Path_, alternatives
from pipelines.spec.pipeline import step_kinds
from pipelines.suggest import did_you_mean


@dataclass(frozen=True)
class SpecIssue:
    file: str
    line: int
    column: int
    path: str
    rule: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path or '<top>'}: {self.rule}" + (f"\n    fix: {self.fix}" if self.fix else "")


class SpecError(UserError):
    """Every problem found in a spec, each at its file:line:column with the rule and the fix."""

    def __init__(self, issues: list[SpecIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))

    def lines(self) -> list[str]:
        return [str(issue) for issue in self.issues] + [f"{len(self.issues)} problem(s) in the spec"]


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- YAML with positions


# What a spec may be: its file at most 1 MB (the API takes a compiled definition of at most 1 MB, and a spec
# is far smaller than what it compiles to), and at most 100,000 values once YAML's aliases are expanded (a
# "billion laughs" document of a few lines expands to billions: it is refused before anything walks it).
MAX_SPEC_BYTES = 1024 * 1024
MAX_SPEC_VALUES = 100_000


class Positions:
    """Line and column (1-based) of every key and item in a YAML document, by path."""

    def __init__(self, node: yaml.Node | None):
        self.marks: dict[Path_, tuple[int, int]] = {}
        self.kinds: dict[Path_, dict[str, str]] = {}  # scalar children of mappings, for discriminators
        self.duplicates: list[tuple[Path_, int, int, int]] = []  # (key path, first line, repeated line, column)
        self.values = 0
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: Path_) -> None:
        self.values += 1
        if self.values > MAX_SPEC_VALUES:
            raise _TooLarge(node)
        self.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            scalars = {}
            seen: dict[Any, int] = {}
            for key, value in node.value:
                child = (*path, key.value)
                line = key.start_mark.line + 1
                if key.value in seen and key.value != "<<":
                    self.duplicates.append((child, seen[key.value], line, key.start_mark.column + 1))
                seen.setdefault(key.value, line)
                self.marks[child] = (line, key.start_mark.column + 1)
                if isinstance(value, yaml.ScalarNode):
                    scalars[str(key.value)] = str(value.value)
                self._walk(value, child)
            self.kinds[path] = scalars
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def normalise(self, loc: tuple[Any, ...]) -> Path_:
        """A pydantic error location as a path in the document (discriminator tags dropped)."""
        path: list[str | int] = []
        for part in loc:
            here = tuple(path)
            candidate = (*here, part)
            if candidate in self.marks or isinstance(part, int):
                path.append(part)
            elif part in self.kinds.get(here, {}).values():
                continue  # a union's tag, e.g. 'training' in steps.1.training.instance
            elif part == "[key]":
                continue
            else:
                path.append(part)
        return tuple(path)

    def at(self, path: Path_) -> tuple[int, int]:
        for end in range(len(path), -1, -1):
            if path[:end] in self.marks:
                return self.marks[path[:end]]
        return (1, 1)


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


def _read_text(path: Path) -> str:
    """The spec's text: at most `MAX_SPEC_BYTES`, UTF-8 (a Latin-1 or binary file is named, not a traceback)."""

    def refuse(line: int, rule: str, fix: str) -> SpecError:
        return SpecError([SpecIssue(str(path), line, 1, "", rule, fix)])

    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise refuse(1, f"the spec is {size:,} bytes; a spec is at most {MAX_SPEC_BYTES:,}",
                         "is this the right file? a pipeline spec is a few kilobytes of YAML")  # fmt: skip
        raw = path.read_bytes()
    except OSError as exc:
        raise refuse(1, f"cannot read the spec ({exc.strerror})", "check the path") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise refuse(line, f"the spec is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                     "save it as UTF-8 (a YAML spec is text)") from None  # fmt: skip


def read_yaml(path: Path) -> tuple[Any, Positions]:
    text = _read_text(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        positions = Positions(node)
        data = yaml.safe_load(text)
    except _TooLarge as exc:
        mark = exc.node.start_mark
        raise SpecError([SpecIssue(
            str(path), mark.line + 1, mark.column + 1, "", f"the spec expands to over {MAX_SPEC_VALUES:,} values "
            "(YAML aliases that repeat aliases multiply what is read)", "write the values out, or use fewer aliases",
        )]) from None  # fmt: skip
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise SpecError(
            [SpecIssue(str(path), line, col, "", f"invalid YAML: {exc.problem}", "fix the YAML syntax")]
        ) from exc
    if positions.duplicates:  # PyYAML keeps the last value silently: the spec that runs is not the one read
        raise SpecError([
            SpecIssue(str(path), second, column, format_path(key), f"'{key[-1]}' is written twice, on lines {first} "
                      f"and {second}; YAML keeps only the last one", "remove one of them")
            for key, first, second, column in positions.duplicates
        ])  # fmt: skip
    if not isinstance(data, dict):
        raise SpecError(
            [
                SpecIssue(
                    str(path),
                    1,
                    1,
                    "",
                    "the spec must be a mapping with name and steps",
                    "start from config/digits.yaml",
                )
            ]
        )
    return data, positions


# --------------------------------------------------------------------------- pydantic errors


def _model_for(annotation: Any, data: Any) -> Any:
    """Follow one level of an annotation for a data value: the model class, or list/dict item type."""
    for alt in alternatives(annotation):
        if isinstance(alt, type) and issubclass(alt, BaseModel):
            if isinstance(data, dict):
                tags = {
                    n: f
                    for n, f in alt.model_fields.items()
                    if n in ("kind", "type") and typing.get_origin(f.annotation) is typing.Literal
                }
                if all(data.get(n) in typing.get_args(f.annotation) for n, f in tags.items()):
                    return alt
        elif typing.get_origin(alt) in (list, dict):
            return alt
    return None


def allowed_keys(loc: Path_, data: Any) -> list[str]:
    """Field names of the model at ``loc`` (the mapping holding the bad key)."""
    current: Any = PipelineSpec
    node = data
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None or not isinstance(node, dict):
                return []
            node = node.get(part)
            current = _model_for(field.annotation, node)
        elif typing.get_origin(current) in (list, dict):
            item = typing.get_args(current)[-1]
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return []
            current = _model_for(item, node)
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _pydantic_issue(err: Any, file: str, data: Any, pos: Positions) -> SpecIssue:
    path = pos.normalise(err["loc"])
    error = err["type"]
    ctx = err.get("ctx", {})
    value = err.get("input")
    if error == "extra_forbidden":
        key = path[-1]
        allowed = allowed_keys(path[:-1], data)
        hint = did_you_mean(str(key), allowed)
        rule = f"unknown key '{key}'"
        fix = (hint + " " if hint else "") + (f"allowed keys: {', '.join(allowed)}" if allowed else "remove it")
    elif error == "missing":
        rule = f"missing required key '{path[-1]}'"
        fix = f"add '{path[-1]}:'"
        path_for_pos = path[:-1]
        line, col = pos.at(path_for_pos)
        return SpecIssue(file, line, col, format_path(path), rule, fix)
    elif error in ("union_tag_invalid", "literal_error"):
        expected = ctx.get("expected_tags") or ctx.get("expected", "")
        choices = re.findall(r"'([^']*)'", str(expected))
        bad = ctx.get("tag", value)
        if error == "union_tag_invalid":
            path = (*path, ctx.get("discriminator", "'kind'").strip("'"))
        hint = did_you_mean(str(bad), choices)
        rule = f"{bad!r} is not allowed here"
        fix = (hint + " " if hint else "") + f"choose one of {', '.join(choices)}"
    elif error == "union_tag_not_found":
        rule = f"missing '{ctx.get('discriminator', 'kind').strip(chr(39))}'"
        fix = f"every step needs kind: {', '.join(step_kinds())}"
    elif error == "string_pattern_mismatch":
        rule = f"{value!r} does not match the pattern {ctx.get('pattern')}"
        fix = (
            "use letters, digits and hyphens, starting with a letter"
            if "A-Za-z" in str(ctx.get("pattern"))
            else "see the spec reference in the README"
        )
    elif error == "value_error":
        rule = str(ctx.get("error", err["msg"]))
        fix = "see the spec reference in the README"
    else:
        rule = f"{err['msg'].lower()} (got {value!r})" if not isinstance(value, dict | list) else err["msg"].lower()
        fix = "see the spec reference in the README"
    line, col = pos.at(path)
    return SpecIssue(file, line, col, format_path(path), rule, fix)


def _positioned(problem: Problem, file: str, pos: Positions) -> SpecIssue:
    line, col = pos.at(problem.path)
    return SpecIssue(file, line, col, format_path(problem.path), problem.rule, problem.fix)


def load_spec(path: str | Path) -> PipelineSpec:
    """Parse, validate and cross-check a spec; raise `SpecError` with every issue found."""
    path = Path(path)
    data, pos = read_yaml(path)
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError([_pydantic_issue(e, str(path), data, pos) for e in exc.errors()]) from None
    issues = [_positioned(problem, str(path), pos) for problem in check_pipeline(spec)]
    if issues:
        raise SpecError(issues)
    return spec
