"""Parquet images -> uint8 tensor shards, the input of `train.py` and `evaluate.py`.

Two input layouts, detected from the columns (or named with ``--layout``):

* ``wide``: ``image_id`` plus one uint8 column per pixel, ``"0".."H*W-1"``, exactly as the Bengali.AI
  ``train_image_data_K.parquet`` files ship; labels come from a CSV keyed by ``image_id``.
* ``encoded``: one column of PNG/JPEG bytes (or a struct with a ``bytes`` field) and the label columns
  in the same table.

Every label column is a head. Output, under ``--output``: one directory per split (``train``,
``validation``, ``test``), each with ``images_NNNNN.npy`` shards of shape (N, C, H, W), ``labels_<head>.npy``
(int64), ``image_ids.txt`` (the source's ``image_id`` per image, else ``<file>:<row>``) and
``manifest.json``. Everything is written to a temporary directory first and moved into place only when
the whole run succeeded. Progress is printed as ``preprocess: <done>/<total> rows`` per row group.

Wide files are read one row group and one block of columns at a time (reading a wide file whole is
known to take over 15 GB for the Bengali data), encoded files one row group at a time, so peak memory
is bounded by the row-group and block sizes, not by the dataset.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

SPLITS = ("train", "validation", "test")
ID_COLUMN = "image_id"
IDS_FILE = "image_ids.txt"  # one image id per line, in the split's order (evaluation's predictions.csv keys)


class InputError(Exception):
    """Bad input data; the message names the file and the row or column."""


@dataclass(frozen=True)
class Options:
    size: tuple[int, int] | None  # (height, width) of the output; None keeps the source size
    channels: int | None  # 1 or 3; None: 1 for wide files, from the first image for encoded ones
    invert: bool
    val_fraction: float
    test_fraction: float
    seed: int
    wide_shape: tuple[int, int]  # (height, width) of a wide file's pixel columns
    block_columns: int
    shard_size: int
    rows_per_chunk: int = 512


@dataclass
class Source:
    """What the first pass learned about the input: files, layout, labels and the split."""

    files: list[Path]
    layout: str
    heads: list[str]
    labels: np.ndarray  # (N, heads) int64, in input order
    class_names: dict[str, list[str] | None]
    num_classes: dict[str, int]
    split: np.ndarray  # (N,) index into SPLITS
    image_column: str | None = None
    rows_per_file: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # one per row, in input order (written per split)


# --------------------------------------------------------------------------- reading the input


def list_parquet_files(inputs: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.parquet") if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or directory")
    if not files:
        raise InputError(f"no .parquet files found in {', '.join(inputs)}")
    return files


def open_parquet(path: Path) -> pq.ParquetFile:
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes)")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable parquet file ({exc})") from exc


def read_columns(pf: pq.ParquetFile, path: Path, columns: list[str]) -> pa.Table:
    try:
        return pf.read(columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: columns {columns[:3]} are unreadable ({type(exc).__name__}: {exc})") from None


def read_row_group(pf: pq.ParquetFile, path: Path, group: int, columns: list[str]) -> pa.Table:
    """One row group's columns; a damaged page is named by its file and row group."""
    try:
        return pf.read_row_group(group, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: row group {group} is unreadable ({type(exc).__name__}: {exc})") from None


def is_pixel_column(name: str) -> bool:
    return name.isdigit()


def image_column_of(schema: pa.Schema) -> str | None:
    for f in schema:
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
            return f.name
        if pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0:
            return f.name
    return None


def detect_layout(path: Path, schema: pa.Schema) -> str:
    names = schema.names
    if any(is_pixel_column(n) for n in names):
        return "wide"
    if image_column_of(schema) is not None:
        return "encoded"
    raise InputError(
        f"{path}: unknown layout: expected either pixel columns named '0'..'N-1' with '{ID_COLUMN}' (wide) "
        f"or one column of encoded image bytes (encoded); found columns {names[:8]}"
        + (" ..." if len(names) > 8 else "")
        + ". Name the layout with --layout if detection is wrong."
    )


def check_wide_schema(path: Path, schema: pa.Schema, shape: tuple[int, int]) -> list[str]:
    if ID_COLUMN not in schema.names:
        raise InputError(f"{path}: wide layout needs an '{ID_COLUMN}' column")
    pixels = [n for n in schema.names if is_pixel_column(n)]
    expected = shape[0] * shape[1]
    if len(pixels) != expected:
        raise InputError(
            f"{path}: {len(pixels)} pixel columns, expected {shape[0]}x{shape[1]}={expected}; "
            "set --height/--width to the images' size"
        )
    if pixels != [str(i) for i in range(expected)]:
        wrong = next(n for i, n in enumerate(pixels) if n != str(i))
        raise InputError(
            f"{path}: pixel columns must be '0'..'{expected - 1}' in order; column '{wrong}' is out of place"
        )
    for name in pixels:
        t = schema.field(name).type
        if not pa.types.is_integer(t):
            raise InputError(f"{path}: pixel column '{name}' has type {t}, expected uint8")
    return pixels


def _label_columns(table: pa.Table, requested: Sequence[str] | None, exclude: set[str], where: str) -> list[str]:
    if requested:
        missing = [c for c in requested if c not in table.column_names]
        if missing:
            raise InputError(f"{where}: label column(s) {missing} not found; columns are {table.column_names}")
        return list(requested)
    heads = [
        f.name
        for f in table.schema
        if f.name not in exclude and (pa.types.is_integer(f.type) or pa.types.is_dictionary(f.type))
    ]
    if not heads:
        raise InputError(f"{where}: no integer label columns found; name them with --label-columns")
    return heads


def _encode_labels(
    columns: dict[str, pa.ChunkedArray], heads: list[str], declared: dict[str, int], where: str
) -> tuple[np.ndarray, dict[str, list[str] | None], dict[str, int]]:
    """Labels as an (N, heads) int64 array; string labels become indices into their sorted names."""
    out: list[np.ndarray] = []
    names: dict[str, list[str] | None] = {}
    counts: dict[str, int] = {}
    for head in heads:
        col = columns[head]
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(f"{where}: label '{head}' is null at row {row}")
        if pa.types.is_integer(col.type):
            values = col.to_numpy().astype(np.int64)
            names[head] = None
            n_classes = declared.get(head, int(values.max()) + 1 if len(values) else 0)
        else:
            strings = np.asarray(col.cast(pa.string()).to_pylist(), dtype=object)
            classes = sorted(set(strings))
            index = {c: i for i, c in enumerate(classes)}
            values = np.fromiter((index[s] for s in strings), dtype=np.int64, count=len(strings))
            names[head] = classes
            n_classes = declared.get(head, len(classes))
        bad = np.flatnonzero((values < 0) | (values >= n_classes))
        if len(bad):
            raise InputError(
                f"{where}: label '{head}' = {values[bad[0]]} at row {int(bad[0])} is outside 0..{n_classes - 1}"
            )
        out.append(values)
        counts[head] = n_classes
    return np.stack(out, axis=1), names, counts


def read_labels_csv(path: Path) -> pa.Table:
    try:
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={ID_COLUMN: pa.string()}))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: cannot read the labels CSV ({exc})") from exc


