"""Parquet images -> uint8 tensor shards, the input of `train.py` and `evaluate.py`.

Two input layouts, detected from the columns (or named with ``--layout``): ``wide`` (``image_id`` plus one
uint8 column per pixel, as the Bengali.AI files ship, labels from a CSV) and ``encoded`` (PNG/JPEG bytes and
the label columns in one table); `parquet_source` reads them.

Every label column is a head. Output, under ``--output``: one directory per split (``train``,
``validation``, ``test``), each with ``images_NNNNN.npy`` shards of shape (N, C, H, W), ``labels_<head>.npy``
(int64), ``image_ids.txt`` (the source's ``image_id`` per image, else ``<file>:<row>``) and
``manifest.json``; `shard_writer` converts and writes them, every core converting row groups. Everything is
written to a temporary directory first and moved into place only when the whole run succeeded. Progress is
printed as ``preprocess: <done>/<total> rows`` per row group. With several processing instances each
converts its share (`instance_share`) into ``<split>/<host>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instance_share import config_dir, my_share, this_host  # noqa: E402
from parquet_source import (  # noqa: E402
    IDS_FILE,
    SPLITS,
    InputError,
    Options,
    Source,
    detect_layout,
    first_image_shape,
    hashed_split,
    list_parquet_files,
    open_parquet,
    scan_encoded,
    scan_wide,
)
from shard_writer import Plan, SplitLayout, Task, convert_all, default_workers, sha256, statistics  # noqa: E402


def options(args: argparse.Namespace) -> Options:
    opts = Options(
        size=tuple(args.size) if args.size else None,  # type: ignore[arg-type]
        channels=args.channels,
        invert=args.invert,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        wide_shape=(args.height, args.width),
        block_columns=args.block_columns,
        shard_size=args.shard_size,
    )
    if not 0 <= opts.val_fraction + opts.test_fraction < 1:
        raise InputError("--val-fraction plus --test-fraction must be in [0, 1)")
    return opts


def this_instance(args: argparse.Namespace) -> tuple[str, list[str], list[Path]]:
    """(this instance, every instance, the files it converts): all of them, or its share of several."""
    config = Path(args.resource_config).parent if args.resource_config else config_dir(args.input)
    host, hosts = this_host(config)
    if len(hosts) == 1:
        return host, hosts, list_parquet_files(args.input)
    received = list_parquet_files(args.input, allow_none=True)
    files = my_share(received, args.input, host, hosts, config)
    print(f"preprocess: instance {host} of {len(hosts)}: {len(files)} of {len(received)} file(s)", flush=True)
    return host, hosts, files


def run(args: argparse.Namespace) -> dict:
    opts = options(args)
    host, hosts, files = this_instance(args)
    several = len(hosts) > 1
    if not files:
        print(f"preprocess: {host} has no files to convert (fewer files than instances); nothing to write")
        return {"splits": {}, "host": host}
    layout = args.layout
    if layout == "auto":
        layouts = {detect_layout(p, open_parquet(p).schema_arrow) for p in files}
        if len(layouts) > 1:
            raise InputError(f"the input mixes layouts {sorted(layouts)}; give one layout per run")
        layout = layouts.pop()

    if layout == "wide":
        labels_csv = labels_file(args, files, several)
        source = scan_wide(files, labels_csv, args, opts)
        h, w = opts.size or opts.wide_shape
        shape = (opts.channels or 1, h, w)
        label_files = [labels_csv]
    else:
        source = scan_encoded(files, args)
        c, h, w = first_image_shape(source, opts.channels)
        shape = (c, *(opts.size or (h, w)))
        label_files = []

    source.split = hashed_split(source.ids, opts.val_fraction, opts.test_fraction, opts.seed)
    counts = {s: int((source.split == i).sum()) for i, s in enumerate(SPLITS)}
    if counts["train"] == 0 and not several:  # with several instances, the train split is the sum of theirs
        raise InputError("the train split is empty: lower --val-fraction/--test-fraction or add data")

    output = output_root(args)
    output.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".preprocess-", dir=output))
    part = Path(host) if several else Path()  # each instance its own part of every split
    try:
        from concurrent.futures import ThreadPoolExecutor

        # the sources' digests are read while the workers convert (hashing releases the GIL)
        with ThreadPoolExecutor(1) as hasher:
            digests = hasher.map(sha256, [*source.files, *label_files])
            manifest = _write_splits(source, opts, shape, counts, lambda split: staging / split / part,
                                     args.workers)  # fmt: skip
            digest = list(digests)
        manifest["sources"] = [
            {"path": p.name, "sha256": d, "rows": n}
            for p, d, n in zip(source.files, digest, source.rows_per_file, strict=False)
        ] + [{"path": p.name, "sha256": d} for p, d in zip(label_files, digest[len(source.files) :], strict=True)]
        manifest["options"] = {
            "layout": source.layout,
            "size": list(opts.size) if opts.size else None,
            "channels": shape[0],
            "invert": opts.invert,
            "val_fraction": opts.val_fraction,
            "test_fraction": opts.test_fraction,
            "seed": opts.seed,
        }
        if several:
            manifest["host"], manifest["hosts"] = host, hosts
        text = json.dumps(manifest, indent=2, sort_keys=True)
        for split in SPLITS:
            if counts[split]:
                (staging / split / part / "manifest.json").write_text(text)
        (staging / "manifest.json").write_text(text)
        _publish(staging, output, {s: Path(getattr(args, s)) if getattr(args, s) else output / s for s in SPLITS})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def labels_file(args: argparse.Namespace, files: list[Path], several: bool) -> Path:
    """The wide layout's labels CSV: ``--labels`` (a file, or a directory holding one CSV, as a processing
    input mounts it), else the one ``train.csv`` beside the parquet files."""
    if args.labels:
        given = Path(args.labels)
        if given.is_dir():
            found = sorted(given.rglob("*.csv"))
            if len(found) != 1:
                raise InputError(f"--labels {given}: expected one .csv file in the directory, found {len(found)}")
            return found[0]
        return given
    candidates = sorted({p.parent / "train.csv" for p in files if (p.parent / "train.csv").exists()})
    if len(candidates) != 1:
        hint = (
            "; with several instances give the labels as their own input (FullyReplicated), so that every "
            "instance has them"
            if several
            else ""
        )
        raise InputError(f"wide layout needs the labels CSV: pass --labels PATH (train.csv keyed by image_id){hint}")
    return candidates[0]


def _write_splits(
    source: Source, opts: Options, shape: tuple[int, int, int], counts: dict[str, int],
    where: Callable[[str], Path], workers: int | None,
) -> dict:  # fmt: skip
    """Every split written into its directory, ``where(split)`` (``<staging>/<split>/<part>``)."""
    splits: dict[int, SplitLayout] = {}
    for i, split in enumerate(SPLITS):
        if counts[split]:
            directory = where(split)
            directory.mkdir(parents=True)
            splits[i] = SplitLayout(str(directory), counts[split], shape, opts.shard_size)
            splits[i].create()
    plan = Plan(source.layout, opts, shape, source.image_column, splits)
    tasks, start = [], 0
    before = np.zeros(len(SPLITS), dtype=np.int64)  # images of each split in earlier row groups
    for path in source.files:
        metadata = open_parquet(path).metadata
        first_row = 0
        for group in range(metadata.num_row_groups):
            rows = metadata.row_group(group).num_rows
            assignment = source.split[start : start + rows]
            tasks.append(Task(str(path), group, first_row, rows, assignment, tuple(int(b) for b in before)))
            first_row += rows
            before += np.bincount(assignment, minlength=len(SPLITS))
            start += rows
    if start != len(source.labels):
        raise InputError(f"the files hold {start} images but {len(source.labels)} labels were read")
    open_parquet.cache_clear()  # the scan's open files; a worker opens its file for its row group only
    workers = max(1, min(workers or default_workers(), len(tasks)))
    print(f"preprocess: {len(tasks)} row group(s) of {len(source.files)} file(s) by {workers} worker(s)", flush=True)
    sums, peak = convert_all(plan, [t for t in tasks if t.rows], workers)
    print(f"preprocess: peak memory {peak / 1024:.0f} MB per worker", flush=True)

    out = {}
    for i, split in enumerate(SPLITS):
        if not counts[split]:
            continue
        mask = source.split == i
        directory = where(split)
        for j, head in enumerate(source.heads):
            np.save(directory / f"labels_{head}.npy", source.labels[mask, j])
        ids = np.asarray(source.ids, dtype=object)[mask]
        (directory / IDS_FILE).write_text("".join(f"{i}\n" for i in ids))
        out[split] = {"size": counts[split], "shards": splits[i].names()}
    first = min(splits) if splits else 0
    mean, std = statistics(sums[first], counts[SPLITS[first]]) if splits else ([], [])
    return {
        "format": "uint8-nchw-shards/v1",
        "shape": list(shape),
        "heads": [
            {"name": h, "num_classes": source.num_classes[h], "class_names": source.class_names[h]}
            for h in source.heads
        ],
        "splits": out,
        "normalization": {"mean": mean, "std": std},
        "pixel_sums": {SPLITS[i]: sums[i].tolist() for i in splits},  # what parts are merged by
    }



def output_root(args: argparse.Namespace) -> Path:
    """Where staging happens and the overall manifest goes: --output, else beside the split directories."""
    if args.output:
        return Path(args.output)
    given = [Path(getattr(args, s)).resolve().parent for s in SPLITS if getattr(args, s)]
    return Path(os.path.commonpath(given)) if given else Path("/opt/ml/processing/output")


def _publish(staging: Path, output: Path, targets: dict[str, Path]) -> None:
    """Move finished files into place: each split into its directory (SageMaker creates them, one per
    processing output, so they may exist already), the overall manifest into ``output``."""
    for item in sorted(staging.iterdir()):
        if item.is_dir():
            target = targets[item.name]
            target.mkdir(parents=True, exist_ok=True)
            for f in sorted(item.iterdir()):
                shutil.move(str(f), str(target / f.name))
        else:
            shutil.move(str(item), str(output / item.name))


# --------------------------------------------------------------------------- command line


def parse_num_classes(text: str) -> dict[str, int]:
    out = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        if not value.isdigit():
            raise argparse.ArgumentTypeError(f"expected HEAD=N[,HEAD=N...], got '{part}'")
        out[name.strip()] = int(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--input", nargs="+", default=["/opt/ml/processing/input/data"], help="parquet files or directories")
    p.add_argument("--labels", help="labels CSV for the wide layout (default: train.csv beside the parquet files)")
    p.add_argument(
        "--output",
        help="directory receiving train/ validation/ test/ (default: the parent of the "
        "--train/--validation/--test directories, else /opt/ml/processing/output)",
    )
    p.add_argument("--train", help="directory for the train split (default: OUTPUT/train)")
    p.add_argument("--validation", help="directory for the validation split (default: OUTPUT/validation)")
    p.add_argument("--test", help="directory for the test split (default: OUTPUT/test)")
    p.add_argument("--layout", choices=["auto", "wide", "encoded"], default="auto")
    p.add_argument(
        "--label-columns",
        type=lambda s: [c for c in s.split(",") if c],
        default=None,
        help="comma-separated label columns (default: every integer column)",
    )
    p.add_argument(
        "--num-classes",
        type=parse_num_classes,
        default={},
        help="class counts per head, e.g. grapheme_root=168,vowel_diacritic=11 (default: from the data)",
    )
    p.add_argument("--image-column", help="encoded layout: the image column (default: detected)")
    p.add_argument("--height", type=int, default=137, help="wide layout: image height (default 137)")
    p.add_argument("--width", type=int, default=236, help="wide layout: image width (default 236)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="resize images to H x W")
    p.add_argument("--channels", type=int, choices=[1, 3], help="output channels (default: from the data)")
    p.add_argument("--invert", type=_bool, nargs="?", const=True, default=False, help="invert pixel values")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--block-columns", type=int, default=4096, help="wide layout: columns read at a time")
    p.add_argument("--shard-size", type=int, default=50_000, help="images per output shard")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes converting row groups (default: every core this process may use)",
    )
    p.add_argument(
        "--resource-config",
        help="SageMaker's resourceconfig.json naming this instance and all of them (default: /opt/ml/config/, "
        "found beside the input mounts); with several instances each converts its share into <split>/<host>/",
    )
    return p


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got '{text}'")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        manifest = run(args)
    except InputError as exc:
        print(f"preprocess: error: {exc}", file=sys.stderr)
        return 2
    except (pa.ArrowException, OSError) as exc:  # a file damaged past its footer, a full disk, ...
        print(f"preprocess: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if not manifest["splits"]:
        return 0  # an instance whose share was empty
    sizes = ", ".join(f"{k}={v['size']}" for k, v in manifest["splits"].items())
    print(f"preprocess: wrote {sizes} images of shape {manifest['shape']} to {output_root(args)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
