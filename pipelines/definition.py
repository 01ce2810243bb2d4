"""Reading a compiled definition, shared by the engine and the report: which steps a value reads from."""

from __future__ import annotations

from typing import Any


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
