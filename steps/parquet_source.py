"""The input of `preprocess.py`: parquet files of images in one of two layouts, read one row group (and, for
wide files, one block of columns) at a time, so that peak memory is bounded by the row-group and block sizes,
not by the dataset; their labels and image ids; and the split each image goes to.

* ``wide``: ``image_id`` plus one uint8 column per pixel, ``"0".."H*W-1"``, exactly as the Bengali.AI
  ``train_image_data_K.parquet`` files ship; labels come from a CSV keyed by ``image_id``.
* ``encoded``: one column of PNG/JPEG bytes (or a struct with a ``bytes`` field) and the label columns
  in the same table.

Every problem is an `InputError` naming the file and the row, row group or column.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
from collections.abc import Sequence
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
