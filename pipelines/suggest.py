"""Did-you-mean hints for unknown names, shared by the spec checks, parameters and the CLI."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def suggest(word: str, choices: Iterable[str]) -> str:
    """A did-you-mean (when one is close) followed by the known names."""
    choices = list(choices)
    hint = did_you_mean(word, choices)
    return (hint + " " if hint else "") + (f"known: {', '.join(choices)}" if choices else "")
