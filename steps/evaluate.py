"""Evaluate a trained model artifact on a preprocessed split.

Runs as a SageMaker processing job: ``--model`` holds ``model.tar.gz`` (or its extracted contents),
``--data`` a split directory from `preprocess.py`, ``--output`` receives ``evaluation.json`` in
SageMaker's model-quality form (``{"metrics": {"<name>": {"value": x}}}``) and
``confusion_matrices.json``, ``predictions.csv`` (per test image: its id, and per head the true and
predicted class and the predicted class's probability) and ``worst_images.npz`` (the images the model
got most wrong: lowest head-weighted probability of the true classes, for the run report). The metrics:
accuracy and macro recall per head, and ``weighted_recall``, the per-head macro recalls weighted by the
model's head weights (2:1:1 for Bengali.AI, which makes it the competition's score).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import Predictor, model_fn  # noqa: E402
from metrics import macro_recall  # noqa: E402
from shards import ShardDataset  # noqa: E402


class EvaluationError(Exception):
    pass


def extract_model(source: Path, into: Path) -> Path:
    """The directory holding ``model_config.json``: ``source`` itself, or ``model.tar.gz`` extracted safely."""
    if source.is_dir() and (source / "model_config.json").exists():
        return source
    archive = source / "model.tar.gz" if source.is_dir() else source
    if not archive.exists():
        raise EvaluationError(f"{source}: neither model.tar.gz nor an extracted model (model_config.json) found")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(into, filter="data")  # refuses absolute paths, links out of the tree, devices
    except (tarfile.TarError, OSError) as exc:
        raise EvaluationError(f"{archive}: cannot extract ({exc})") from exc
    if not (into / "model_config.json").exists():
        raise EvaluationError(f"{archive}: no model_config.json inside; was it written by train.py?")
    return into


WORST_IMAGES = 32  # thumbnails kept for the report
# what evaluation.json holds (``<head>``: each head's name); `validate` checks a spec's metrics against it
REPORTED_METRICS = ("weighted_recall", "accuracy_<head>", "recall_<head>")


@dataclass
class Predictions:
    """Per head, for every image of the split in order: the predicted class, its probability and the
    probability the model gave the true class."""

    predicted: dict[str, np.ndarray]
    confidence: dict[str, np.ndarray]
    true_probability: dict[str, np.ndarray]


def predict_split(predictor: Predictor, data: ShardDataset, batch_size: int) -> Predictions:
    out: tuple[dict[str, list[np.ndarray]], ...] = tuple({h: [] for h in predictor.heads} for _ in range(3))
    for start in range(0, len(data), batch_size):
        images, labels = data.__getitems__(range(start, min(start + batch_size, len(data))))
        logits = predictor.logits(images)
        for i, h in enumerate(predictor.heads):
            probs = torch.softmax(logits[h], dim=1)
            p, c = probs.max(dim=1)
            out[0][h].append(c.cpu().numpy())
            out[1][h].append(p.cpu().numpy())
            out[2][h].append(probs.gather(1, labels[:, i : i + 1].to(probs.device)).squeeze(1).cpu().numpy())
    predicted, confidence, true_probability = ({h: np.concatenate(v) for h, v in d.items()} for d in out)
    return Predictions(predicted, confidence, true_probability)


def write_predictions(path: Path, ids: list[str], labels: np.ndarray, heads: list[str], preds: Predictions) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id"] + [f"{h}_{c}" for h in heads for c in ("true", "predicted", "confidence")])
        columns = [ids]
        for i, h in enumerate(heads):
            columns += [
                labels[:, i].tolist(),
                preds.predicted[h].tolist(),
                [f"{c:.6f}" for c in preds.confidence[h].tolist()],
            ]
        writer.writerows(zip(*columns, strict=True))


def worst_images(
    data: ShardDataset, ids: list[str], preds: Predictions, weights: dict[str, float], k: int = WORST_IMAGES
) -> dict[str, np.ndarray]:
    """The k images whose true labels got the lowest head-weighted probability, with their labels."""
    score = sum(weights[h] * preds.true_probability[h] for h in data.heads)
    order = np.argsort(score, kind="stable")[:k]
    in_order = np.sort(order)  # the dataset reads indices in ascending order
    images, labels = data.__getitems__(in_order.tolist())
    at = np.searchsorted(in_order, order)
    out = {"images": images.numpy()[at], "true": labels.numpy()[at], "ids": np.asarray([ids[i] for i in order]),
           "heads": np.asarray(data.heads)}  # fmt: skip
    chosen = order
    out["predicted"] = np.stack([preds.predicted[h][chosen] for h in data.heads], axis=1)
    out["confidence"] = np.stack([preds.confidence[h][chosen] for h in data.heads], axis=1)
    return out


def evaluate(model_dir: Path, data_dir: Path, batch_size: int = 256, output: Path | None = None) -> tuple[dict, dict]:
    """The report and confusion matrices; with ``output``, also write predictions.csv and worst_images.npz."""
    predictor = model_fn(str(model_dir))
    data = ShardDataset(data_dir)
    if data.heads != predictor.heads:
        raise EvaluationError(f"{data_dir} has heads {data.heads}; the model predicts {predictor.heads}")
    if len(data) == 0:
        raise EvaluationError(f"{data_dir}: the split holds no images")
    predictions = predict_split(predictor, data, batch_size)
    preds = predictions.predicted
    weights = predictor.config.get("head_weights") or {h: 1 / len(predictor.heads) for h in predictor.heads}
    metrics: dict[str, dict[str, float]] = {}
    matrices = {}
    weighted = 0.0
    for i, head in enumerate(predictor.heads):
        k = next(h["num_classes"] for h in predictor.config["heads"] if h["name"] == head)
        truth = data.labels[:, i]
        confusion = np.bincount(truth * k + preds[head], minlength=k * k).reshape(k, k)
        recall = macro_recall(torch.from_numpy(confusion))
        metrics[f"accuracy_{head}"] = {"value": float((truth == preds[head]).mean())}
        metrics[f"recall_{head}"] = {"value": recall}
        weighted += weights[head] * recall
        matrices[head] = {"labels": list(range(k)), "matrix": confusion.tolist()}
    metrics["weighted_recall"] = {"value": weighted}
    report = {"metrics": metrics, "samples": len(data), "head_weights": weights}
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        ids = data.ids  # image_ids.txt from preprocess.py, else the images' positions
        write_predictions(output / "predictions.csv", ids, data.labels, data.heads, predictions)
        np.savez_compressed(output / "worst_images.npz", **worst_images(data, ids, predictions, weights))  # type: ignore[arg-type]
    return report, matrices


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="/opt/ml/processing/input/model", help="model.tar.gz, or a directory holding it")
    p.add_argument(
        "--data",
        "--test",
        dest="data",
        default="/opt/ml/processing/input/test",
        help="a split directory from preprocess.py",
    )
    p.add_argument(
        "--output",
        "--evaluation",
        dest="output",
        default="/opt/ml/processing/output/evaluation",
        help="directory receiving evaluation.json, confusion_matrices.json, predictions.csv and worst_images.npz",
    )
    p.add_argument("--batch-size", type=int, default=256)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.output)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = extract_model(Path(args.model), Path(tmp))
            report, matrices = evaluate(model_dir, Path(args.data), args.batch_size, out)
    except (EvaluationError, FileNotFoundError, ValueError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    (out / "evaluation.json").write_text(json.dumps(report, indent=2))
    (out / "confusion_matrices.json").write_text(json.dumps(matrices))
    print(" ".join(f"{k}={v['value']:.6g}" for k, v in report["metrics"].items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