def scan_wide(files: list[Path], labels_csv: Path, args: argparse.Namespace, opts: Options) -> Source:
    table = read_labels_csv(labels_csv)
    if ID_COLUMN not in table.column_names:
        raise InputError(f"{labels_csv}: no '{ID_COLUMN}' column; columns are {table.column_names}")
    row_of = {image_id: i for i, image_id in enumerate(table.column(ID_COLUMN).to_pylist())}
    order: list[np.ndarray] = []
    rows_per_file = []
    image_ids: list[str] = []
    for path in files:
        pf = open_parquet(path)
        check_wide_schema(path, pf.schema_arrow, opts.wide_shape)
        ids = read_columns(pf, path, [ID_COLUMN]).column(ID_COLUMN)
        if len(ids) == 0:
            raise InputError(f"{path}: the file has no rows")
        if ids.null_count:
            row = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(f"{path}: '{ID_COLUMN}' is null at row {row}")
        idx = np.empty(len(ids), dtype=np.int64)
        for r, image_id in enumerate(ids.to_pylist()):
            found = row_of.get(image_id)
            if found is None:
                raise InputError(f"{path}: row {r}: image_id '{image_id}' has no label in {labels_csv}")
            idx[r] = found
        order.append(idx)
        rows_per_file.append(len(ids))
        image_ids += [str(i) for i in ids.to_pylist()]
    heads = _label_columns(table, args.label_columns, {ID_COLUMN}, str(labels_csv))
    taken = table.take(pa.array(np.concatenate(order)))
    labels, names, counts = _encode_labels(
        {h: taken.column(h) for h in heads}, heads, args.num_classes, str(labels_csv)
    )
    return Source(files, "wide", heads, labels, names, counts, np.empty(0), None, rows_per_file, image_ids)


