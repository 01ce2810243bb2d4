"""The local stand-in for Autopilot's ENSEMBLING job: AutoGluon-tabular on the job's table.

Run as a program by `pipelines.local.runners.automl` (``python search.py JOB.json``), in the job's sandbox,
like any job's process: its output is the step's log, a bad table ends it with one line naming the file and
the rule (exit 2), and it imports nothing of the project (AutoGluon, pandas and numpy only: it runs as a file).

It reads every object of the input channel (CSV with a header, or parquet; one header for all), checks the
table as Autopilot does, maps the job's request to AutoGluon (algorithms -> model keys, the objective -> the
eval metric, ValidationFraction -> the holdout, the runtime budget -> the time limit, MaxCandidates -> the
number of model configurations), prints a line per finished candidate, and writes:

* ``<model>/``: the best candidate's predictor (``clone_for_deployment``) and ``code/<SERVE>``, its inference
  program (`pipelines.local.automl.serve`), with ``code/automl.json`` (target, columns, problem type, labels);
* ``<output>/candidates.json``: every candidate (name, algorithm, its objective value, fit and end times),
  the best first.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from autogluon.core.callbacks import AbstractCallback
from autogluon.core.metrics import get_metric
from autogluon.core.utils import infer_problem_type
from autogluon.tabular import TabularPredictor

# Autopilot's names -> AutoGluon's. ``fastai`` (AutoGluon's FASTAI) cannot be installed beside the project's torch
# (every fastai release that AutoGluon 1.6 accepts pins torch<2.10), so its slot trains AutoGluon's own PyTorch
# network (NN_TORCH), said in the log.
ALGORITHMS = {"catboost": "CAT", "extra-trees": "XT", "fastai": "NN_TORCH", "lightgbm": "GBM",
              "linear-learner": "LR", "nn-torch": "NN_TORCH", "randomforest": "RF", "xgboost": "XGB"}  # fmt: skip
METRICS = {"Accuracy": "accuracy", "AUC": "roc_auc", "BalancedAccuracy": "balanced_accuracy", "F1": "f1",
           "F1macro": "f1_macro", "Precision": "precision", "PrecisionMacro": "precision_macro", "Recall": "recall",
           "RecallMacro": "recall_macro", "MAE": "mean_absolute_error", "MSE": "mean_squared_error", "R2": "r2",
           "RMSE": "root_mean_squared_error"}  # fmt: skip
DEFAULT_METRIC = {"Regression": "MSE", "BinaryClassification": "F1", "MulticlassClassification": "Accuracy"}
PROBLEM_TYPES = {"binary": "BinaryClassification", "multiclass": "MulticlassClassification", "regression": "Regression"}
MINIMIZED = ("mean_absolute_error", "mean_squared_error", "root_mean_squared_error")
MIN_ROWS = 500  # CreateAutoMLJob InputDataConfig: "A minimum of 500 rows is required for the training dataset"
PARQUET = "x-application/vnd.amazon+parquet"


class TableError(Exception):
    """A table Autopilot would refuse: one line naming the file and the rule."""


def _csv_text(data: bytes, shown: str) -> tuple[list[str], str]:
    """(the header, the decoded text) of a CSV file every row of which has one value per column."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TableError(f"{shown}: line {line} is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                         "Autopilot reads CSV as UTF-8: re-save it as UTF-8") from None  # fmt: skip
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise TableError(f"{shown}: the file is empty; Autopilot needs a header and {MIN_ROWS} rows") from None
    except csv.Error as exc:
        raise TableError(f"{shown}: line 1 is not CSV ({exc})") from None
    try:
        for row in reader:
            if row and len(row) != len(header):  # (a blank line is no row)
                raise TableError(f"{shown}: line {reader.line_num} has {len(row)} fields where the header has "
                                 f"{len(header)}; every row needs one value per column (quote values holding commas)")
    except csv.Error as exc:
        raise TableError(f"{shown}: line {reader.line_num} is not CSV ({exc})") from None
    return header, text


