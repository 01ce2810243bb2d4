"""Evaluate a trained model artifact on a preprocessed split.

Runs as a SageMaker processing job: ``--model`` holds ``model.tar.gz`` (or its extracted contents),
``--data`` a split directory from `preprocess.py`, ``--output`` receives ``evaluation.json`` in
SageMaker's model-quality form (``{"metrics": {"<name>": {"value": x}}}``) and
``confusion_matrices.json``. The metrics: accuracy and macro recall per head, and ``weighted_recall``,
the per-head macro recalls weighted by the model's head weights (2:1:1 for Bengali.AI, which makes it the
competition's score).
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import Predictor, model_fn  # noqa: E402
from train import ShardDataset, macro_recall  # noqa: E402


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


def predict_split(predictor: Predictor, data: ShardDataset, batch_size: int) -> dict[str, np.ndarray]:
    """Predicted class per head for every image of the split, in order."""
    preds: dict[str, list[np.ndarray]] = {h: [] for h in predictor.heads}
    for start in range(0, len(data), batch_size):
        images, _ = data.__getitems__(range(start, min(start + batch_size, len(data))))
        logits = predictor.logits(images)
        for h in predictor.heads:
            preds[h].append(logits[h].argmax(dim=1).cpu().numpy())
    return {h: np.concatenate(v) for h, v in preds.items()}


def evaluate(model_dir: Path, data_dir: Path, batch_size: int = 256) -> tuple[dict, dict]:
    predictor = model_fn(str(model_dir))
    data = ShardDataset(data_dir)
    if data.heads != predictor.heads:
        raise EvaluationError(f"{data_dir} has heads {data.heads}; the model predicts {predictor.heads}")
    preds = predict_split(predictor, data, batch_size)
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
    return report, matrices


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="/opt/ml/processing/input/model", help="model.tar.gz, or a directory holding it")
    p.add_argument("--data", "--test", dest="data", default="/opt/ml/processing/input/test",
                   help="a split directory from preprocess.py")
    p.add_argument("--output", "--evaluation", dest="output", default="/opt/ml/processing/output/evaluation",
                   help="directory receiving evaluation.json and confusion_matrices.json")
    p.add_argument("--batch-size", type=int, default=256)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = extract_model(Path(args.model), Path(tmp))
            report, matrices = evaluate(model_dir, Path(args.data), args.batch_size)
    except (EvaluationError, FileNotFoundError, ValueError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2))
    (out / "confusion_matrices.json").write_text(json.dumps(matrices))
    print(" ".join(f"{k}={v['value']:.6g}" for k, v in report["metrics"].items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
