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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def list_parquet_files(inputs: Sequence[str], allow_none: bool = False) -> list[Path]:
    """The parquet files under the inputs, sorted; ``allow_none``: an instance's share may be empty."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.parquet") if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or directory")
    if not files and not allow_none:
        raise InputError(f"no .parquet files found in {', '.join(inputs)}")
    return files


@functools.lru_cache(maxsize=16)
def open_parquet(path: Path) -> pq.ParquetFile:
    """A parquet file, opened once per process: the Bengali files' footers describe 32,333 columns each,
    and parsing one costs ~0.1 s."""
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


def hashed_split(ids: Sequence[str], val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Assign each image to train (0), validation (1) or test (2) by a stable hash of its id and the seed.

    The verdict for an image depends on nothing else: not on the files' order, their row groups, how many
    instances share the work or which one reads it. So any number of instances writes the same split,
    and no image is in two splits or none.
    """
    u = np.fromiter(
        (int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest(), "big") for i in ids),
        dtype=np.uint64,
        count=len(ids),
    ) / float(2**64)
    split = np.zeros(len(ids), dtype=np.int8)
    split[u < val_fraction] = 1
    split[(u >= val_fraction) & (u < val_fraction + test_fraction)] = 2
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


def read_wide_group(path: Path, group: int, opts: Options, first_row: int) -> np.ndarray:
    """One row group of a wide file as an (H*W, rows) uint8 array, pixel-major, read a block of columns at
    a time. Parquet stores each pixel column contiguously, so each column is copied in without a transpose.
    ``first_row``: the group's first row in the file, for messages."""
    h, w = opts.wide_shape
    pixels = [str(i) for i in range(h * w)]
    blocks = [pixels[i : i + opts.block_columns] for i in range(0, len(pixels), opts.block_columns)]
    pf = open_parquet.__wrapped__(path)  # not kept open: a worker's memory is its row group's
    out = np.empty((h * w, pf.metadata.row_group(group).num_rows), dtype=np.uint8)
    col = 0
    for block in blocks:
        table = read_row_group(pf, path, group, block)
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
    return out



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


def first_image_shape(source: Source, channels: int | None) -> tuple[int, int, int]:
    """(C, h, w) of the first image: C from its mode unless given (grey modes are 1 channel, others 3)."""
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
            found = 1 if img.mode in ("L", "1", "I", "I;16", "F", "LA") else 3
            return channels or found, img.height, img.width
    except Exception as exc:  # PIL raises many types for data that is no image
        raise InputError(f"{source.files[0]}: row 0: cannot decode the image ({type(exc).__name__}: {exc})") from None



def read_encoded_group(path: Path, group: int, image_column: str, channels: int, first_row: int) -> list[np.ndarray]:
    """One row group of an encoded file as (C, h, w) images, in order (``first_row``: its first row in the
    file, for messages)."""
    pf = open_parquet.__wrapped__(path)
    column = read_row_group(pf, path, group, [image_column]).column(0)
    if pa.types.is_struct(column.type):
        column = pa.chunked_array([c.field("bytes") for c in column.chunks])
    images = []
    for i, value in enumerate(column.to_pylist()):
        if value is None:
            raise InputError(f"{path}: image is null at row {first_row + i}")
        try:
            images.append(decode_image(value, channels))
        except Exception as exc:  # PIL raises many types for corrupt data
            raise InputError(f"{path}: row {first_row + i}: cannot decode image ({exc})") from exc
    return images



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


