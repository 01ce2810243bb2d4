"""The step scripts a spec names: they must exist, and every ``--option`` a step passes them must be
one their argparse declares (read from the source, never imported: a script may need torch)."""

from __future__ import annotations

import ast
import contextlib
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines import layout
from pipelines.suggest import did_you_mean, suggest

if TYPE_CHECKING:
    from pipelines.spec.base import Path_, ScriptStep
    from pipelines.spec.checks import Checks


@lru_cache(maxsize=32)
def script_options(script: Path) -> frozenset[str] | None:
    """Option names a step script's argparse declares (``--epochs`` -> ``epochs``), read from its source.

    None when the script declares none we can see (then its options are not checked).
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
                names.update(f for f in flags if re.fullmatch(r"-[A-Za-z0-9]", f))  # short flags, as "-x"
            elif func == "add" and isinstance(first, str) and re.fullmatch(r"[a-z][a-z0-9-]*", first):
                names.add(first)
    return frozenset(names | {n.replace("-", "_") for n in names if not n.startswith("-")}) if names else None


def check_script_options(step: ScriptStep, checks: Checks, here: Path_) -> None:
    path = layout.script(step.script)
    if not path.is_file():
        hint = suggest(step.script, layout.scripts())
        checks.add((*here, "script"), f"script steps/{step.script} does not exist", hint)
        return
    options = script_options(path)
    if not options:
        return  # a script whose argparse calls we cannot read: nothing to check against
    spelled = sorted(o for o in options if "_" not in o and not o.startswith("-"))
    for where, name, purpose in step.script_options_used(here):
        if len(name) == 1 and step.toolkit_arguments:
            # sagemaker_training.mapping.to_cmd_args: a one-letter hyperparameter is passed as -x, not --x
            if f"-{name}" not in options:
                checks.add(where, f"SageMaker's training toolkit passes the one-letter hyperparameter '{name}' as "
                           f"-{name}; steps/{step.script} declares no -{name}",
                           f"add_argument(\"-{name}\", ...) in steps/{step.script}, or a longer name")  # fmt: skip
        elif name not in options:
            checks.add(where, f"steps/{step.script} has no option --{name}{purpose}", suggest(name, spelled))


@lru_cache(maxsize=64)
def declared(script: Path, name: str) -> tuple[str, ...] | None:
    """A tuple of strings a script declares at its top level (``NAME = (...)``), read from its source, or None."""
    try:
        tree = ast.parse(script.read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == name for t in node.targets):
            with contextlib.suppress(ValueError):
                value = ast.literal_eval(node.value)
                return tuple(str(v) for v in value)
    return None


def reported_metrics(script: Path) -> tuple[str, ...] | None:
    """The metric names an evaluation script declares it writes (``REPORTED_METRICS = (...)`` in its
    source; ``<head>`` stands for any head's name), or None when it declares none."""
    return declared(script, "REPORTED_METRICS")


def metric_regex_warnings(spec: object) -> list[tuple[Path_, str, str]]:
    """(where, what, fix) for each metric regex of a step that matches more than one of the metric lines its
    script declares (``METRIC_LINES``): SageMaker and the tuner would read a value from each of them (an
    ``epoch`` that never ran, on a chart and as a tuning objective)."""
    out: list[tuple[Path_, str, str]] = []
    for i, step in enumerate(getattr(spec, "steps", [])):
        metrics = getattr(step, "metrics", None)
        script = getattr(step, "script", None)
        if not isinstance(metrics, dict) or not script:
            continue
        lines = [line.replace("<head>", "head") for line in declared(layout.script(script), "METRIC_LINES") or ()]
        for name, regex in metrics.items():
            matched = [line for line in lines if re.search(regex, line)]
            if len(matched) > 1:
                shown = "; ".join(repr(line[:60]) for line in matched)
                out.append((("steps", i, "metrics", name),
                            f"the regex {regex!r} matches {len(matched)} of the lines steps/{script} prints "
                            f"({shown}): each would count as a value of '{name}'",
                            "anchor it so it matches only its own metric, e.g. \\b before the name: "
                            f"'\\b{regex}'"))  # fmt: skip
    return out


def check_reported_metrics(script: str, metrics: list[str], checks: Checks, here: Path_) -> None:
    """Every metric an evaluation step lists must be one its script writes (when the script says which)."""
    declared = reported_metrics(layout.script(script))
    if declared is None:
        return
    patterns = [re.compile("^" + re.escape(d).replace(re.escape("<head>"), r"[A-Za-z0-9_]+") + "$") for d in declared]
    for i, metric in enumerate(metrics):
        if not any(p.match(metric) for p in patterns):
            checks.add(
                (*here, "metrics", i),
                f"steps/{script} never writes a metric '{metric}' (it writes {', '.join(declared)})",
                (did_you_mean(metric, [d for d in declared if "<" not in d]) or "name one it writes")
                + " (<head> is a head's name, e.g. recall_grapheme_root)",
            )
