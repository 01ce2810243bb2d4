"""Score a batch transform's predictions against the true values of the rows it predicted.

Runs as a SageMaker processing job, after a transform step (the way SageMaker's Autopilot-in-Pipelines example
evaluates): ``--predictions`` holds the transform's ``*.out`` files (one prediction per line, its first CSV field
the predicted label or value), ``--labels`` the true values (``labels.csv`` from `split_table.py`: a header line,
then one value per line, in the same order), ``--model`` (optional) the model's ``model.tar.gz``, whose
``code/automl.json`` names the classes it was trained on. ``--evaluation`` receives ``evaluation.json`` in
SageMaker's model-quality form (``{"metrics": {"<name>": {"value": x}}}``).

Metrics: a classification's ``accuracy``, ``balanced_accuracy`` and ``f1_macro``; a regression's ``mse``,
``rmse``, ``mae`` and ``r2``. A true class the model never saw in training is an error naming its line.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tarfile
from pathlib import Path

# what evaluation.json holds; `validate` checks a spec's metrics against it
REPORTED_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "mse", "rmse", "mae", "r2")


class EvaluationError(Exception):
    pass


def read_predictions(directory: Path) -> list[str]:
    files = sorted(directory.rglob("*.out"))
    if not files:
        raise EvaluationError(f"{directory}: no .out files (the transform step's predictions)")
    values = []
    for path in files:
        with path.open(newline="") as handle:
            values += [row[0] for row in csv.reader(handle) if row]
    return values


def read_labels(directory: Path) -> tuple[str, list[str]]:
    path = directory / "labels.csv" if (directory / "labels.csv").exists() else next(directory.rglob("*.csv"), None)
    if path is None:
        raise EvaluationError(f"{directory}: no labels.csv")
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if len(rows) < 2:
        raise EvaluationError(f"{path.name}: no label after its header line")
    return path.name, [row[0] for row in rows[1:]]


def model_classes(directory: Path | None) -> list[str] | None:
    """The classes the model was trained on, from its archive's ``code/automl.json`` (read, not extracted)."""
    if directory is None:
        return None
    archive = directory / "model.tar.gz" if directory.is_dir() else directory
    if not archive.exists():
        return None
    with tarfile.open(archive, "r:gz") as tar:
        try:
            member = tar.extractfile("code/automl.json")
        except KeyError:
            return None
        meta = json.loads(member.read()) if member else {}
    labels = meta.get("labels")
    return [str(v) for v in labels] if labels is not None else None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def classification(truth: list[str], predicted: list[str]) -> dict[str, float]:
    classes = sorted(set(truth) | set(predicted))
    recalls, f1s = [], []
    for c in sorted(set(truth)):
        tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t == c and p == c)
        fn = sum(1 for t in truth if t == c) - tp
        fp = sum(1 for p in predicted if p == c) - tp
        recalls.append(tp / (tp + fn))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    f1s += [0.0] * len(set(classes) - set(truth))  # predicted but never true: its F1 is 0
    accuracy = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p) / len(truth)
    return {"accuracy": accuracy, "balanced_accuracy": sum(recalls) / len(recalls), "f1_macro": sum(f1s) / len(f1s)}


def regression(truth: list[float], predicted: list[float]) -> dict[str, float]:
    n = len(truth)
    errors = [p - t for t, p in zip(truth, predicted, strict=True)]
    mse = sum(e * e for e in errors) / n
    mean = sum(truth) / n
    total = sum((t - mean) ** 2 for t in truth)
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": sum(abs(e) for e in errors) / n,
            "r2": 1 - (mse * n) / total if total else 0.0}  # fmt: skip


def evaluate(args: argparse.Namespace) -> dict[str, float]:
    predicted = read_predictions(args.predictions)
    name, truth = read_labels(args.labels)
    if len(predicted) != len(truth):
        raise EvaluationError(f"{len(predicted)} predictions for {len(truth)} labels in {name}: the transform's "
                              "input and the labels must hold the same rows in the same order")  # fmt: skip
    kind = args.problem_type
    numbers = [_number(t) for t in truth]
    if kind == "auto":
        numeric = all(v is not None for v in numbers)
        many = len(set(truth)) > 20 or any(v is not None and not float(v).is_integer() for v in numbers)
        kind = "regression" if numeric and many else "classification"
    if kind == "regression":
        guesses = [_number(p) for p in predicted]
        bad = next((i for i, v in enumerate(guesses) if v is None), None)
        if bad is not None or any(v is None for v in numbers):
            raise EvaluationError(f"a regression needs numbers: prediction {bad} or a label is not one")
        return regression([float(v) for v in numbers if v is not None], [float(v) for v in guesses if v is not None])
    known = model_classes(args.model)
    if known is not None:
        for line, value in enumerate(truth, 2):
            if value not in known and not (_number(value) is not None and any(_number(k) == _number(value)
                                                                               for k in known)):  # fmt: skip
                raise EvaluationError(f"{name} line {line}: class {value!r} was never seen in training (the model "
                                      f"knows {', '.join(map(repr, known[:10]))}): it cannot be predicted")
    return classification(truth, predicted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, required=True, help="the transform's .out files")
    parser.add_argument("--labels", type=Path, required=True, help="labels.csv: the true values")
    parser.add_argument("--model", type=Path, default=None, help="the model archive (its classes)")
    parser.add_argument("--evaluation", type=Path, required=True, help="receives evaluation.json")
    parser.add_argument("--problem-type", choices=["auto", "classification", "regression"], default="auto")
    args = parser.parse_args(argv)
    try:
        metrics = evaluate(args)
    except EvaluationError as exc:
        print(f"evaluate_table.py: error: {exc}", file=sys.stderr)
        return 2
    args.evaluation.mkdir(parents=True, exist_ok=True)
    report = {"metrics": {k: {"value": v} for k, v in metrics.items()}}
    (args.evaluation / "evaluation.json").write_text(json.dumps(report, indent=2))
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
