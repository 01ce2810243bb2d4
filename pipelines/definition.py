"""Reading a compiled definition, shared by the engine, the compiler's API check and the report: every
step (a condition's branches included) and which steps a value reads from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

BRANCHES = ("IfSteps", "ElseSteps")  # where a Condition step holds the steps it runs


def all_steps(
    definition: dict[str, Any], parent: str | None = None, branch: str = ""
) -> Iterator[tuple[dict[str, Any], str | None, str]]:
    """Every step, nested ones included, with the condition holding it and which of its branches."""
    for step in definition.get("Steps", []):
        yield step, parent, branch
        if step.get("Type") == "Condition":
            for key in BRANCHES:
                yield from all_steps({"Steps": step.get("Arguments", {}).get(key, [])}, step["Name"], key)


def find_step(definition: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The step of that name, wherever the definition nests it."""
    return next((step for step, _, _ in all_steps(definition) if step.get("Name") == name), None)


def references(value: Any, skip: frozenset[str] = frozenset()) -> set[str]:
    """Names of the steps a value reads from (``{"Get": "Steps.<name>..."}``), not looking under ``skip`` keys."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Get" and isinstance(v, str) and v.startswith("Steps."):
                found.add(v.split(".")[1])
            elif k not in skip:
                found |= references(v, skip)
    elif isinstance(value, list):
        for v in value:
            found |= references(v, skip)
    return found