def scan_encoded(files: list[Path], args: argparse.Namespace) -> Source:
    parts: dict[str, list[pa.ChunkedArray]] = {}
    heads: list[str] = []
    image_column = args.image_column
    rows_per_file = []
    image_ids: list[str] = []
    for path in files:
        pf = open_parquet(path)
        schema = pf.schema_arrow
        image_column = image_column or image_column_of(schema)
        if image_column is None or image_column not in schema.names:
            raise InputError(f"{path}: no encoded image column (binary, or a struct with a 'bytes' field)")
        label_cols = [n for n in schema.names if n != image_column]
        table = read_columns(pf, path, label_cols)
        if table.num_rows == 0:
            raise InputError(f"{path}: the file has no rows")
        file_heads = _label_columns(table, args.label_columns, {image_column, ID_COLUMN}, str(path))
        if heads and file_heads != heads:
            raise InputError(f"{path}: label columns {file_heads} differ from the first file's {heads}")
        heads = file_heads
        for h in heads:
            parts.setdefault(h, []).append(table.column(h))
        rows_per_file.append(table.num_rows)
        if ID_COLUMN in table.column_names:
            image_ids += [str(i) for i in table.column(ID_COLUMN).to_pylist()]
        else:  # no id column: the file and row say which image it is
            image_ids += [f"{path.stem}:{row}" for row in range(table.num_rows)]
    columns = {h: pa.chunked_array([c for p in parts[h] for c in p.chunks]) for h in heads}
    labels, names, counts = _encode_labels(columns, heads, args.num_classes, str(files[0]))
    return Source(files, "encoded", heads, labels, names, counts, np.empty(0), image_column, rows_per_file, image_ids)


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Assign each row to train (0), validation (1) or test (2), stratified over the joint label of all heads.

    Rows are ordered by label combination (combinations in random order, rows shuffled within each) and
    walk a golden-ratio low-discrepancy sequence: any run of consecutive rows, so every combination and
    the whole set, is split in the requested proportions to within a few rows, rare combinations included.
    """
    rng = np.random.default_rng(seed)
    _, group = np.unique(labels, axis=0, return_inverse=True)
    group = group.reshape(-1)
    group_rank = rng.permutation(group.max() + 1 if len(group) else 0)[group]
    order = np.lexsort((rng.random(len(labels)), group_rank))
    q = np.empty(len(labels))
    q[order] = (np.arange(len(labels)) * 0.6180339887498949 + rng.random()) % 1.0
    split = np.zeros(len(labels), dtype=np.int8)
    split[q < val_fraction] = 1
    split[(q >= val_fraction) & (q < val_fraction + test_fraction)] = 2
    return split


def column_values(column: pa.ChunkedArray) -> np.ndarray:
    """A pixel column as uint8 values. A single null-free uint8 chunk is viewed in place: ~50x faster
    than ``to_numpy``, which matters at 32,332 columns per row group."""
    if column.num_chunks == 1 and pa.types.is_uint8(column.type):
        chunk = column.chunk(0)
        return np.frombuffer(chunk.buffers()[1], dtype=np.uint8, count=len(chunk), offset=chunk.offset)
    values = column.to_numpy()
    if len(values) and (values.min() < 0 or values.max() > 255):
        raise ValueError(f"values from {values.min()} to {values.max()}, outside 0..255 (type {column.type})")
    return values.astype(np.uint8)


def iter_wide(source: Source, opts: Options) -> Iterator[np.ndarray]:
    """Yield one (H*W, rows) uint8 array per row group, pixel-major, in input order.

    Parquet stores each pixel column contiguously, so pixel-major is the layout the columns arrive
    in: each block of columns is copied in without a transpose.
    """
    h, w = opts.wide_shape
    pixels = [str(i) for i in range(h * w)]
    blocks = [pixels[i : i + opts.block_columns] for i in range(0, len(pixels), opts.block_columns)]
    for path in source.files:
        pf = open_parquet(path)
        first_row = 0
        for rg in range(pf.num_row_groups):
            n_rows = pf.metadata.row_group(rg).num_rows
            out = np.empty((h * w, n_rows), dtype=np.uint8)
            col = 0
            for block in blocks:
                table = read_row_group(pf, path, rg, block)
                if any(column.null_count for column in table.columns):
                    name, column = next((n, c) for n, c in zip(block, table.columns, strict=True) if c.null_count)
                    row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
                    raise InputError(f"{path}: null pixel in column '{name}' at row {first_row + row}")
                for name, column in zip(block, table.columns, strict=True):
                    try:
                        out[col] = column_values(column)
                    except ValueError as exc:
                        raise InputError(f"{path}: pixel column '{name}' in rows {first_row}..: {exc}") from None
                    col += 1
                del table
            first_row += n_rows
            if n_rows:
                yield out


def wide_to_images(pixels: np.ndarray, shape: tuple[int, int], size: tuple[int, int] | None) -> np.ndarray:
    """(h*w, n) pixel-major uint8 -> (n, 1, H, W) uint8, resampled on the way.

    With the images along the last axis each resampling pass is one matrix product over the whole
    chunk, and only the (smaller) output is transposed back to image-major.
    """
    h, w = shape
    n = pixels.shape[1]
    if size is None or size == shape:
        return np.ascontiguousarray(pixels.T).reshape(n, 1, h, w)
    rows, cols = resample_matrix(h, size[0]), resample_matrix(w, size[1])
    x = pixels.astype(np.float32).reshape(h, w * n)
    y = (rows @ x).reshape(size[0], w, n)  # along the height, all images at once
    z = np.matmul(cols, y)  # along the width: (H, W, n)
    np.clip(np.rint(z, out=z), 0, 255, out=z)
    return np.ascontiguousarray(z.transpose(2, 0, 1)).astype(np.uint8)[:, None]


def decode_image(data: bytes, channels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        arr = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def first_image_channels(source: Source) -> int:
    from PIL import Image

    pf = open_parquet(source.files[0])
    col = pf.read_row_group(0, columns=[source.image_column]).column(0)
    if len(col) == 0:
        raise InputError(f"{source.files[0]}: the first row group has no rows")
    raw = col[0].as_py()
    data = raw["bytes"] if isinstance(raw, dict) else raw
    if not isinstance(data, bytes | bytearray):
        raise InputError(f"{source.files[0]}: row 0: column '{source.image_column}' holds no image bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:
            return 1 if img.mode in ("L", "1", "I", "I;16", "F", "LA") else 3
    except Exception as exc:  # PIL raises many types for data that is no image
        raise InputError(f"{source.files[0]}: row 0: cannot decode the image ({type(exc).__name__}: {exc})") from None


def iter_encoded(source: Source, channels: int) -> Iterator[list[np.ndarray]]:
    """Yield lists of (C, h, w) images in input order, one row group at a time."""
    assert source.image_column is not None
    row = 0
    for path in source.files:
        pf = open_parquet(path)
        for rg in range(pf.num_row_groups):
            column = read_row_group(pf, path, rg, [source.image_column]).column(0)
            if pa.types.is_struct(column.type):
                column = pa.chunked_array([c.field("bytes") for c in column.chunks])
            images = []
            for i, value in enumerate(column.to_pylist()):
                if value is None:
                    raise InputError(f"{path}: image is null at row {row + i}")
                try:
                    images.append(decode_image(value, channels))
                except Exception as exc:  # PIL raises many types for corrupt data
                    raise InputError(f"{path}: row {row + i}: cannot decode image ({exc})") from exc
            row += len(images)
            yield images


# --------------------------------------------------------------------------- transforming and writing


@functools.lru_cache(maxsize=8)
def resample_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) weights of antialiased bilinear resampling, as PIL and torch compute them.

    A triangle filter whose support widens with the reduction factor; rows sum to 1.
    """
    scale = size_in / size_out
    support = max(scale, 1.0)
    weights = np.zeros((size_out, size_in), dtype=np.float64)
    for i in range(size_out):
        center = (i + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), size_in)
        x = (np.arange(lo, hi) - center + 0.5) / support
        w = np.clip(1 - np.abs(x), 0, None)
        weights[i, lo:hi] = w / w.sum()
    return weights.astype(np.float32)


