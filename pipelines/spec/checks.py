"""The rules a single model cannot see: names unique, references resolvable, no cycles, the gate's metric
produced. Each step kind adds its own rules through its `check` method (in ``spec/<kind>.py``).

Problems are (path in the spec, rule, fix); the loader turns each into file:line:column.
"""

from __future__ import annotations

import graphlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.spec.base import PARAM_REF, Path_, Reference, walk_references
from pipelines.suggest import suggest

if TYPE_CHECKING:
    from pipelines.spec.pipeline import PipelineSpec


@dataclass(frozen=True)
class Problem:
    path: Path_
    rule: str
    fix: str


@dataclass
class Checks:
    """What a step's `check` gets: the whole spec, and where to report."""

    spec: PipelineSpec
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: Path_, rule: str, fix: str) -> None:
        self.problems.append(Problem(path, rule, fix))

    def parameter_type(self, text: str) -> str | None:
        """The declared type of the parameter ``$Name`` names (None: not a parameter or undeclared)."""
        match = PARAM_REF.match(text)
        declared = self.spec.parameters.get(match.group(1)) if match else None
        return declared.type if declared else None


def check_pipeline(spec: PipelineSpec) -> list[Problem]:
    checks = Checks(spec)
    _unique_names(checks)
    for i, step in enumerate(spec.steps):
        here: Path_ = ("steps", i)
        for ref in step.references():
            _reference(checks, step.name, here, ref)
        _no_secrets(checks, step, here)
        step.check(checks, here)
    for ref in walk_references(spec.gate, ("gate",)) if spec.gate else ():
        _reference(checks, None, (), ref)
    if spec.gate is not None:
        spec.gate.check(checks)
    else:
        for i, step in enumerate(spec.steps):
            if step.gated:
                checks.add(
                    ("steps", i, "kind"),
                    f"{step.kind} steps run only behind a quality gate",
                    "add gate: {metric: <evaluation>.<metric>, threshold: $Param}",
                )
    for ref in walk_references(spec.tracking, ("tracking",)):
        _reference(checks, None, (), ref)
    spec.tracking.check(checks)
    if not checks.problems:
        _cycles(checks)
    return checks.problems


# What a secret looks like in `environment:` (its value would sit in plain text in the definition, Studio, the
# execution records and every job's description). By name: a word of the name (split at '_', '-' and '.') says
# so, or it ends in KEY after an API/ACCESS/PRIVATE/... word. By value, whatever the name: the common shapes
# of credentials (the patterns secret scanners such as GitHub's and gitleaks' look for).
SECRET_WORDS = {"PASSWORD", "PASSWD", "PASS", "PWD", "PASSPHRASE", "SECRET", "SECRETS", "TOKEN", "TOKENS",
                "APIKEY", "PAT", "CREDENTIAL", "CREDENTIALS", "CREDS", "AUTH", "COOKIE", "PRIVATEKEY",
                "CLIENTSECRET"}  # fmt: skip
KEY_QUALIFIERS = {"API", "ACCESS", "PRIVATE", "SECRET", "SIGNING", "ENCRYPTION", "MASTER", "SSH", "LICENSE"}
SECRET_VALUES = {
    "a URL with a password": re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.IGNORECASE),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "an AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a GitHub token": re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,})"),
    "an OpenAI-style API key": re.compile(r"\bsk-(proj-)?[A-Za-z0-9_-]{20,}"),
    "a Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "a Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "a JSON web token": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
}
SECRET_REFERENCE = re.compile(r"^arn:aws[a-z-]*:(secretsmanager|ssm):")


def secret_kind(name: str, value: str) -> str | None:
    """Why ``name: value`` looks like a secret (None when it does not); a Secrets Manager or SSM ARN never is."""
    if SECRET_REFERENCE.match(value):
        return None
    words = [w for w in re.split(r"[_.\-]+", name.upper()) if w]
    if any(w in SECRET_WORDS for w in words):
        return "its name says it holds a secret"
    qualified = any(w == "KEY" and i > 0 and words[i - 1] in KEY_QUALIFIERS for i, w in enumerate(words))
    if qualified or (words and words[-1] == "KEY"):
        return "its name says it holds a key"
    found = next((what for what, pattern in SECRET_VALUES.items() if pattern.search(value)), None)
    return f"its value is {found}" if found else None


def _no_secrets(checks: Checks, step: Any, here: Path_) -> None:
    for name, value in step.environment.items():
        why = secret_kind(name, str(value))
        if why:
            checks.add(
                (*here, "environment", name),
                f"'{name}' looks like a secret ({why}): its value would be stored in plain text in the pipeline "
                "definition, Studio and every job's description",
                f"store it in AWS Secrets Manager and pass the secret's ARN instead ({name}_ARN: "
                "arn:aws:secretsmanager:<region>:<account>:secret:<name>), which the script reads with boto3 "
                "(secretsmanager get_secret_value) under the pipeline's role",
            )


def _unique_names(checks: Checks) -> None:
    seen: dict[str, int] = {}
    for i, step in enumerate(checks.spec.steps):
        if step.name in seen:
            checks.add(
                ("steps", i, "name"),
                f"duplicate step name '{step.name}' (also steps[{seen[step.name]}])",
                "give every step a unique name",
            )
        seen.setdefault(step.name, i)


def _reference(checks: Checks, owner: str | None, here: Path_, ref: Reference) -> None:
    spec, where = checks.spec, (*here, *ref.path)
    field_name = ".".join(str(p) for p in ref.path if isinstance(p, str))
    if ref.parameter is not None:
        if ref.accepts is None or not ref.accepts.parameter:
            checks.add(where, f"{field_name} does not take a parameter (${ref.parameter})", "write a literal value")
        elif ref.parameter not in spec.parameters:
            checks.add(
                where,
                f"unknown parameter '${ref.parameter}'",
                suggest(ref.parameter, spec.parameters) or "declare it under parameters:",
            )
        return
    if ref.accepts is None:
        return
    names = [s.name for s in spec.steps]
    if ref.accepts.step_name:
        if ref.text not in names:
            checks.add(where, f"unknown step '{ref.text}'", suggest(ref.text, names))
        elif ref.text == owner:
            checks.add(where, "a step cannot depend on itself", "remove it")
        return
    if not ref.accepts.step_output or ref.text.startswith("s3://"):
        return
    target_ref = ref.step
    if target_ref is None:
        checks.add(
            where,
            f"{ref.text!r} is neither $Param, step.output nor s3://...",
            "reference another step's output as <step>.<output>, e.g. preprocess.train",
        )
        return
    target_name, output = target_ref
    target = spec.step(target_name)
    if target is None:
        checks.add(where, f"unknown step '{target_name}'", suggest(target_name, names))
    elif target_name == owner:
        checks.add(where, "a step cannot consume its own output", "reference an upstream step")
    elif output not in target.output_names():
        checks.add(where, f"step '{target_name}' has no output '{output}'", suggest(str(output), target.output_names()))


def _cycles(checks: Checks) -> None:
    try:
        checks.spec.execution_order()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        index = {s.name: i for i, s in enumerate(checks.spec.steps)}
        checks.add(
            ("steps", index[cycle[0]]),
            f"steps form a cycle: {' -> '.join(cycle)}",
            "remove one of the references or depends_on entries",
        )