@dataclass(frozen=True)
class SplitLayout:
    """Where one split's images go: fixed-size ``.npy`` shards, made at full size before any image is
    converted, so that workers write their rows in place, in any order, each at its known position."""

    directory: str
    total: int
    shape: tuple[int, int, int]
    shard_size: int

    def names(self) -> list[str]:
        return [f"images_{j:05d}.npy" for j in range(-(-self.total // self.shard_size))]

    def create(self) -> None:
        for j, name in enumerate(self.names()):
            n = min(self.shard_size, self.total - j * self.shard_size)
            np.lib.format.open_memmap(Path(self.directory) / name, "w+", np.uint8, (n, *self.shape))

    def write(self, position: int, images: np.ndarray) -> None:
        """``images`` at rows ``position..`` of the split, across shard boundaries."""
        while len(images):
            j, row = divmod(position, self.shard_size)
            shard = _mapped(str(Path(self.directory) / f"images_{j:05d}.npy"))
            take = min(len(images), len(shard) - row)
            shard[row : row + take] = images[:take]
            images, position = images[take:], position + take


_MAPPED: dict[str, np.ndarray] = {}  # the shards this process has open during one task


def _mapped(path: str) -> np.ndarray:
    if path not in _MAPPED:
        _MAPPED[path] = np.load(path, mmap_mode="r+")
    return _MAPPED[path]


@dataclass(frozen=True)
class Plan:
    """What every worker needs besides its row group."""

    layout: str
    opts: Options
    shape: tuple[int, int, int]  # (C, H, W) of the output images
    image_column: str | None
    splits: dict[int, SplitLayout]  # by split index, non-empty splits only


@dataclass(frozen=True)
class Task:
    """One row group: its rows' splits and where each split's first image of it goes."""

    path: str
    group: int
    first_row: int  # the group's first row in its file (for messages)
    rows: int
    assignment: np.ndarray  # (rows,) split index per row
    positions: tuple[int, ...]  # per split index: the split's row this group's first image of it takes


def convert(plan: Plan, task: Task) -> dict[str, Any]:
    """Read, convert and write one row group; its per-split pixel sums come back for the statistics."""
    opts, (c, h, w) = plan.opts, plan.shape
    sums = {i: np.zeros((2, c), dtype=np.float64) for i in plan.splits}
    positions = list(task.positions)

    def emit(batch: np.ndarray, assignment: np.ndarray) -> None:
        if opts.invert:
            batch = 255 - batch
        for i, layout in plan.splits.items():
            mine = batch[assignment == i]
            if len(mine):
                flat = mine.reshape(len(mine), c, -1)
                sums[i][0] += flat.sum(axis=2, dtype=np.uint64).sum(axis=0) / flat.shape[2]
                squares = np.square(flat, dtype=np.uint32).sum(axis=2, dtype=np.uint64)
                sums[i][1] += squares.sum(axis=0) / flat.shape[2]
                layout.write(positions[i], mine)
                positions[i] += len(mine)

    path = Path(task.path)
    if plan.layout == "wide":
        pixels = read_wide_group(path, task.group, opts, task.first_row)
        for lo in range(0, pixels.shape[1], opts.rows_per_chunk):
            chunk = wide_to_images(pixels[:, lo : lo + opts.rows_per_chunk], opts.wide_shape, opts.size)
            if c == 3:
                chunk = np.repeat(chunk, 3, axis=1)
            emit(chunk, task.assignment[lo : lo + len(chunk)])
    else:
        assert plan.image_column is not None
        images = read_encoded_group(path, task.group, plan.image_column, c, task.first_row)
        for k, img in enumerate(images):
            img = resize(img[None], opts.size)[0] if opts.size else img
            if img.shape != (c, h, w):
                raise InputError(
                    f"{path}: row {task.first_row + k}: image of shape {img.shape}, earlier ones {(c, h, w)}; "
                    "pass --size H W to resize all images to one size"
                )
            images[k] = img
        if images:
            emit(np.stack(images), task.assignment)
    import resource

    # the written pages stay in the page cache, not in this process: a worker's memory does not grow with
    # the output it has written
    for shard in _MAPPED.values():
        shard.flush()  # type: ignore[attr-defined]
    _MAPPED.clear()
    pa.default_memory_pool().release_unused()
    return {"rows": task.rows, "sums": sums, "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _limit_threads(threads: int) -> None:
    """In a worker: at most ``threads`` threads for Arrow (BLAS read its limit from the environment when
    the worker imported numpy)."""
    pa.set_cpu_count(threads)


def default_workers() -> int:
    """The cores this process may use (a container's CPU set, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def convert_all(plan: Plan, tasks: list[Task], workers: int) -> tuple[dict[int, np.ndarray], int]:
    """Every row group, by ``workers`` processes (in this one when 1); prints progress as groups finish.
    Returns the per-split pixel sums and the largest peak RSS (KB) of any process that converted."""
    total, done, t0 = sum(t.rows for t in tasks), 0, time.time()
    sums = {i: np.zeros((2, plan.shape[0]), dtype=np.float64) for i in plan.splits}
    peak = 0

    def finished(result: dict[str, Any]) -> None:
        nonlocal done, peak
        done += result["rows"]
        peak = max(peak, result["peak_rss_kb"])
        for i, s in result["sums"].items():
            sums[i] += s
        print(f"preprocess: {done}/{total} rows ({done / max(time.time() - t0, 1e-9):.0f} rows/s)", flush=True)

    if workers <= 1:
        for task in tasks:
            finished(convert(plan, task))
        return sums, peak
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    # each worker gets its share of the cores for its own threads (BLAS in the resampling, Arrow's decoding):
    # workers x default threads oversubscribe the cores, and BLAS threads spinning for a core cost 3-4x
    threads = max(1, default_workers() // workers)
    # spawned, not forked: a fork of a process whose Arrow threads are running can deadlock
    context = multiprocessing.get_context("spawn")
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, str(threads)))  # inherited by the workers as they spawn
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_limit_threads, initargs=(threads,)) as pool:
            pending = {pool.submit(convert, plan, task) for task in tasks}
            while pending:
                done_now, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done_now:
                    if future.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise future.exception()  # type: ignore[misc]
                    finished(future.result())
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return sums, peak


def statistics(sums: np.ndarray, n: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the pixels, in [0, 1], from the sums of image means and mean squares."""
    mean = sums[0] / max(n, 1)
    std = np.sqrt(np.maximum(sums[1] / max(n, 1) - mean**2, 0.0))
    return (mean / 255).round(6).tolist(), (std / 255).round(6).tolist()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- instances


def config_dir(inputs: Sequence[str]) -> Path:
    """SageMaker's ``/opt/ml/config`` beside the input mounts (so a job run under a local sandbox that moved
    ``/opt/ml`` finds its own), else ``/opt/ml/config``."""
    for item in inputs:
        text = str(Path(item).absolute())
        if "/opt/ml/processing/" in text:
            return Path(text.split("/opt/ml/processing/", 1)[0] + "/opt/ml/config")
    return Path("/opt/ml/config")


def this_host(config: Path) -> tuple[str, list[str]]:
    """(current host, all hosts) from SageMaker's resource config; one host when there is none."""
    try:
        resource = json.loads((config / "resourceconfig.json").read_text())
        return str(resource["current_host"]), [str(h) for h in resource["hosts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return "algo-1", ["algo-1"]


def sharded_by_sagemaker(config: Path, inputs: Sequence[str]) -> bool:
    """Whether SageMaker already gave this instance only its share of the input (``ShardedByS3Key``)."""
    try:
        job = json.loads((config / "processingjobconfig.json").read_text())
    except (OSError, ValueError):
        return False
    for item in job.get("ProcessingInputs", []):
        s3 = item.get("S3Input") or {}
        local = str(s3.get("LocalPath", "")).rstrip("/")
        mine = local and any(str(Path(i).absolute()).rstrip("/").endswith(local) for i in inputs)
        if mine and s3.get("S3DataDistributionType") == "ShardedByS3Key":
            return True
    return False


def my_share(files: list[Path], inputs: Sequence[str], host: str, hosts: list[str], config: Path) -> list[Path]:
    """This instance's files: all it received when SageMaker sharded the input by key; else (every instance
    sees every file) every N-th file by sorted position, so the instances together read each file once."""
    if len(hosts) <= 1 or sharded_by_sagemaker(config, inputs):
        return files
    index = hosts.index(host) if host in hosts else 0
    return [f for k, f in enumerate(files) if k % len(hosts) == index]


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
    config = Path(args.resource_config).parent if args.resource_config else config_dir(args.input)
    host, hosts = this_host(config)
    several = len(hosts) > 1
    if several:
        received = list_parquet_files(args.input, allow_none=True)
        files = my_share(received, args.input, host, hosts, config)
        print(f"preprocess: instance {host} of {len(hosts)}: {len(files)} of {len(received)} file(s)", flush=True)
        if not files:
            print(f"preprocess: {host} has no files to convert (fewer files than instances); nothing to write")
            return {"splits": {}, "host": host}
    else:
        files = list_parquet_files(args.input)
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
            manifest = _write_splits(source, opts, shape, counts, staging, part, args.workers)
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
    source: Source, opts: Options, shape: tuple[int, int, int], counts: dict[str, int], staging: Path, part: Path,
    workers: int | None,
) -> dict:  # fmt: skip
    splits: dict[int, SplitLayout] = {}
    for i, split in enumerate(SPLITS):
        if counts[split]:
            directory = staging / split / part
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
        for j, head in enumerate(source.heads):
            np.save(staging / split / part / f"labels_{head}.npy", source.labels[mask, j])
        ids = np.asarray(source.ids, dtype=object)[mask]
        (staging / split / part / IDS_FILE).write_text("".join(f"{i}\n" for i in ids))
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