def resize(batch: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """(N, C, h, w) uint8 -> (N, C, H, W) uint8 with antialiased bilinear resampling.

    Resampling is separable: two matrix products per image (BLAS), no per-pixel Python, no torch
    (importing torch alone costs ~500 MB of resident memory).
    """
    if size is None or tuple(batch.shape[-2:]) == size:
        return batch
    n, c, h, w = batch.shape
    rows, cols = resample_matrix(h, size[0]), resample_matrix(w, size[1])
    out = np.empty((n, c, *size), dtype=np.uint8)
    for lo in range(0, n, 256):  # bounded float32 temporaries
        x = batch[lo : lo + 256].astype(np.float32)
        y = np.matmul(rows, np.matmul(x, cols.T))
        np.clip(np.rint(y, out=y), 0, 255, out=y)
        out[lo : lo + 256] = y
    return out


class ShardWriter:
    """Appends images of one split to fixed-size ``.npy`` shards, streaming to disk."""

    def __init__(self, directory: Path, total: int, shape: tuple[int, int, int], shard_size: int):
        self.directory, self.total, self.shape, self.shard_size = directory, total, shape, shard_size
        self.written = 0
        self.files: list[str] = []
        self._fh: io.BufferedWriter | None = None
        self._left = 0
        self.sum = np.zeros(shape[0], dtype=np.float64)
        self.sumsq = np.zeros(shape[0], dtype=np.float64)

    def _open_next(self) -> None:
        n = min(self.shard_size, self.total - self.written)
        name = f"images_{len(self.files):05d}.npy"
        self.files.append(name)
        self._fh = open(self.directory / name, "wb")  # noqa: SIM115 - closed when the shard is full
        header = {"descr": "|u1", "fortran_order": False, "shape": (n, *self.shape)}
        np.lib.format.write_array_header_2_0(self._fh, header)
        self._left = n

    def write(self, images: np.ndarray) -> None:
        if len(images) == 0:
            return
        flat = images.reshape(len(images), self.shape[0], -1).astype(np.float64)
        self.sum += flat.mean(axis=2).sum(axis=0)
        self.sumsq += (flat**2).mean(axis=2).sum(axis=0)
        while len(images):
            if self._left == 0:
                if self._fh:
                    self._fh.close()
                self._open_next()
            assert self._fh is not None
            take = images[: self._left]
            self._fh.write(np.ascontiguousarray(take).tobytes())
            self._left -= len(take)
            self.written += len(take)
            images = images[len(take) :]

    def close(self) -> None:
        if self._fh:
            self._fh.close()
        if self.written != self.total:
            raise RuntimeError(f"wrote {self.written} images, expected {self.total}")

    def stats(self) -> tuple[list[float], list[float]]:
        n = max(self.written, 1)
        mean = self.sum / n
        std = np.sqrt(np.maximum(self.sumsq / n - mean**2, 0.0))
        return (mean / 255).round(6).tolist(), (std / 255).round(6).tolist()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run(args: argparse.Namespace) -> dict:
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
    files = list_parquet_files(args.input)
    layout = args.layout
    if layout == "auto":
        layouts = {detect_layout(p, open_parquet(p).schema_arrow) for p in files}
        if len(layouts) > 1:
            raise InputError(f"the input mixes layouts {sorted(layouts)}; give one layout per run")
        layout = layouts.pop()

    if layout == "wide":
        labels_csv = Path(args.labels) if args.labels else None
        if labels_csv is None:
            candidates = sorted({p.parent / "train.csv" for p in files if (p.parent / "train.csv").exists()})
            if len(candidates) != 1:
                raise InputError("wide layout needs the labels CSV: pass --labels PATH (train.csv keyed by image_id)")
            labels_csv = candidates[0]
        source = scan_wide(files, labels_csv, args, opts)
        channels = opts.channels or 1
        label_files = [labels_csv]
    else:
        source = scan_encoded(files, args)
        channels = opts.channels or first_image_channels(source)
        label_files = []

    source.split = stratified_split(source.labels, opts.val_fraction, opts.test_fraction, opts.seed)
    counts = {s: int((source.split == i).sum()) for i, s in enumerate(SPLITS)}
    if counts["train"] == 0:
        raise InputError("the train split is empty: lower --val-fraction/--test-fraction or add data")

    output = output_root(args)
    output.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".preprocess-", dir=output))
    try:
        manifest = _write_splits(source, opts, channels, counts, staging)
        manifest["sources"] = [
            {"path": p.name, "sha256": sha256(p), "rows": n}
            for p, n in zip(source.files, source.rows_per_file, strict=True)
        ] + [{"path": p.name, "sha256": sha256(p)} for p in label_files]
        manifest["options"] = {
            "layout": source.layout,
            "size": list(opts.size) if opts.size else None,
            "channels": channels,
            "invert": opts.invert,
            "val_fraction": opts.val_fraction,
            "test_fraction": opts.test_fraction,
            "seed": opts.seed,
        }
        text = json.dumps(manifest, indent=2, sort_keys=True)
        for split in SPLITS:
            if counts[split]:
                (staging / split / "manifest.json").write_text(text)
        (staging / "manifest.json").write_text(text)
        _publish(staging, output, {s: Path(getattr(args, s)) if getattr(args, s) else output / s for s in SPLITS})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_splits(source: Source, opts: Options, channels: int, counts: dict[str, int], staging: Path) -> dict:
    writers: dict[int, ShardWriter] = {}
    shape: tuple[int, int, int] | None = None

    def emit(batch: np.ndarray, start: int) -> None:
        nonlocal shape
        if opts.invert:
            batch = 255 - batch
        batch = resize(batch, opts.size)
        if shape is None:
            shape = tuple(batch.shape[1:])  # type: ignore[assignment]
            for i, split in enumerate(SPLITS):
                if counts[split]:
                    (staging / split).mkdir()
                    writers[i] = ShardWriter(staging / split, counts[split], shape, opts.shard_size)  # type: ignore[arg-type]
        elif tuple(batch.shape[1:]) != shape:
            raise InputError(
                f"image at row {start} has shape {tuple(batch.shape[1:])}, earlier ones {shape}; "
                "pass --size H W to resize all images to one size"
            )
        assignment = source.split[start : start + len(batch)]
        for i, writer in writers.items():
            writer.write(batch[assignment == i])

    start = 0
    t0 = time.time()
    if source.layout == "wide":
        for pixels in iter_wide(source, opts):
            for lo in range(0, pixels.shape[1], opts.rows_per_chunk):
                chunk = wide_to_images(pixels[:, lo : lo + opts.rows_per_chunk], opts.wide_shape, opts.size)
                if channels == 3:
                    chunk = np.repeat(chunk, 3, axis=1)
                emit(chunk, start)
                start += len(chunk)
            rate = start / (time.time() - t0)
            print(f"preprocess: {start}/{len(source.labels)} rows ({rate:.0f} rows/s)", flush=True)
    else:
        for images in iter_encoded(source, channels):
            by_shape: list[np.ndarray] = []
            for img in images:
                by_shape.append(resize(img[None], opts.size)[0] if opts.size else img)
            if len({im.shape for im in by_shape}) > 1:
                raise InputError(
                    f"{source.files[0]}: images near row {start} differ in size; pass --size H W to resize them"
                )
            # images were resized one by one (their sizes may differ); emit() finds them at size already
            batch = np.stack(by_shape)
            emit(batch, start)
            start += len(batch)
            rate = start / (time.time() - t0)
            print(f"preprocess: {start}/{len(source.labels)} rows ({rate:.0f} rows/s)", flush=True)
    if start != len(source.labels):
        raise InputError(f"read {start} images but found {len(source.labels)} labels")
    for w in writers.values():
        w.close()

    splits = {}
    for i, split in enumerate(SPLITS):
        if not counts[split]:
            continue
        mask = source.split == i
        for j, head in enumerate(source.heads):
            np.save(staging / split / f"labels_{head}.npy", source.labels[mask, j])
        ids = np.asarray(source.ids, dtype=object)[mask]
        (staging / split / IDS_FILE).write_text("".join(f"{i}\n" for i in ids))
        splits[split] = {"size": counts[split], "shards": writers[i].files}
    mean, std = writers[0].stats()
    assert shape is not None
    return {
        "format": "uint8-nchw-shards/v1",
        "shape": list(shape),
        "heads": [
            {"name": h, "num_classes": source.num_classes[h], "class_names": source.class_names[h]}
            for h in source.heads
        ],
        "splits": splits,
        "normalization": {"mean": mean, "std": std},
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
    sizes = ", ".join(f"{k}={v['size']}" for k, v in manifest["splits"].items())
    print(f"preprocess: wrote {sizes} images of shape {manifest['shape']} to {output_root(args)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
