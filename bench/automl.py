"""The local AutoML step against a well-tuned single model and a linear baseline, and against AutoGluon called
directly: ``python bench/run.py --only automl``.

Three tables of different problem types, each split 80/20 (breast cancer 90/10: Autopilot needs 500 training
rows; stratified for a classification, seed 0); the test rows are never seen by any contender:

* breast cancer (scikit-learn, 569 rows, binary), digits (scikit-learn, 1,797 rows, 10 classes) and Friedman #1
  (scikit-learn's generator, 2,000 rows, 10 features, regression; the shipped regression tables have fewer than
  Autopilot's 500 rows);
* the AutoML step: ``python -m pipelines local run`` of a one-step spec (kind: automl, the budget `BUDGET`, six
  algorithms, ten candidates), its best candidate's model then scored on the test rows;
* AutoGluon directly: a script that reads the same CSV and fits ``TabularPredictor`` with the same
  hyperparameters, holdout fraction and time limit, then keeps the best model (``clone_for_deployment``), as the
  step does; the step's wall time over this one is its overhead, measured paired (A B A B, `ROUNDS` pairs, the
  median of each);
* LightGBM with its defaults and a linear model (logistic regression or ridge, standardised features), each on
  every training row, well inside the same budget.
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "automl"
BUDGET = 45  # seconds, every contender
ROUNDS = 3
ALGORITHMS = ["lightgbm", "catboost", "xgboost", "extra-trees", "randomforest", "linear-learner"]
CANDIDATES = 10

DIRECT = r"""
import json, shutil, sys, time
import pandas as pd
from autogluon.tabular import TabularPredictor
sys.path.insert(0, sys.argv[2])
from search import _hyperparameters, METRICS, PROBLEM_TYPES  # the same configurations the step trains

job = json.loads(open(sys.argv[1]).read())
table = pd.read_csv(job["csv"])
ag_type = {v: k for k, v in PROBLEM_TYPES.items()}[job["problem_type"]]
predictor = TabularPredictor(label=job["target"], problem_type=ag_type, eval_metric=METRICS[job["objective"]],
                             path=job["work"], verbosity=0)
predictor.fit(table, holdout_frac=0.2, time_limit=job["budget"] - 2, num_bag_folds=0, num_stack_levels=0,
              hyperparameters=_hyperparameters(job["algorithms"], job["candidates"], print))
shutil.rmtree(job["model"], ignore_errors=True)
predictor.clone_for_deployment(job["model"], model=predictor.model_best)
"""

SPEC = """\
name: bench-automl-{name}
steps:
  - name: automl
    kind: automl
    input: s3://bench-tables/{table}/train/
    target: {target}
    problem_type: {problem_type}
    objective: {objective}
    algorithms: [{algorithms}]
    max_candidates: {candidates}
    max_runtime_seconds: {budget}
    validation_fraction: 0.2
"""


def _tables() -> list[tuple[str, str, str, Any, Any, str]]:
    """(name, problem type, Autopilot objective, features, target, target column) of each table."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer, load_digits, make_friedman1

    cancer, digits = load_breast_cancer(), load_digits()
    x, y = make_friedman1(n_samples=2000, n_features=10, noise=1.0, random_state=0)
    return [
        ("breast_cancer", "BinaryClassification", "F1", cancer.data, np.array(cancer.target_names)[cancer.target],
         "diagnosis"),
        ("digits", "MulticlassClassification", "Accuracy", digits.data, digits.target, "digit"),
        ("friedman1", "Regression", "MSE", x, y, "y"),
    ]  # fmt: skip


def _write(path: Path, x: Any, y: Any, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{i}" for i in range(x.shape[1])] + [target])
        writer.writerows([*map(float, row), label] for row, label in zip(x, y, strict=True))


def _score(problem_type: str, truth: Any, predicted: Any) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, mean_squared_error, r2_score

    if problem_type == "Regression":
        return {"rmse": float(mean_squared_error(truth, predicted) ** 0.5), "r2": float(r2_score(truth, predicted))}
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(truth, predicted))}  # fmt: skip


