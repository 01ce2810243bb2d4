"""Split a table into the rows a model trains on and the rows it is tested on, for AutoML pipelines.

Runs as a SageMaker processing job: ``--input`` holds the table (CSV files with one header, or parquet),
``--train`` receives ``train.csv`` (the header and every column), ``--test`` receives ``test.csv`` (the test rows'
features, without a header or the target: what a batch transform sends a model), ``--labels`` receives
``labels.csv`` (the test rows' target values, a header line, then one per line in the same order). The split is
random with ``--seed`` and stratified by the target when it has few distinct values (a classification), so a
rare class lands on both sides.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

STRATIFY_MAX_CLASSES = 100  # a target with more distinct values is split at random, not by class


class SplitError(Exception):
    pass


def read_rows(directory: Path) -> tuple[list[str], list[list[str]]]:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise SplitError(f"{directory}: no table to split")
    header: list[str] | None = None
    rows: list[list[str]] = []
    for path in files:
        if path.read_bytes()[:4] == b"PAR1":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            names, body = table.column_names, [["" if v is None else str(v) for v in r.values()]
                                               for r in table.to_pylist()]  # fmt: skip
        else:
            try:
                with path.open(newline="", encoding="utf-8-sig") as handle:
                    lines = list(csv.reader(handle))
            except UnicodeDecodeError as exc:
                why = f"{exc.reason} at byte {exc.start}"
                raise SplitError(f"{path.name}: not UTF-8 ({why}); re-save it as UTF-8") from None
            if not lines:
                raise SplitError(f"{path.name}: empty file")
            names, body = lines[0], [r for r in lines[1:] if r]
            for n, row in enumerate(body, 2):
                if len(row) != len(names):
                    raise SplitError(f"{path.name}: row {n} has {len(row)} fields where the header has {len(names)}")
        if header is not None and names != header:
            raise SplitError(f"{path.name}: its columns differ from the first file's")
        header = names
        rows.extend(body)
    assert header is not None
    return header, rows


def split(labels: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train rows, test rows) indices; by class when the target looks like one."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    stratify = len(set(labels)) <= STRATIFY_MAX_CLASSES
    for i, label in enumerate(labels):
        groups[label if stratify else ""].append(i)
    train, test = [], []
    for _, members in sorted(groups.items()):
        order = rng.permutation(members).tolist()
        k = int(round(len(order) * fraction))
        test += order[:k]
        train += order[k:]
    return sorted(train), sorted(test)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="the table (CSV with a header, or parquet)")
    parser.add_argument("--train", type=Path, required=True, help="receives train.csv")
    parser.add_argument("--test", type=Path, required=True, help="receives test.csv (features, no header)")
    parser.add_argument("--labels", type=Path, required=True, help="receives labels.csv (the test rows' target)")
    parser.add_argument("--target", required=True, help="the column to predict")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of the rows held out for the test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if not 0 < args.test_fraction < 1:
            raise SplitError(f"--test-fraction {args.test_fraction} must lie between 0 and 1")
        header, rows = read_rows(args.input)
        if args.target not in header:
            raise SplitError(f"no column '{args.target}' (columns: {', '.join(header[:12])})")
        t = header.index(args.target)
        rows = [r for r in rows if r[t] != ""]  # a row without a target can be neither trained nor tested on
        train, test = split([r[t] for r in rows], args.test_fraction, args.seed)
    except SplitError as exc:
        print(f"split_table.py: error: {exc}", file=sys.stderr)
        return 2
    for directory in (args.train, args.test, args.labels):
        directory.mkdir(parents=True, exist_ok=True)
    with (args.train / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows[i] for i in train)
    with (args.test / "test.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([v for j, v in enumerate(rows[i]) if j != t] for i in test)
    with (args.labels / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([args.target])
        writer.writerows([rows[i][t]] for i in test)
    print(f"{len(train)} training rows, {len(test)} test rows ({len(rows)} in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
