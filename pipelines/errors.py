"""The two kinds of failure the package reports, each with its exit status.

* `UserError`: a mistake the user can fix (a spec, a parameter, a setting, a name, a URI). The CLI prints
  one message naming the file, step or key, the rule and the fix, and exits 2 before anything runs.
* `RunFailure`: something that ran and failed (a step, a server that would not come up). Exit 1.

Every error class the package raises derives from one of them, so `pipelines.cli.main` catches these two
bases, not a list of classes.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can fix: printed as ``error: <message>``, exit status 2."""

    exit_status = 2

    def lines(self) -> list[str]:
        """What the CLI prints for it, one line (or, for a spec, one problem) at a time."""
        return [f"error: {self}"]


class RunFailure(Exception):
    """A run that failed: printed as ``error: <message>``, exit status 1."""

    exit_status = 1

    def lines(self) -> list[str]:
        return [f"error: {self}"]
