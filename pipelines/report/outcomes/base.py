"""What every definition Type's result means to people: the base every Type's `Outcome` extends.

A step's result is shaped like the ``Describe*`` response of its Type. An `Outcome` reads it for the people
and tools that look at a run, wherever it ran: the model it produced, the outputs it published (what
`local gc` frees, or keeps while something still reads them), its lines in the closing summary, its sections
of the HTML report, the jobs it ran on its own (a tuning job's training jobs) and what to do next with it.
The summary, the report, `gc`, the run views and the CLI ask the Type's `Outcome`; none names a Type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.report.view import RunView, StepView


def number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def metrics_text(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={number(v)}" for k, v in values.items())


def is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def as_number(text: Any) -> Any:
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


class Outcome:
    """Defaults for a Type whose result produces nothing people look at beyond its status."""

    color = "#f5f5f5"  # its box in the pipeline graph
    # what its child jobs are called, when it runs some (``RunView.children``): "training job", "candidate"
    child_label = "job"
    children_title = "Jobs"  # the title of their section in the report

    def model_artifact(self, result: dict[str, Any]) -> str | None:
        """The model archive the step produced (an S3 URI), if any."""
        return None

    def published(self, result: dict[str, Any]) -> list[str]:
        """Every S3 location the result says the step wrote (never its inputs): a cache hit needs them still
        there, and `local gc` frees them once nothing kept reads them."""
        return []

    def report_uris(self, result: dict[str, Any]) -> list[str]:
        """Output locations that may hold an evaluation report (``evaluation.json`` and its files)."""
        return []

    def summary(self, name: str, step: StepView, view: RunView) -> list[str]:
        """The step's lines in the closing summary, once it succeeded."""
        return []

    def sections(self, name: str, step: StepView, view: RunView) -> list[tuple[str, str, str]]:
        """(anchor, title, HTML) of the report sections of its own, beyond the ones every step gets."""
        return []

    def next_steps(self, result: dict[str, Any], where: str) -> list[str]:
        """What to do next with what it made, as commands (``where``: the CLI flags naming the run root)."""
        return []

    def comparisons(self, name: str, step: StepView, view: RunView) -> list[dict[str, Any]]:
        """The comparisons it made (a quality gate's), each with what was compared, both values and the
        verdict: ``{step, display, type, op, left, right, reads, left_value, right_value, outcome}``."""
        return []


def artifact_line(name: str, view: RunView) -> list[str]:
    """Where the model of a step is: its local copy (when there is one) and its S3 URI."""
    artifact = view.artifacts.get(name)
    if not artifact:
        return []
    where = f"{artifact['path']} ({artifact['uri']})" if artifact.get("path") else artifact["uri"]
    return [f"    model: {where}"]
