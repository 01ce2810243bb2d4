"""Pipeline parameters as a definition declares them, and ``Name=Value`` overrides checked against them.

Remote and local runs are peers of the definition: both take their parameters from here, so an
override is parsed, typed and refused the same way whichever runs it.
"""

from __future__ import annotations

import math
from typing import Any

from pipelines.errors import UserError
from pipelines.suggest import did_you_mean


class ParameterError(UserError):
    """A bad override or an unset parameter: the CLI prints it and exits 2."""


def declared(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Name -> the definition's parameter entry (``Type``, ``DefaultValue``)."""
    return {p["Name"]: p for p in definition.get("Parameters", [])}


def parse_value(name: str, declared_type: str, text: str) -> Any:
    """An override's text as its parameter's type. Numbers are written in ASCII digits (Python would read
    ``१`` as 1) and are finite (``nan`` compares false with everything, and ``-inf`` passes any gate)."""
    try:
        if declared_type in ("Integer", "Float") and not text.isascii():
            raise ValueError
        if declared_type == "Integer":
            return int(text)
        if declared_type == "Float":
            value = float(text)
            if not math.isfinite(value):
                raise ParameterError(f"parameter '{name}' is Float; {text!r} is not a finite number")
            return value
        if declared_type == "Boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        return text
    except ValueError:
        raise ParameterError(f"parameter '{name}' is {declared_type}; {text!r} is not one") from None


def parse_overrides(definition: dict[str, Any], pairs: list[str]) -> dict[str, Any]:
    """``Name=Value`` overrides, each checked against the definition's parameters and typed."""
    params = declared(definition)
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise ParameterError(f"parameter override {pair!r} is not Name=Value")
        if name not in params:
            hint = did_you_mean(name, params)
            raise ParameterError(
                f"unknown parameter '{name}'"
                + (f"; {hint}" if hint else "")
                + f". Declared: {', '.join(params) or 'none'}"
            )
        out[name] = parse_value(name, params[name].get("Type", "String"), text)
        allowed = params[name].get("EnumValues")
        if allowed and text not in allowed:
            raise ParameterError(f"parameter '{name}' takes one of {allowed}; {text!r} is not one")
    return out


def resolve(definition: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Every parameter's value for one execution: its default, unless overridden."""
    params = declared(definition)
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; declared: {', '.join(params) or 'none'}")
    values = {name: p.get("DefaultValue") for name, p in params.items()} | overrides
    missing = [n for n, v in values.items() if v is None]
    if missing:
        raise ParameterError(f"parameter(s) {missing} have no default and no value")
    return values


def as_api_value(value: Any) -> str:
    """How StartPipelineExecution takes a value: a string (booleans lower-case, as the definition has them)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
