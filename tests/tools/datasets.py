"""Example datasets in the layouts `steps/preprocess.py` reads (`make data`: ``python -m tests.tools.datasets``).

* Bengali layout (wide): ``train_image_data_K.parquet`` with ``image_id`` and 32,332 uint8 pixel columns
  ``"0".."32331"`` (137x236, dark ink on a light background), labels in ``train.csv``. The glyphs are
  synthetic but learnable: each grapheme root is a fixed set of strokes, each vowel diacritic a mark
  above it, each consonant diacritic a mark below it, all with random jitter and noise.
* Digits (encoded): scikit-learn's handwritten digits (a real dataset the package ships) as PNG bytes
  in an ``image`` struct column (``{bytes, path}``, as public parquet image datasets store them) with an
  integer ``label`` column.

Nothing is downloaded.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

BENGALI_HEIGHT, BENGALI_WIDTH = 137, 236
BENGALI_HEADS = {"grapheme_root": 168, "vowel_diacritic": 11, "consonant_diacritic": 7}


def _root_strokes(root: int) -> list[tuple[int, int, int, int]]:
    """Three strokes on a 6x6 grid in the glyph's central box, fixed per class."""
    rng = np.random.default_rng(10_000 + root)
    points = rng.integers(0, 6, size=(3, 4))
    return [(int(a), int(b), int(c), int(d)) for a, b, c, d in points]


_ROOT_STROKES = [_root_strokes(r) for r in range(BENGALI_HEADS["grapheme_root"])]


def render_glyph(root: int, vowel: int, consonant: int, rng: np.random.Generator) -> np.ndarray:
    """One 137x236 uint8 image: dark strokes on a light, slightly noisy background."""
    img = Image.new("L", (BENGALI_WIDTH, BENGALI_HEIGHT), 250)
    draw = ImageDraw.Draw(img)
    dx, dy = (int(v) for v in rng.integers(-8, 9, size=2))
    ink = int(rng.integers(0, 40))
    width = int(rng.integers(5, 9))
    # root: strokes between grid points of a 96x66 box in the middle
    x0, y0, step_x, step_y = 70 + dx, 36 + dy, 19, 13
    for gx1, gy1, gx2, gy2 in _ROOT_STROKES[root]:
        p1 = (x0 + gx1 * step_x, y0 + gy1 * step_y)
        p2 = (x0 + gx2 * step_x + 4, y0 + gy2 * step_y + 4)
        draw.line([p1, p2], fill=ink, width=width)
    # vowel diacritic: a bar above, its position and length encode the class
    if vowel:
        vx = 40 + 15 * vowel + dx
        draw.line([(vx, 14 + dy // 2), (vx + 10 + 2 * (vowel % 3), 14 + dy // 2)], fill=ink, width=width)
    # consonant diacritic: a ring below, its position encodes the class
    if consonant:
        cx = 45 + 25 * consonant + dx
        cy = 118 + dy // 2
        draw.ellipse([cx - 8, cy - 8, cx + 8, cy + 8], outline=ink, width=max(3, width - 2))
    arr = np.asarray(img, dtype=np.int16)
    arr = arr + rng.integers(-12, 13, size=arr.shape, dtype=np.int16)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _bengali_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.stack([rng.integers(0, k, size=n) for k in BENGALI_HEADS.values()], axis=1)


def _wide_batches(labels: np.ndarray, ids: list[str], rows_per_group: int, seed: int) -> Iterator[pa.Table]:
    n_pixels = BENGALI_HEIGHT * BENGALI_WIDTH
    names = ["image_id"] + [str(i) for i in range(n_pixels)]
    for start in range(0, len(labels), rows_per_group):
        stop = min(start + rows_per_group, len(labels))
        rng = np.random.default_rng([seed, start])
        block = np.empty((stop - start, n_pixels), dtype=np.uint8)
        for i, (r, v, c) in enumerate(labels[start:stop]):
            block[i] = render_glyph(int(r), int(v), int(c), rng).reshape(-1)
        columns_major = np.ascontiguousarray(block.T)
        arrays = [pa.array(ids[start:stop], type=pa.string())]
        arrays += [pa.array(columns_major[j], type=pa.uint8()) for j in range(n_pixels)]
        yield pa.Table.from_arrays(arrays, names=names)


def write_bengali(
    out_dir: Path,
    n_images: int = 2000,
    n_files: int = 1,
    rows_per_group: int = 5000,
    seed: int = 0,
) -> list[Path]:
    """Write ``train_image_data_K.parquet`` files and ``train.csv`` in the Bengali.AI layout."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = _bengali_labels(n_images, rng)
    ids = [f"Train_{i}" for i in range(n_images)]
    with open(out_dir / "train.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", *BENGALI_HEADS, "grapheme"])
        for image_id, (r, v, c) in zip(ids, labels, strict=True):
            writer.writerow([image_id, r, v, c, f"g{r}_{v}_{c}"])
    paths = []
    bounds = np.linspace(0, n_images, n_files + 1).astype(int)
    for k in range(n_files):
        path = out_dir / f"train_image_data_{k}.parquet"
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        writer_pq: pq.ParquetWriter | None = None
        for table in _wide_batches(labels[lo:hi], ids[lo:hi], rows_per_group, seed + k):
            if writer_pq is None:
                writer_pq = pq.ParquetWriter(path, table.schema)
            writer_pq.write_table(table, row_group_size=rows_per_group)
        if writer_pq is not None:
            writer_pq.close()
        paths.append(path)
    return paths


def encode_png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def write_encoded(path: Path, images: list[bytes], labels: dict[str, np.ndarray], row_group_size: int = 512) -> Path:
    """Write an encoded-image parquet: ``image`` struct ``{bytes, path}`` plus one column per label."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    image_col = pa.array([{"bytes": b, "path": f"{i}.png"} for i, b in enumerate(images)], type=image_type)
    columns = {"image": image_col} | {k: pa.array(v.astype(np.int64)) for k, v in labels.items()}
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def write_digits(out_dir: Path) -> Path:
    """scikit-learn's 1,797 8x8 handwritten digits, as PNG bytes with a ``label`` column."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
    images = [encode_png(img) for img in pixels]
    return write_encoded(out_dir / "digits.parquet", images, {"label": digits.target})


def write_breast_cancer(out_dir: Path) -> Path:
    """scikit-learn's Wisconsin breast cancer table (569 rows, 30 numeric features) as CSV with a header, the
    target ``diagnosis`` spelled as the dataset's own class names (malignant, benign)."""
    import csv

    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "breast_cancer.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([name.replace(" ", "_") for name in data.feature_names] + ["diagnosis"])
        for row, target in zip(data.data, data.target, strict=True):
            writer.writerow([f"{v:.6g}" for v in row] + [data.target_names[target]])
    return path


def write_all(out_dir: Path, bengali_images: int = 4000) -> dict[str, list[Path]]:
    """Everything `make data` writes."""
    return {
        "bengali": write_bengali(out_dir / "bengali", n_images=bengali_images, n_files=2),
        "digits": [write_digits(out_dir / "digits")],
        "tabular": [write_breast_cancer(out_dir / "tabular")],
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.tools.datasets", description="write the example datasets")
    parser.add_argument("--out", default="data", help="output directory (default: data)")
    parser.add_argument("--bengali-images", type=int, default=4000, help="synthetic Bengali images (default 4000)")
    args = parser.parse_args(argv)
    for name, paths in write_all(Path(args.out), bengali_images=args.bengali_images).items():
        for path in paths:
            print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