def _predictor_from_artifact(archive: Path, into: Path) -> Any:
    from autogluon.tabular import TabularPredictor

    shutil.rmtree(into, ignore_errors=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(into, filter="data")
    return TabularPredictor.load(str(into / "autogluon"), require_py_version_match=False)


def _step(name: str, work: Path, measured: Callable[..., tuple[float, float, str]]) -> tuple[float, float, Path]:
    """(the command's wall time, the step's own elapsed time from the execution record, its model archive)."""
    root = work / "runs"
    shutil.rmtree(root, ignore_errors=True)  # a fresh run root: nothing from the step cache
    wall, _, _ = measured([sys.executable, "-m", "pipelines", "local", "run", str(work / "spec.yaml"), "--root",
                           str(root), "--mount", f"bench-tables={OUT / 'tables'}"], cwd=ROOT)  # fmt: skip
    record = json.loads(next((root / "executions").glob("*/execution.json")).read_text())
    archive = next((root / "s3").rglob("model/model.tar.gz"))
    return wall, float(record["steps"]["automl"]["elapsed_seconds"]), archive


def _direct(job: Path, measured: Callable[..., tuple[float, float, str]]) -> float:
    search = ROOT / "pipelines" / "local" / "automl"
    wall, _, _ = measured([sys.executable, "-c", DIRECT, str(job), str(search)], cwd=ROOT)
    return wall


def bench_automl(args: object, measured: Callable[..., tuple[float, float, str]]) -> str:
    import lightgbm
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows, overheads = [], []
    for name, problem_type, objective, x, y, target in _tables():
        classification = problem_type != "Regression"
        test_size = 0.1 if len(x) < 1000 else 0.2  # breast cancer: Autopilot's 500 training rows need 90%
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, random_state=0,
                                                            stratify=y if classification else None)  # fmt: skip
        work = OUT / name
        work.mkdir(parents=True, exist_ok=True)
        _write(OUT / "tables" / name / "train" / "train.csv", x_train, y_train, target)
        (work / "spec.yaml").write_text(SPEC.format(name=name.replace("_", "-"), table=name, target=target,
                                                    problem_type=problem_type, objective=objective,
                                                    algorithms=", ".join(ALGORITHMS), candidates=CANDIDATES,
                                                    budget=BUDGET))  # fmt: skip
        job = work / "direct.json"
        job.write_text(json.dumps({"csv": str(OUT / "tables" / name / "train" / "train.csv"), "target": target,
                                   "problem_type": problem_type, "objective": objective, "algorithms": ALGORITHMS,
                                   "candidates": CANDIDATES, "budget": BUDGET, "work": str(work / "direct"),
                                   "model": str(work / "direct-model")}))  # fmt: skip
        # the definition compiled once before the rounds, as after any edit of the spec: what is measured is
        # the run (the engine, the step, the report), not the compile
        subprocess.run([sys.executable, "-m", "pipelines", "definition", str(work / "spec.yaml"), "--out",
                        str(work / "definition.json")], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        steps, own, directs = [], [], []
        for round_ in range(ROUNDS):  # A B A B
            print(f"bench: automl {name}: round {round_ + 1}: the step, then AutoGluon directly ...", flush=True)
            wall, elapsed, archive = _step(name, work, measured)
            steps.append(wall)
            own.append(elapsed)
            directs.append(_direct(job, measured))
        features = [f"f{i}" for i in range(x.shape[1])]
        import pandas as pd

        frame = pd.DataFrame(x_test, columns=features)
        automl = _score(problem_type, y_test, _predictor_from_artifact(archive, work / "model").predict(frame))
        t0 = time.perf_counter()
        gbm = (lightgbm.LGBMClassifier if classification else lightgbm.LGBMRegressor)(verbose=-1)
        gbm.fit(pd.DataFrame(x_train, columns=features), y_train)
        gbm_score, gbm_wall = _score(problem_type, y_test, gbm.predict(frame)), time.perf_counter() - t0
        t0 = time.perf_counter()
        linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000) if classification else Ridge())
        linear.fit(x_train, y_train)
        linear_score, linear_wall = _score(problem_type, y_test, linear.predict(x_test)), time.perf_counter() - t0
        step, direct = statistics.median(steps), statistics.median(directs)
        overheads.append((step / direct, statistics.median(own) / direct))
        key = "balanced_accuracy" if classification else "rmse"
        for label, score, wall in (("AutoML step (local)", automl, step), ("LightGBM defaults", gbm_score, gbm_wall),
                                   ("linear baseline", linear_score, linear_wall)):  # fmt: skip
            shown = ", ".join(f"{k} {v:.4f}" for k, v in score.items())
            rows.append(f"| {name} ({problem_type}, {len(x_train)}/{len(x_test)} rows) | {label} | {shown} | "
                        f"{wall:.1f} |")  # fmt: skip
        rows.append(f"| {name} | AutoGluon directly | (the same search) | {direct:.1f} |")
        best_other = max(gbm_score[key], linear_score[key]) if classification else min(gbm_score[key],
                                                                                       linear_score[key])
        print(f"bench: automl {name}: {key} automl {automl[key]:.4f}, best other {best_other:.4f}", flush=True)
    return "\n".join([
        f"Held-out score and wall time, each contender within {BUDGET} s (`bench/automl.py`). The AutoML step runs "
        f"as a user runs it (`python -m pipelines local run` of a one-step spec: {', '.join(ALGORITHMS)}; "
        f"{CANDIDATES} candidates; objective F1, Accuracy or MSE); its wall time is the median of {ROUNDS} runs "
        "paired with AutoGluon called directly on the same CSV with the same configurations (A B A B).",
        "",
        "| table | contender | held-out score | wall (s) |",
        "|---|---|---|---:|",
        *rows,
        "",
        "The step's overhead over AutoGluon directly, per table (median wall times): the whole command (engine "
        "start, the step, the report) / direct: " + ", ".join(f"{a:.2f}x" for a, _ in overheads) + "; the step "
        "alone (its elapsed time in the execution record: staging, the search process, packing and publishing "
        "the model) / direct: " + ", ".join(f"{b:.2f}x" for _, b in overheads) + " (target: at most 1.1x).",
    ])  # fmt: skip
