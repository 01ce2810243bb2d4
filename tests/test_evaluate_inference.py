"""train -> evaluate -> inference round trip, and the serving handlers' payloads."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_step

inference = pytest.importorskip("inference")
evaluate_mod = pytest.importorskip("evaluate")
train = pytest.importorskip("train")
metrics = pytest.importorskip("metrics")
shards = pytest.importorskip("shards")


@pytest.fixture(scope="module")
def evaluation(digits_model: Path, digits_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evaluation")
    result = run_step(
        "evaluate.py",
        "--model",
        str(digits_model / "model.tar.gz"),
        "--data",
        str(digits_shards / "test"),
        "--output",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def predictor(digits_model: Path):  # type: ignore[no-untyped-def]
    return inference.model_fn(str(digits_model / "model"))


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_evaluation_report_has_sagemaker_model_quality_form(evaluation: Path, digits_shards: Path) -> None:
    report = json.loads((evaluation / "evaluation.json").read_text())
    metrics = report["metrics"]
    assert set(metrics) == {"accuracy_label", "recall_label", "weighted_recall"}
    assert all(set(v) == {"value"} and 0 <= v["value"] <= 1 for v in metrics.values())
    assert metrics["accuracy_label"]["value"] > 0.8
    assert metrics["weighted_recall"]["value"] == pytest.approx(metrics["recall_label"]["value"])
    matrices = json.loads((evaluation / "confusion_matrices.json").read_text())
    matrix = np.array(matrices["label"]["matrix"])
    test_size = json.loads((digits_shards / "test" / "manifest.json").read_text())["splits"]["test"]["size"]
    assert matrix.shape == (10, 10) and matrix.sum() == test_size == report["samples"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["accuracy_label"]["value"])


def test_predict_fn_agrees_with_the_evaluation(evaluation: Path, digits_shards: Path, predictor) -> None:  # type: ignore[no-untyped-def]
    data = shards.ShardDataset(digits_shards / "test")
    images = np.concatenate([np.asarray(s) for s in data.shards])
    served_list = []
    for start in range(0, len(images), 100):  # requests of 100 images, under the per-request limit
        response, content_type = inference.output_fn(
            inference.predict_fn(inference.input_fn(npy(images[start : start + 100]), "application/x-npy"), predictor),
            "application/json",
        )
        assert content_type == "application/json"
        served_list += [p["label"]["class"] for p in json.loads(response)["predictions"]]
    served = np.array(served_list)
    matrices = json.loads((evaluation / "confusion_matrices.json").read_text())
    served_confusion = np.bincount(data.labels[:, 0] * 10 + served, minlength=100).reshape(10, 10)
    assert served_confusion.tolist() == matrices["label"]["matrix"]
    assert (served == evaluate_mod.predict_split(predictor, data, 37).predicted["label"]).all()


def test_weighted_recall_weights_heads_two_one_one() -> None:
    import torch

    perfect = torch.eye(3, dtype=torch.int64) * 5
    half = torch.tensor([[5, 5], [0, 10]])
    assert metrics.macro_recall(perfect) == 1.0
    assert metrics.macro_recall(half) == 0.75
    # an absent class does not count (scikit-learn's macro recall over present labels)
    assert metrics.macro_recall(torch.tensor([[4, 0, 0], [0, 0, 0], [2, 0, 2]])) == 0.75


def test_softmax_is_per_head_and_top_k_is_sorted(predictor) -> None:  # type: ignore[no-untyped-def]
    out = inference.predict_fn(inference.input_fn(npy(np.zeros((16, 16), np.uint8)), "application/x-npy"), predictor)
    assert len(out) == 1
    entry = out[0]["label"]
    probs = [t["probability"] for t in entry["top_k"]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and entry["class"] == entry["top_k"][0]["class"]


@pytest.mark.parametrize(
    ("payload", "content_type", "count"),
    [
        (lambda: npy(np.zeros((16, 16), np.uint8)), "application/x-npy", 1),
        (lambda: npy(np.zeros((1, 16, 16), np.float32)), "application/x-npy", 1),
        (lambda: npy(np.zeros((5, 16, 16), np.uint8)), "application/x-npy", 5),
        (lambda: npy(np.zeros((2, 1, 40, 30), np.uint8)), "application/x-npy", 2),  # resized
        (lambda: json.dumps(np.zeros((16, 16)).tolist()).encode(), "application/json", 1),
        (lambda: json.dumps({"instances": np.zeros((3, 1, 16, 16)).tolist()}), "application/json; charset=utf-8", 3),
        (lambda: _png(np.zeros((8, 8), np.uint8)), "image/png", 1),
        (lambda: _jpeg(np.zeros((20, 20, 3), np.uint8)), "image/jpeg", 1),
    ],
)
def test_input_fn_accepts_npy_json_png_and_jpeg_single_or_batched(
    payload, content_type: str, count: int, predictor
) -> None:  # type: ignore[no-untyped-def]
    out = inference.predict_fn(inference.input_fn(payload(), content_type), predictor)
    assert len(out) == count


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"", "application/json", 400, "the request body is empty"),
        (b"{not json", "application/json", 400, "invalid JSON"),
        (b'{"data": [1]}', "application/json", 400, "needs an 'instances' list"),
        (b"[[1, 2], [3]]", "application/json", 400, "rectangular nested list"),
        (b'[["a", "b"]]', "application/json", 400, "rectangular nested list of numbers"),
        (b"not npy", "application/x-npy", 400, "not a .npy payload"),
        (npy(np.zeros((2, 3, 16, 16))), "application/x-npy", 400, "3 channel\\(s\\); this model takes 1"),
        (npy(np.zeros((2, 2, 2, 2, 2))), "application/x-npy", 400, "got shape \\(2, 2, 2, 2, 2\\)"),
        (npy(np.full((16, 16), np.nan)), "application/x-npy", 400, "must be finite"),
        (npy(np.zeros((300, 16, 16))), "application/x-npy", 413, "300 images in one request"),
        (b"\x89PNG broken", "image/png", 400, "cannot decode the image"),
        (b"1,2,3", "text/csv", 415, "content type 'text/csv' is not supported"),
    ],
)
def test_bad_payloads_raise_a_4xx_error_with_a_message(
    body: bytes, content_type: str, status: int, message: str, predictor
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(inference.PayloadError, match=message) as info:
        inference.predict_fn(inference.input_fn(body, content_type), predictor)
    assert info.value.status_code == status
    assert str(info.value).startswith(f"{status} ")


def test_output_fn_refuses_an_unsupported_accept_type() -> None:
    with pytest.raises(inference.PayloadError, match="accept type 'text/csv'") as info:
        inference.output_fn([], "text/csv")
    assert info.value.status_code == 406


def test_evaluate_refuses_an_archive_that_escapes_its_directory(tmp_path: Path, digits_shards: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(evil, arcname="../escaped.txt")
    result = run_step(
        "evaluate.py", "--model", str(archive), "--data", str(digits_shards / "test"), "--output", str(tmp_path / "out")
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot extract" in result.stderr
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_evaluate_names_a_missing_model(tmp_path: Path, digits_shards: Path) -> None:
    result = run_step(
        "evaluate.py", "--model", str(tmp_path), "--data", str(digits_shards / "test"), "--output", str(tmp_path / "o")
    )
    assert result.returncode == 2
    assert "neither model.tar.gz nor an extracted model" in result.stderr
