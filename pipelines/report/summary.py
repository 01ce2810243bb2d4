"""The closing summary printed when an execution ends (`local run`, `run`, `local describe`, `describe`):
a failure first (step, reason, the lines that explain it), then the gate's verdict, and each step's lines as
its Type's `Outcome` writes them (a training job's or best trial's final metrics, where the model is, what
was registered and deployed), the evaluations, and where the report is."""

from __future__ import annotations

from typing import Any

from pipelines.report.outcomes import outcome
from pipelines.report.outcomes.base import metrics_text, number
from pipelines.report.view import RunView


def model_artifact(step_type: str, result: dict[str, Any]) -> str | None:
    """The model a step of that Type produced (a tuning step's: its best training job's)."""
    return outcome(step_type).model_artifact(result)


def comparisons(view: RunView) -> list[dict[str, Any]]:
    """Every comparison the execution's conditions made (the quality gate's), in step order."""
    return [c for name, step in view.steps.items() for c in outcome(step.type).comparisons(name, step, view)]


def failure_lines(view: RunView, tail_lines: list[str] | None, tail: int) -> list[str]:
    """The failing step, its reason, the first error its log holds (a torchrun job's failing rank's
    exception, which its own traceback follows) when the tail does not show it, then the tail."""
    failure = view.failure or {}
    if not failure:
        return []
    out = [f"step '{failure.get('step')}' failed: {failure.get('reason')}"]
    tail_lines = (tail_lines or [])[-tail:] if tail else []
    excerpt = failure.get("excerpt") or []
    if excerpt and not set(excerpt) <= set(tail_lines):
        out.append(f"--- the first error in {failure.get('log') or 'its log'}")
        out += [f"    {line}" for line in excerpt]
    if tail_lines:
        out.append(f"--- last {len(tail_lines)} lines of {failure.get('log') or 'its log'}")
        out += [f"    {line}" for line in tail_lines]
    return out


def _side(described: str, value: Any) -> str:
    return f"{described} = {number(value)}" if value is not None else described


def lines(view: RunView) -> list[str]:
    """The summary after the failure block (`failure_lines`, printed first and to stderr on a failure)."""
    out: list[str] = []
    hits = sum(s.cache_hit for s in view.steps.values())
    took = f" in {view.elapsed:.1f}s" if view.elapsed is not None else ""
    out.append(f"execution {view.id} of {view.pipeline}: {view.status}{took} ({hits} cache hit(s))")
    for check in comparisons(view):
        verdict = {True: "passed", False: "not passed", None: "not evaluated"}[check["outcome"]]
        left, right = _side(check["left"], check["left_value"]), _side(check["right"], check["right_value"])
        out.append(f"gate '{check['display']}': {left} {check['op']} {right}: {verdict}")
    for name, step in view.steps.items():
        if step.status != "Succeeded":
            continue
        out += outcome(step.type).summary(name, step, view)
        if name in view.evaluations:
            evaluation = view.evaluations[name]
            samples = evaluation.samples
            out.append(f"{name}: {metrics_text(evaluation.metrics)}" + (f" on {samples} images" if samples else ""))
            if evaluation.predictions:
                out.append(f"    predictions: {evaluation.predictions}")
    for name, step in view.steps.items():
        if step.cache_note:
            out.append(f"note: {name} was a cache hit although {step.cache_note}")
    if view.report:
        out.append(f"report: {view.report}")
    return out