def _frame(path: Path, shown: str, content_type: str | None) -> Any:
    import pandas as pd

    data = path.read_bytes()  # once: sniffed, checked and parsed
    if content_type == PARQUET or (content_type is None and data[:4] == b"PAR1"):
        try:
            return pd.read_parquet(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - pyarrow's errors are many; each is a bad file
            raise TableError(f"{shown}: not a readable parquet file ({exc})") from None
    header, text = _csv_text(data, shown)
    blank = [name for name in header if not name.strip()]
    if blank or len(set(header)) != len(header):
        twice = sorted({n for n in header if header.count(n) > 1})
        raise TableError(f"{shown}: the header row " + ("has an empty column name" if blank else
                         f"names {', '.join(map(repr, twice))} twice") + "; Autopilot needs one name per column")
    # the checked text parsed by pandas: numbers become numbers, empty cells missing values
    return pd.read_csv(io.StringIO(text), keep_default_na=True, na_values=[""], low_memory=False)


def read_table(directory: Path, shown_root: str, content_type: str | None) -> Any:
    import pandas as pd

    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise TableError(f"{shown_root}: no objects; put the table (CSV with a header, or parquet) there")
    frames, columns = [], None
    for path in files:
        shown = f"{shown_root.rstrip('/')}/{path.relative_to(directory).as_posix()}"
        frame = _frame(path, shown, content_type)
        if columns is not None and list(frame.columns) != columns:
            raise TableError(f"{shown}: its columns differ from the first file's ({', '.join(columns[:6])}...); "
                             "every object of the channel must hold the same columns in the same order")
        columns = list(frame.columns)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), files


def check_table(table: Any, target: str, where: str, problem_type: str | None) -> Any:
    """The rules Autopilot applies to a training table, each refused in one line naming it."""
    columns = [str(c) for c in table.columns]
    if target not in columns:
        close = [c for c in columns if c.lower() == target.lower() or c.strip() == target.strip()]
        hint = f"; did you mean '{close[0]}'?" if close else f" (columns: {', '.join(columns[:12])})"
        raise TableError(f"{where}: no column '{target}', the target{hint}")
    empty = [c for c in columns if table[c].isna().all()]
    if empty:
        raise TableError(f"{where}: column '{empty[0]}' is empty in every row; drop it, or fill it")
    labelled = table[table[target].notna()]
    if len(labelled) < MIN_ROWS:
        raise TableError(f"{where}: {len(labelled)} rows have a target value; Autopilot needs at least {MIN_ROWS} "
                         "rows to train (CreateAutoMLJob)")  # fmt: skip
    classes = labelled[target].nunique()
    if classes < 2:
        value = labelled[target].iloc[0]
        raise TableError(f"{where}: the target '{target}' holds a single value ({value!r}) in every row; there is "
                         "nothing to learn: the table needs at least two classes (or varying numbers)")  # fmt: skip
    if problem_type == "BinaryClassification" and classes != 2:
        raise TableError(f"{where}: problem_type BinaryClassification, but the target '{target}' holds {classes} "
                         "classes; use MulticlassClassification")  # fmt: skip
    return labelled.reset_index(drop=True)


def _hyperparameters(algorithms: list[str], max_candidates: int, log: Any) -> dict[str, Any]:
    """AutoGluon's default configurations of the chosen algorithms, taken in turn until MaxCandidates (less one,
    for the weighted ensemble every search ends with)."""
    from autogluon.tabular.configs.hyperparameter_configs import get_hyperparameter_config

    defaults = get_hyperparameter_config("default")
    if "fastai" in algorithms:
        log("note: fastai cannot be installed beside this project's torch; its candidate is AutoGluon's NN_TORCH")
    keys = list(dict.fromkeys(ALGORITHMS[a] for a in algorithms))
    configs = {k: list(defaults.get(k, [{}])) if isinstance(defaults.get(k, [{}]), list) else [defaults[k]]
               for k in keys}  # fmt: skip
    chosen: dict[str, list[Any]] = {k: [] for k in keys}
    budget = max(1, max_candidates - 1)
    depth = 0
    while budget > 0 and any(depth < len(v) for v in configs.values()):
        for k in keys:
            if budget > 0 and depth < len(configs[k]):
                chosen[k].append(configs[k][depth])
                budget -= 1
        depth += 1
    return {k: v for k, v in chosen.items() if v}


class Progress(AbstractCallback):
    """A line per candidate the moment it is fit: what the runner shows as live progress. (At module level: the
    trainer pickles its callbacks with itself.)"""

    def __init__(self, metric: Any, started: float, total: int):
        super().__init__()
        self.metric, self.started, self.total = metric, started, total
        self.finished: list[dict[str, Any]] = []

    def _after_model_fit(self, trainer: Any, model_names: list[str], **kwargs: Any) -> bool:
        for name in model_names:
            score = trainer.get_model_attribute(name, "val_score")
            value = self.metric.convert_score_to_original(score) if score is not None else None
            self.finished.append({"name": name, "value": value, "ended": time.time() - self.started})
            best = [f["value"] for f in self.finished if f["value"] is not None]
            shown = (min(best) if self.metric.name in MINIMIZED else max(best)) if best else None
            top = "n/a" if shown is None else f"{shown:.6g}"
            print(f"candidate {len(self.finished)}/{self.total} {name}: {self.metric.name}="
                  f"{'n/a' if value is None else f'{value:.6g}'} (best {top})", flush=True)
        return False


