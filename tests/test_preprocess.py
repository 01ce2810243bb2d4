"""steps/preprocess.py alone, under the processing-job contract: input and output directories as arguments."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from pipelines.local.runners.base import host_names
from tests.conftest import run_step, training_env
from tests.tools.datasets import BENGALI_HEADS, encode_png, write_bengali, write_encoded


def load_split(directory: Path) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    manifest = json.loads((directory / "manifest.json").read_text())
    split = manifest["splits"][directory.name]
    images = np.concatenate([np.load(directory / name) for name in split["shards"]])
    labels = {h["name"]: np.load(directory / f"labels_{h['name']}.npy") for h in manifest["heads"]}
    return images, labels, manifest


def test_wide_layout_writes_resized_inverted_shards_with_their_labels(bengali_raw: Path, tmp_path: Path) -> None:
    result = run_step(
        "preprocess.py",
        "--input",
        str(bengali_raw),
        "--output",
        str(tmp_path),
        "--size",
        "32",
        "48",
        "--invert",
        "--val-fraction",
        "0.2",
        "--test-fraction",
        "0.1",
        "--shard-size",
        "100",
        "--block-columns",
        "1000",
    )
    assert result.returncode == 0, result.stderr

    labels_by_id = {}
    with open(bengali_raw / "train.csv") as fh:
        for row in csv.DictReader(fh):
            labels_by_id[row["image_id"]] = [int(row[h]) for h in BENGALI_HEADS]
    # rebuild the expected output for every source row, in input order
    pixels, ids = [], []
    for path in sorted(bengali_raw.glob("*.parquet")):
        table = pq.read_table(path)
        ids += table.column("image_id").to_pylist()
        pixels.append(np.stack([table.column(str(i)).to_numpy() for i in range(137 * 236)], axis=1))
    raw = 255 - np.concatenate(pixels).reshape(-1, 1, 137, 236)
    # torch's antialiased bilinear resampling as the reference; the script's own is within one level of it
    expected = F.interpolate(torch.from_numpy(raw.astype(np.float32)), size=(32, 48), mode="bilinear", antialias=True)
    expected = expected.round().clamp(0, 255).numpy().astype(np.int16)
    expected_labels = np.array([labels_by_id[i] for i in ids])

    total = 0
    rows_seen = []
    for split in ("train", "validation", "test"):
        images, labels, manifest = load_split(tmp_path / split)
        assert images.dtype == np.uint8 and images.shape[1:] == (1, 32, 48)
        assert len(images) == manifest["splits"][split]["size"]
        stacked = np.stack([labels[h] for h in BENGALI_HEADS], axis=1)
        assert stacked.dtype == np.int64
        # each output image is one of the source rows, and carries that row's labels
        for img, lab in zip(images[:20], stacked[:20], strict=True):
            match = np.flatnonzero((np.abs(expected - img) <= 1).all(axis=(1, 2, 3)))
            assert len(match) == 1
            assert (expected_labels[match[0]] == lab).all()
            rows_seen.append(int(match[0]))
        total += len(images)
    assert total == 300 and len(set(rows_seen)) == len(rows_seen)
    sizes = manifest["splits"]
    # a hash of each id decides its split: the fractions hold to within sampling error (3 sd)
    assert abs(sizes["validation"]["size"] - 60) <= 3 * (300 * 0.2 * 0.8) ** 0.5
    assert abs(sizes["test"]["size"] - 30) <= 3 * (300 * 0.1 * 0.9) ** 0.5
    assert [h["name"] for h in manifest["heads"]] == list(BENGALI_HEADS)
    assert [h["num_classes"] for h in manifest["heads"]] == [168, 11, 7]  # declared by the data's max label
    assert manifest["shape"] == [1, 32, 48]
    assert len(manifest["sources"]) == 3 and all(len(s["sha256"]) == 64 for s in manifest["sources"])
    assert manifest["options"]["invert"] is True
    train_images, _, _ = load_split(tmp_path / "train")
    mean = train_images.astype(np.float64).mean() / 255
    assert manifest["normalization"]["mean"][0] == pytest.approx(mean, abs=1e-4)
    assert len(manifest["splits"]["train"]["shards"]) == -(-sizes["train"]["size"] // 100)  # 100 images per shard
    assert not list(tmp_path.glob(".preprocess-*")), "staging directory left behind"


def test_num_classes_argument_overrides_what_the_data_shows(bengali_raw: Path, tmp_path: Path) -> None:
    result = run_step(
        "preprocess.py",
        "--input",
        str(bengali_raw),
        "--output",
        str(tmp_path),
        "--size",
        "16",
        "16",
        "--num-classes",
        "grapheme_root=200",
        "--label-columns",
        "grapheme_root",
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["heads"] == [{"name": "grapheme_root", "num_classes": 200, "class_names": None}]


def test_encoded_layout_with_struct_column_and_three_channels(digits_raw: Path, tmp_path: Path) -> None:
    result = run_step(
        "preprocess.py",
        "--input",
        str(digits_raw / "digits.parquet"),
        "--output",
        str(tmp_path),
        "--channels",
        "3",
        "--val-fraction",
        "0.1",
    )
    assert result.returncode == 0, result.stderr
    images, labels, manifest = load_split(tmp_path / "train")
    assert images.shape[1:] == (3, 8, 8)
    assert (images[:, 0] == images[:, 1]).all()  # grey replicated to RGB
    assert manifest["heads"] == [{"name": "label", "num_classes": 10, "class_names": None}]
    # split by a hash of each image: every digit is in validation, in about the overall proportion
    _, val_labels, _ = load_split(tmp_path / "validation")
    counts = np.bincount(val_labels["label"], minlength=10)
    assert counts.min() >= 5 and abs(counts.sum() - 180) <= 3 * (1797 * 0.1 * 0.9) ** 0.5


def test_encoded_binary_column_with_string_labels_gets_class_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    colours = ["red", "green", "blue"]
    images, names = [], []
    for i in range(60):
        arr = rng.integers(0, 255, size=(10, 12, 3), dtype=np.uint8)
        images.append(encode_png(arr))
        names.append(colours[i % 3])
    table = pa.table(
        {
            "img": pa.array(images, type=pa.binary()),
            "colour": pa.array(names),
            "size": pa.array([i % 2 for i in range(60)]),
        }
    )
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=16)
    result = run_step(
        "preprocess.py",
        "--input",
        str(tmp_path / "in.parquet"),
        "--output",
        str(tmp_path / "out"),
        "--label-columns",
        "colour,size",
        "--size",
        "8",
        "8",
    )
    assert result.returncode == 0, result.stderr
    _, labels, manifest = load_split(tmp_path / "out" / "train")
    assert manifest["heads"][0] == {"name": "colour", "num_classes": 3, "class_names": ["blue", "green", "red"]}
    assert manifest["shape"] == [3, 8, 8]
    assert set(labels["colour"]) == {0, 1, 2}


def _wide_table(n: int, n_pixels: int, nulls: bool = False) -> pa.Table:
    cols = {"image_id": pa.array([f"Train_{i}" for i in range(n)])}
    for j in range(n_pixels):
        values = np.full(n, 200, dtype=np.uint8)
        arr = pa.array(values, mask=np.arange(n) == 1 if nulls and j == 5 else None)
        cols[str(j)] = arr
    return pa.table(cols)


def _labels_csv(path: Path, ids: list[str]) -> None:
    with open(path, "w") as fh:
        fh.write("image_id,grapheme_root,vowel_diacritic,consonant_diacritic\n")
        for i in ids:
            fh.write(f"{i},1,2,3\n")


def _bad_wide(tmp: Path, case: str) -> list[str]:
    src = tmp / "src"
    src.mkdir()
    if case == "missing_label":
        pq.write_table(_wide_table(4, 12), src / "a.parquet")
        _labels_csv(src / "train.csv", ["Train_0", "Train_1", "Train_3"])
    elif case == "pixel_count":
        pq.write_table(_wide_table(4, 10), src / "a.parquet")
        _labels_csv(src / "train.csv", [f"Train_{i}" for i in range(4)])
    elif case == "null_pixel":
        pq.write_table(_wide_table(4, 12, nulls=True), src / "a.parquet")
        _labels_csv(src / "train.csv", [f"Train_{i}" for i in range(4)])
    elif case == "corrupt":
        (src / "a.parquet").write_bytes(b"PAR1 this is not parquet at all")
    elif case == "empty":
        (src / "a.parquet").write_bytes(b"")
    elif case == "unknown_layout":
        pq.write_table(pa.table({"x": [1.0, 2.0], "y": ["a", "b"]}), src / "a.parquet")
    elif case == "no_rows":
        pq.write_table(_wide_table(0, 12), src / "a.parquet")
        _labels_csv(src / "train.csv", [])
    elif case == "corrupt_image":
        write_encoded(
            src / "a.parquet", [encode_png(np.zeros((4, 4), np.uint8)), b"not a png"], {"label": np.array([0, 1])}
        )
    elif case == "null_label":
        pq.write_table(
            pa.table(
                {
                    "image": pa.array([encode_png(np.zeros((4, 4), np.uint8))] * 2),
                    "label": pa.array([1, None], type=pa.int64()),
                }
            ),
            src / "a.parquet",
        )
    return ["--input", str(src), "--height", "3", "--width", "4", "--val-fraction", "0"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_label", r"a\.parquet: row 2: image_id 'Train_2' has no label in .*train\.csv"),
        ("pixel_count", r"a\.parquet: 10 pixel columns, expected 3x4=12; set --height/--width"),
        ("null_pixel", r"a\.parquet: null pixel in column '5' at row 1"),
        ("corrupt", r"a\.parquet: not a readable parquet file"),
        ("empty", r"a\.parquet: the file is empty \(0 bytes\)"),
        ("unknown_layout", r"a\.parquet: unknown layout: .*found columns \['x', 'y'\]"),
        ("no_rows", r"a\.parquet: the file has no rows"),
        ("corrupt_image", r"a\.parquet: row 1: cannot decode image"),
        ("null_label", r"a\.parquet: label 'label' is null at row 1"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path: Path, case: str, message: str) -> None:
    args = _bad_wide(tmp_path, case)
    out = tmp_path / "out"
    result = run_step("preprocess.py", *args, "--output", str(out))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("preprocess: error: ")
    import re

    assert re.search(message, result.stderr), result.stderr
    assert not out.exists() or not any(out.rglob("*")), "partial output left behind"


def test_a_failure_after_reading_started_leaves_no_partial_output(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_bengali(src, n_images=40, n_files=1, rows_per_group=10)
    # the second file is wide too, but has a null pixel in its last row group: found while writing
    table = _wide_table(3, 137 * 236, nulls=False).set_column(100, "99", pa.array([1, None, 3], type=pa.uint8()))
    pq.write_table(table, src / "train_image_data_1.parquet")
    with open(src / "train.csv", "a") as fh:
        for i in range(3):
            fh.write(f"Train_{i + 1000},0,0,0,x\n")
    table = table.set_column(0, "image_id", pa.array([f"Train_{i + 1000}" for i in range(3)]))
    pq.write_table(table, src / "train_image_data_1.parquet")
    out = tmp_path / "out"
    out.mkdir()
    result = run_step("preprocess.py", "--input", str(src), "--output", str(out), "--size", "16", "16")
    assert result.returncode == 2, result.stdout
    assert "null pixel in column '99' at row 1" in result.stderr
    assert not any(out.rglob("*"))


def test_each_split_can_go_to_its_own_directory_as_sagemaker_mounts_them(digits_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "opt" / "ml" / "processing" / "output"
    args = ["--input", str(digits_raw), "--val-fraction", "0.2", "--test-fraction", "0.2"]
    for split in ("train", "validation", "test"):
        args += [f"--{split}", str(out / split)]
    result = run_step("preprocess.py", *args)
    assert result.returncode == 0, result.stderr
    for split in ("train", "validation", "test"):
        assert (out / split / "manifest.json").exists() and (out / split / "images_00000.npy").exists()
    assert not list(out.glob(".preprocess-*"))


# --------------------------------------------------------------------------- workers and instances


def _shards_bytes(split_dir: Path) -> bytes:
    manifest = json.loads((split_dir / "manifest.json").read_text())
    return b"".join((split_dir / n).read_bytes() for n in manifest["splits"][split_dir.name]["shards"])


def test_every_worker_count_writes_the_same_bytes(bengali_raw: Path, tmp_path: Path) -> None:
    common = ["--input", str(bengali_raw), "--size", "24", "24", "--invert", "--val-fraction", "0.2",
              "--shard-size", "70"]  # fmt: skip
    one = run_step("preprocess.py", *common, "--output", str(tmp_path / "one"), "--workers", "1")
    many = run_step("preprocess.py", *common, "--output", str(tmp_path / "many"), "--workers", "3")
    assert one.returncode == 0 and many.returncode == 0, one.stderr + many.stderr
    assert "by 1 worker(s)" in one.stdout and "by 2 worker(s)" in many.stdout  # 2 row groups: at most 2 workers
    for split in ("train", "validation"):
        assert _shards_bytes(tmp_path / "one" / split) == _shards_bytes(tmp_path / "many" / split)
        for name in ("labels_grapheme_root.npy", "image_ids.txt"):
            assert (tmp_path / "one" / split / name).read_bytes() == (tmp_path / "many" / split / name).read_bytes()
    first, again = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("one", "many"))
    assert first["normalization"] == again["normalization"]


def _as_instances(raw: Path, tmp: Path, hosts: int, sharded: bool, extra: list[str]) -> list[Path]:
    """Run preprocess.py as each of ``hosts`` processing instances; returns each instance's output root.
    ``sharded``: each instance receives only its files (ShardedByS3Key), else all of them (FullyReplicated)."""
    files = sorted(raw.glob("*.parquet"))
    names = host_names(hosts)
    roots = []
    for k, host in enumerate(names):
        root = tmp / host
        data = root / "opt/ml/processing/input/data"
        labels = root / "opt/ml/processing/input/labels"
        data.mkdir(parents=True)
        labels.mkdir(parents=True)
        for j, f in enumerate(files):
            if not sharded or j % hosts == k:
                (data / f.name).symlink_to(f)
        (labels / "train.csv").symlink_to(raw / "train.csv")
        config = root / "opt/ml/config"
        config.mkdir(parents=True)
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": host, "hosts": names}))
        distribution = "ShardedByS3Key" if sharded else "FullyReplicated"
        (config / "processingjobconfig.json").write_text(json.dumps({"ProcessingInputs": [
            {"InputName": "data", "S3Input": {"LocalPath": "/opt/ml/processing/input/data",
                                              "S3DataDistributionType": distribution}},
            {"InputName": "labels", "S3Input": {"LocalPath": "/opt/ml/processing/input/labels",
                                                "S3DataDistributionType": "FullyReplicated"}},
        ]}))  # fmt: skip
        out = root / "opt/ml/processing/output"
        result = run_step(
            "preprocess.py", "--input", str(data), "--labels", str(labels), "--train", str(out / "train"),
            "--validation", str(out / "validation"), "--test", str(out / "test"), *extra,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        roots.append(out)
    return roots


def _upload(roots: list[Path], target: Path) -> None:
    """What SageMaker's upload of each instance's output directory to one S3 prefix leaves there."""
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                dest = target / path.relative_to(root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(path.read_bytes())


@pytest.mark.parametrize("sharded", [True, False], ids=["ShardedByS3Key", "FullyReplicated"])
def test_instances_together_write_the_single_instance_split_image_for_image(tmp_path: Path, sharded: bool) -> None:
    pytest.importorskip("train")
    from shards import ShardDataset

    raw = tmp_path / "raw"
    write_bengali(raw, n_images=240, n_files=5, rows_per_group=48, seed=3)  # a row group per file
    extra = ["--size", "16", "16", "--val-fraction", "0.2", "--test-fraction", "0.1", "--workers", "1"]
    single = tmp_path / "s3-one"
    _upload(_as_instances(raw, tmp_path / "one", 1, sharded, extra), single)
    _upload(_as_instances(raw, tmp_path / "three", 3, sharded, extra), tmp_path / "s3-three")
    assert sorted(p.name for p in (tmp_path / "s3-three" / "train").iterdir()) == ["algo-1", "algo-2", "algo-3"]
    seen: set[str] = set()
    for split in ("train", "validation", "test"):
        a, b = ShardDataset(single / split), ShardDataset(tmp_path / "s3-three" / split)
        assert sorted(a.ids) == sorted(b.ids) and len(a) == len(b)  # the same images in the same split
        assert not seen & set(a.ids)
        seen |= set(a.ids)
        where = {image_id: k for k, image_id in enumerate(b.ids)}
        images_a, labels_a = a.__getitems__(list(range(len(a))))
        images_b, labels_b = b.__getitems__(list(range(len(b))))
        order = [where[i] for i in a.ids]
        assert torch.equal(images_a, images_b[order]) and torch.equal(labels_a, labels_b[order])
    assert len(seen) == 240  # none lost, none twice
    merged = ShardDataset(tmp_path / "s3-three" / "train").manifest["normalization"]
    assert merged["mean"] == pytest.approx(ShardDataset(single / "train").manifest["normalization"]["mean"], abs=1e-5)
    assert merged["std"] == pytest.approx(ShardDataset(single / "train").manifest["normalization"]["std"], abs=1e-5)
    if sharded:  # train.py takes such parts as its channels, validation included
        env = training_env(tmp_path / "job", tmp_path / "s3-three" / "train", tmp_path / "s3-three" / "validation")
        result = run_step("train.py", "--epochs", "1", "--batch-size", "32", env=env)
        assert result.returncode == 0, result.stderr
        assert "val_weighted_recall=" in result.stdout


def test_an_instance_without_files_finishes_cleanly(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_bengali(raw, n_images=40, n_files=2, rows_per_group=20, seed=4)
    roots = _as_instances(raw, tmp_path / "hosts", 3, True, ["--size", "8", "8"])
    assert not any(roots[2].rglob("*.npy"))  # algo-3 received nothing and wrote nothing
    assert any(roots[0].rglob("images_*.npy")) and any(roots[1].rglob("images_*.npy"))
