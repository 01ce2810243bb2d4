"""``python -m pipelines <command>``: every Makefile target's command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def cmd_data(args: argparse.Namespace) -> int:
    from pipelines.datasets import write_all

    written = write_all(Path(args.out), bengali_images=args.bengali_images)
    for name, paths in written.items():
        for path in paths:
            print(f"{name}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="write the example datasets (synthetic Bengali glyphs, digits)")
    data.add_argument("--out", default="data", help="output directory (default: data)")
    data.add_argument("--bengali-images", type=int, default=4000, help="synthetic Bengali images (default 4000)")
    data.set_defaults(func=cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
