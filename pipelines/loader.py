"""Load a YAML spec: parse with positions, validate with pydantic, then check the steps against each other.

Every problem becomes a `SpecIssue` naming the file, line and column of the offending key, its path in
the spec, the rule it breaks and the fix; `SpecError` carries all of them, so one run shows every
mistake. Nothing here touches AWS.
"""

from __future__ import annotations

import ast
import difflib
import graphlib
import re
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pipelines.spec import (
    DeploySpec,
    EvaluationSpec,
    PipelineSpec,
    ProcessingSpec,
    RegisterSpec,
    TrainingSpec,
    TuningSpec,
)
from pipelines.spec.base import PARAM_REF, STEP_REF

STEPS_DIR = Path(__file__).resolve().parents[1] / "steps"
GPU_INSTANCE = re.compile(r"^ml\.(p\d|g\d)[a-z0-9]*\.")

Path_ = tuple[str | int, ...]


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


class SpecError(Exception):
    def __init__(self, issues: list[SpecIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- YAML with positions


class Positions:
    """Line and column (1-based) of every key and item in a YAML document, by path."""

    def __init__(self, node: yaml.Node | None):
        self.marks: dict[Path_, tuple[int, int]] = {}
        self.kinds: dict[Path_, dict[str, str]] = {}  # scalar children of mappings, for discriminators
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: Path_) -> None:
        self.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            scalars = {}
            for key, value in node.value:
                child = (*path, key.value)
                self.marks[child] = (key.start_mark.line + 1, key.start_mark.column + 1)
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


def read_yaml(path: Path) -> tuple[Any, Positions]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(
            [SpecIssue(str(path), 1, 1, "", f"cannot read the spec ({exc.strerror})", "check the path")]
        ) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise SpecError(
            [SpecIssue(str(path), line, col, "", f"invalid YAML: {exc.problem}", "fix the YAML syntax")]
        ) from exc
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
    return data, Positions(node)


# --------------------------------------------------------------------------- pydantic errors


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete alternatives of an annotation (Annotated, Optional and unions removed)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [alt for arg in typing.get_args(annotation) for alt in _unwrap(arg)]
    return [annotation]


def _model_for(annotation: Any, data: Any) -> Any:
    """Follow one level of an annotation for a data value: the model class, or list/dict item type."""
    for alt in _unwrap(annotation):
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
    kind = err["type"]
    ctx = err.get("ctx", {})
    value = err.get("input")
    if kind == "extra_forbidden":
        key = path[-1]
        allowed = allowed_keys(path[:-1], data)
        hint = did_you_mean(str(key), allowed)
        rule = f"unknown key '{key}'"
        fix = (hint + " " if hint else "") + (f"allowed keys: {', '.join(allowed)}" if allowed else "remove it")
    elif kind == "missing":
        rule = f"missing required key '{path[-1]}'"
        fix = f"add '{path[-1]}:'"
        path_for_pos = path[:-1]
        line, col = pos.at(path_for_pos)
        return SpecIssue(file, line, col, format_path(path), rule, fix)
    elif kind in ("union_tag_invalid", "literal_error"):
        expected = ctx.get("expected_tags") or ctx.get("expected", "")
        choices = re.findall(r"'([^']*)'", str(expected))
        bad = ctx.get("tag", value)
        if kind == "union_tag_invalid":
            path = (*path, ctx.get("discriminator", "'kind'").strip("'"))
        hint = did_you_mean(str(bad), choices)
        rule = f"{bad!r} is not allowed here"
        fix = (hint + " " if hint else "") + f"choose one of {', '.join(choices)}"
    elif kind == "union_tag_not_found":
        rule = f"missing '{ctx.get('discriminator', 'kind').strip(chr(39))}'"
        fix = "every step needs kind: processing, training, tuning, evaluation, register or deploy"
    elif kind == "string_pattern_mismatch":
        rule = f"{value!r} does not match the pattern {ctx.get('pattern')}"
        fix = (
            "use letters, digits and hyphens, starting with a letter"
            if "A-Za-z" in str(ctx.get("pattern"))
            else "see the spec reference in the README"
        )
    elif kind == "value_error":
        rule = str(ctx.get("error", err["msg"]))
        fix = "see the spec reference in the README"
    else:
        rule = f"{err['msg'].lower()} (got {value!r})" if not isinstance(value, dict | list) else err["msg"].lower()
        fix = "see the spec reference in the README"
    line, col = pos.at(path)
    return SpecIssue(file, line, col, format_path(path), rule, fix)


# --------------------------------------------------------------------------- cross-step checks


@lru_cache(maxsize=32)
def script_options(script: Path) -> frozenset[str] | None:
    """Option names a step script's argparse declares (``--epochs`` -> ``epochs``), read from its source.

    None when the script declares none we can see (then hyperparameters are not checked).
    """
    try:
        tree = ast.parse(script.read_text())
    except (OSError, SyntaxError):
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            first = node.args[0].value
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func == "add_argument":
                flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                names.update(f[2:] for f in flags if f.startswith("--"))
            elif func == "add" and isinstance(first, str) and re.fullmatch(r"[a-z][a-z0-9-]*", first):
                names.add(first)
    return frozenset(names | {n.replace("-", "_") for n in names}) if names else None


class Checker:
    def __init__(self, spec: PipelineSpec, file: str, pos: Positions):
        self.spec, self.file, self.pos = spec, file, pos
        self.issues: list[SpecIssue] = []
        self.index = {s.name: i for i, s in enumerate(spec.steps)}

    def add(self, path: Path_, rule: str, fix: str) -> None:
        line, col = self.pos.at(path)
        self.issues.append(SpecIssue(self.file, line, col, format_path(path), rule, fix))

    def run(self) -> list[SpecIssue]:
        self.duplicates()
        for i, step in enumerate(self.spec.steps):
            here: Path_ = ("steps", i)
            self.references(step, here)
            if isinstance(step, ProcessingSpec | TrainingSpec):
                self.script(step, here)
            if isinstance(step, TrainingSpec):
                self.training(step, here)
            if isinstance(step, RegisterSpec) and step.evaluation is not None:
                target = self.spec.step(step.evaluation)
                if not isinstance(target, EvaluationSpec):
                    self.add(
                        (*here, "evaluation"),
                        f"'{step.evaluation}' is not an evaluation step",
                        self._suggest(
                            step.evaluation, [s.name for s in self.spec.steps if isinstance(s, EvaluationSpec)]
                        ),
                    )
            for j, dep in enumerate(step.depends_on):
                if dep not in self.index:
                    self.add((*here, "depends_on", j), f"unknown step '{dep}'", self._suggest(dep, self.index))
        self.gate()
        if not self.issues:
            self.cycles()
        return self.issues

    def _suggest(self, word: str, choices: typing.Iterable[str]) -> str:
        choices = list(choices)
        hint = did_you_mean(word, choices)
        return (hint + " " if hint else "") + (f"known: {', '.join(choices)}" if choices else "")

    def duplicates(self) -> None:
        seen: dict[str, int] = {}
        for i, step in enumerate(self.spec.steps):
            if step.name in seen:
                self.add(
                    ("steps", i, "name"),
                    f"duplicate step name '{step.name}' (also steps[{seen[step.name]}])",
                    "give every step a unique name",
                )
            seen.setdefault(step.name, i)

    def references(self, step: Any, here: Path_) -> None:
        for path, text in step.references():
            param = PARAM_REF.match(text)
            if param:
                if param.group(1) not in self.spec.parameters:
                    self.add(
                        (*here, *path),
                        f"unknown parameter '${param.group(1)}'",
                        self._suggest(param.group(1), self.spec.parameters) or "declare it under parameters:",
                    )
                continue
            if path[0] not in ("inputs", "model"):
                continue  # literals
            if text.startswith("s3://"):
                continue
            ref = STEP_REF.match(text)
            if not ref:
                self.add(
                    (*here, *path),
                    f"{text!r} is neither $Param, step.output nor s3://...",
                    "reference another step's output as <step>.<output>, e.g. preprocess.train",
                )
                continue
            target_name, output = ref.groups()
            target = self.spec.step(target_name)
            if target is None:
                self.add((*here, *path), f"unknown step '{target_name}'", self._suggest(target_name, self.index))
            elif target_name == step.name:
                self.add((*here, *path), "a step cannot consume its own output", "reference an upstream step")
            elif output not in target.output_names():
                self.add(
                    (*here, *path),
                    f"step '{target_name}' has no output '{output}'",
                    self._suggest(output, target.output_names()),
                )

    def script(self, step: ProcessingSpec | TrainingSpec, here: Path_) -> None:
        path = STEPS_DIR / step.script
        if not path.is_file():
            self.add(
                (*here, "script"),
                f"script steps/{step.script} does not exist",
                self._suggest(step.script, sorted(p.name for p in STEPS_DIR.glob("*.py"))),
            )
            return
        options = script_options(path)
        if not options:
            return  # a script whose argparse calls we cannot read: nothing to check against
        spelled = sorted(o for o in options if "_" not in o)
        checks: list[tuple[Path_, str, str]] = []  # (where, option name, what it is for)
        if isinstance(step, ProcessingSpec):
            # each mount is passed to the script as --<name> <directory>
            checks += [((*here, "inputs", n), n, " to receive this input") for n in step.inputs]
            checks += [((*here, "outputs", j), n, " to receive this output") for j, n in enumerate(step.outputs)]
            checks += [((*here, "arguments", n), n, "") for n in step.arguments]
        else:
            checks += [((*here, "hyperparameters", n), n, "") for n in step.hyperparameters]
        if isinstance(step, TuningSpec):
            checks += [((*here, "ranges", n), n, " to tune") for n in step.ranges]
        for where, name, purpose in checks:
            if name not in options:
                self.add(where, f"steps/{step.script} has no option --{name}{purpose}", self._suggest(name, spelled))

    def training(self, step: TrainingSpec, here: Path_) -> None:
        if step.spot is not None and step.checkpoint_s3_uri is None:
            self.add(
                (*here, "spot"),
                "spot training without checkpoints loses all progress when the instance is reclaimed",
                "add checkpoint_s3_uri: auto (or an s3:// URI)",
            )
        if step.spot is not None and step.keep_alive_seconds:
            self.add(
                (*here, "keep_alive_seconds"),
                "warm pools are not available for spot training",
                "remove keep_alive_seconds or spot",
            )
        if step.spot is not None and step.spot.max_wait_seconds < step.max_runtime_seconds:
            self.add(
                (*here, "spot", "max_wait_seconds"),
                f"max_wait_seconds ({step.spot.max_wait_seconds}) is below "
                f"max_runtime_seconds ({step.max_runtime_seconds})",
                "SageMaker needs max_wait >= max_runtime: raise max_wait_seconds or lower max_runtime_seconds",
            )
        if step.checkpoint_s3_uri not in (None, "auto") and not str(step.checkpoint_s3_uri).startswith("s3://"):
            self.add(
                (*here, "checkpoint_s3_uri"),
                f"{step.checkpoint_s3_uri!r} is not an s3:// URI",
                "use auto or s3://bucket/prefix",
            )
        if step.distribution == "torch_distributed":
            # the SDK decides the launcher from the instance type when the definition is built
            if step.instance.is_parameter:
                self.add(
                    (*here, "instance", "type"),
                    "torch_distributed needs a literal instance type, not a parameter",
                    "write the GPU instance type, e.g. ml.g5.12xlarge",
                )
            elif not GPU_INSTANCE.match(step.instance.type):
                self.add(
                    (*here, "instance", "type"),
                    f"torch_distributed needs a GPU instance type; {step.instance.type} has none",
                    "use ml.g5.*, ml.g6.*, ml.p4d.* or ml.p5.*, or distribution: none",
                )
        for name in step.metrics:
            if not re.fullmatch(r"[A-Za-z0-9_:.\-/]{1,255}", name):
                self.add(
                    (*here, "metrics", name),
                    f"metric name {name!r} has characters SageMaker refuses",
                    "use letters, digits, _ . : - /",
                )
        if isinstance(step, TuningSpec) and step.objective.metric not in step.metrics:
            self.add(
                (*here, "objective", "metric"),
                f"no metric definition produces the objective '{step.objective.metric}'",
                self._suggest(step.objective.metric, step.metrics) or "add it under metrics: with a regex",
            )
        if isinstance(step, TuningSpec):
            for name in step.ranges:
                if name in step.hyperparameters:
                    self.add(
                        (*here, "ranges", name),
                        f"'{name}' is both a fixed hyperparameter and a tuned range",
                        "remove it from hyperparameters",
                    )

    def gate(self) -> None:
        gate = self.spec.gate
        gated = [i for i, s in enumerate(self.spec.steps) if isinstance(s, RegisterSpec | DeploySpec)]
        if gate is None:
            for i in gated:
                self.add(
                    ("steps", i, "kind"),
                    f"{self.spec.steps[i].kind} steps run only behind a quality gate",
                    "add gate: {metric: <evaluation>.<metric>, threshold: $Param}",
                )
            return
        step_name, _, metric = gate.metric.partition(".")
        target = self.spec.step(step_name)
        if not isinstance(target, EvaluationSpec):
            evals = [s.name for s in self.spec.steps if isinstance(s, EvaluationSpec)]
            self.add(
                ("gate", "metric"),
                f"'{step_name}' is not an evaluation step",
                self._suggest(step_name, evals) or "add an evaluation step",
            )
        elif metric not in target.metrics:
            self.add(
                ("gate", "metric"),
                f"evaluation step '{step_name}' produces no metric '{metric}'",
                self._suggest(metric, target.metrics) or "list it under the evaluation step's metrics:",
            )
        if isinstance(gate.threshold, str):
            param = PARAM_REF.match(gate.threshold)
            if not param:
                self.add(
                    ("gate", "threshold"),
                    f"{gate.threshold!r} is neither a number nor $Param",
                    "write 0.9 or $AccuracyThreshold",
                )
            elif param.group(1) not in self.spec.parameters:
                self.add(
                    ("gate", "threshold"),
                    f"unknown parameter '{gate.threshold}'",
                    self._suggest(param.group(1), self.spec.parameters),
                )
            elif self.spec.parameters[param.group(1)].type not in ("Float", "Integer"):
                self.add(
                    ("gate", "threshold"), f"parameter '{param.group(1)}' is not a number", "declare it type: Float"
                )

    def cycles(self) -> None:
        graph = {s.name: set(dependencies(s)) for s in self.spec.steps}
        try:
            tuple(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as exc:
            cycle = exc.args[1]
            self.add(
                ("steps", self.index[cycle[0]]),
                f"steps form a cycle: {' -> '.join(cycle)}",
                "remove one of the references or depends_on entries",
            )


def dependencies(step: Any) -> list[str]:
    """Names of the steps a step consumes from or depends on."""
    deps = list(step.depends_on)
    for _, text in step.references():
        ref = STEP_REF.match(text)
        if ref and not text.startswith("s3://"):
            deps.append(ref.group(1))
    if isinstance(step, RegisterSpec) and step.evaluation:
        deps.append(step.evaluation)
    return list(dict.fromkeys(d for d in deps if d != step.name))


def load_spec(path: str | Path) -> PipelineSpec:
    """Parse, validate and cross-check a spec; raise `SpecError` with every issue found."""
    path = Path(path)
    data, pos = read_yaml(path)
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError([_pydantic_issue(e, str(path), data, pos) for e in exc.errors()]) from None
    issues = Checker(spec, str(path), pos).run()
    if issues:
        raise SpecError(issues)
    return spec