def search(job: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    table, _ = read_table(Path(job["input"]), job["input_uri"], job.get("content_type"))
    table = check_table(table, job["target"], job["input_uri"], job.get("problem_type"))
    problem_type = job.get("problem_type")
    if problem_type is None:
        inferred = infer_problem_type(table[job["target"]], silent=True)
        problem_type = PROBLEM_TYPES.get(inferred, "MulticlassClassification")
        print(f"problem type: {problem_type} (inferred from the target, as Autopilot does)", flush=True)
    objective = job.get("objective") or DEFAULT_METRIC[problem_type]
    ag_type = {v: k for k, v in PROBLEM_TYPES.items()}[problem_type]
    metric = get_metric(METRICS[objective], ag_type)
    hyperparameters = _hyperparameters(job["algorithms"], job["max_candidates"], lambda m: print(m, flush=True))
    total = sum(len(v) for v in hyperparameters.values()) + 1
    progress = Progress(metric, started, total)
    work = Path(job["work"])
    predictor = TabularPredictor(label=job["target"], problem_type=ag_type, eval_metric=metric,
                                 path=str(work / "autogluon"), verbosity=int(job.get("verbosity", 1)))  # fmt: skip
    # the budget covers reading, fitting and writing, as Autopilot's MaxAutoMLJobRuntimeInSeconds does
    remaining = max(5.0, job["max_runtime_seconds"] - (time.time() - started) - 2)
    predictor.fit(
        table,
        holdout_frac=job["validation_fraction"],
        time_limit=remaining,
        hyperparameters=hyperparameters,
        num_bag_folds=0,
        num_stack_levels=0,
        fit_weighted_ensemble=True,
        num_cpus=job.get("num_cpus") or "auto",
        num_gpus=0,
        callbacks=[progress],
    )
    board = predictor.leaderboard(silent=True)
    ended = {f["name"]: f["ended"] for f in progress.finished}
    candidates = []
    for _, row in board.iterrows():
        name = str(row["model"])
        value = metric.convert_score_to_original(row["score_val"]) if not math.isnan(row["score_val"]) else None
        candidates.append({"name": name, "algorithm": _algorithm(name, predictor), "value": value,
                           "fit_seconds": float(row["fit_time"]), "ended": ended.get(name)})  # fmt: skip
    best = predictor.model_best
    model_dir = Path(job["model"])
    shutil.rmtree(model_dir, ignore_errors=True)
    predictor.clone_for_deployment(str(model_dir / "autogluon"), model=best)
    code = model_dir / "code"
    code.mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("serve.py"), code / job["serve"])
    features = [str(c) for c in table.columns if str(c) != job["target"]]
    labels = [_plain(v) for v in predictor.class_labels] if predictor.class_labels is not None else None
    (code / "automl.json").write_text(json.dumps({"target": job["target"], "features": features,
                                                  "problem_type": problem_type, "labels": labels}))  # fmt: skip
    summary = {"problem_type": problem_type, "objective": objective, "metric_type": _direction(objective),
               "best": best, "candidates": candidates, "rows": len(table), "features": features, "labels": labels,
               "seconds": time.time() - started}  # fmt: skip
    out = Path(job["output"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "candidates.json").write_text(json.dumps(summary, indent=2))
    print(f"best candidate {best}: {objective}={next(c['value'] for c in candidates if c['name'] == best):.6g} "
          f"of {len(candidates)} candidate(s) in {time.time() - started:.1f}s", flush=True)  # fmt: skip
    return summary


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _direction(objective: str) -> str:
    return "Minimize" if objective in ("MAE", "MSE", "RMSE") else "Maximize"


def _algorithm(name: str, predictor: Any) -> str:
    """Autopilot's name of a candidate's algorithm (the ensemble: ``ensemble``)."""
    if name.startswith("WeightedEnsemble"):
        return "ensemble"
    by_key = {"LightGBM": "lightgbm", "CatBoost": "catboost", "XGBoost": "xgboost", "RandomForest": "randomforest",
              "ExtraTrees": "extra-trees", "NeuralNetTorch": "nn-torch", "LinearModel": "linear-learner"}  # fmt: skip
    return next((v for k, v in by_key.items() if name.startswith(k)), name)


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    try:
        search(job)
    except TableError as exc:
        print(f"TableError: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
