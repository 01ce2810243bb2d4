"""``python -m pipelines <command>``: every Makefile target's command, one module per command group.

| module | commands |
|---|---|
| `pipelines.cli.spec` | ``validate``, ``graph``, ``definition`` |
| `pipelines.cli.remote` | ``upsert``, ``run``, ``list``, ``describe``, ``logs``, ``retry``, ``stop`` (SageMaker) |
| `pipelines.cli.local` | ``local run|retry|list|describe|logs|gc``, and ``report`` (local or SageMaker) |
| `pipelines.cli.models` | ``registry list|describe|approve|reject``, ``deploy``, ``endpoints``, ``invoke`` |
| `pipelines.cli.images` | ``image-build``, ``image-push`` |

Each module declares its commands beside their functions (`pipelines.cli.common.Group`) and takes its shared
options from `pipelines.cli.common`. Exit status: 0 success, 1 a failed run or an AWS error, 2 bad input
(spec, parameters, settings, names): every error the package raises is a `UserError` or a `RunFailure`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipelines.cli import images, local, models, remote, spec, tracking
from pipelines.cli.common import Group, compile_spec
from pipelines.errors import RunFailure, UserError

__all__ = ["GROUPS", "build_parser", "compile_spec", "main"]

# every command group, in the order `--help` lists them
GROUPS: list[Group] = [spec.group, local.reports, remote.group, local.group, models.registry, models.group,
                       models.endpoints, images.group, tracking.group]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Name=Value overrides may follow the options too (`local run CONFIG --nproc 2 Epochs=3`)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if hasattr(args, "params"):
        args.params += overrides
        extra = [a for a in extra if a not in overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args))
    except (UserError, RunFailure) as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:  # a local run handles its own (it stops its jobs); anywhere else: no traceback
        print("\ninterrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError | BotoCoreError):
            print(f"error: AWS: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
