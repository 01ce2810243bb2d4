"""``kind: automl``: SageMaker Autopilot on a table (CSV or parquet with a header and a target column), in
ENSEMBLING mode, the only mode SageMaker Pipelines runs (SDK v2 ``AutoMLStep`` refuses any other). Locally the
same search runs on AutoGluon-tabular, the library Autopilot's ENSEMBLING mode trains with
(`pipelines.local.runners.automl`).

The rules are botocore's SageMaker model (``AutoMLAlgorithm``, ``AutoMLMetricEnum``, ``MaxCandidates``,
``ValidationFraction``) and the SDK's (``AutoML._check_problem_type_and_job_objective``: a problem type and an
objective come both or neither), cited where they are applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from pipelines.spec.base import Path_, Source, StepBase
from pipelines.suggest import suggest

if TYPE_CHECKING:
    from pipelines.spec.checks import Checks

# botocore, CreateAutoMLJob ``AutoMLAlgorithmConfig.AutoMLAlgorithms``: "Selected algorithms must belong to the
# list corresponding to the training mode set in AutoMLJobConfig.Mode (ENSEMBLING or HYPERPARAMETER_TUNING)"
ENSEMBLING_ALGORITHMS = ("catboost", "extra-trees", "fastai", "lightgbm", "linear-learner", "nn-torch",
                         "randomforest", "xgboost")  # fmt: skip
PROBLEM_TYPES = ("BinaryClassification", "MulticlassClassification", "Regression")
# botocore ``AutoMLJobObjective.MetricName``: "For tabular problem types: List of available metrics" and
# "Default objective metrics" (Regression: MSE, binary: F1, multiclass: Accuracy)
METRICS: dict[str, tuple[str, ...]] = {
    "Regression": ("MAE", "MSE", "R2", "RMSE"),
    "BinaryClassification": ("Accuracy", "AUC", "BalancedAccuracy", "F1", "Precision", "Recall"),
    "MulticlassClassification": ("Accuracy", "BalancedAccuracy", "F1macro", "PrecisionMacro", "RecallMacro"),
}
DEFAULT_METRIC = {"Regression": "MSE", "BinaryClassification": "F1", "MulticlassClassification": "Accuracy"}
MIN_ROWS = 500  # botocore, CreateAutoMLJob InputDataConfig: "A minimum of 500 rows is required for the training
# dataset"


class AutoMLSpec(StepBase):
    REQUEST_FIELDS = {**StepBase.REQUEST_FIELDS, "TargetAttributeName": ("target",), "ProblemType": ("problem_type",),
                      "MetricName": ("objective",), "AutoMLAlgorithms": ("algorithms",),
                      "MaxCandidates": ("max_candidates",), "MaxAutoMLJobRuntimeInSeconds": ("max_runtime_seconds",),
                      "ValidationFraction": ("validation_fraction",), "S3Uri": ("input",)}  # fmt: skip

    kind: Literal["automl"]
    input: Source = Field(description="the table: $Param, <step>.<output> or s3://... (CSV with a header, or parquet)")
    target: str = Field(min_length=1, max_length=256, description="the column to predict")
    problem_type: Literal["auto", "BinaryClassification", "MulticlassClassification", "Regression"] = Field(
        "auto", description="auto: inferred from the target (then objective is the default for the inferred type)"
    )
    objective: str | None = Field(
        None, description="Autopilot's metric name (F1, Accuracy, MSE...); needs a problem_type"
    )
    algorithms: list[Literal[ENSEMBLING_ALGORITHMS]] | None = Field(  # type: ignore[valid-type]
        None, min_length=1, description="ENSEMBLING algorithms to try; default all eight"
    )
    max_candidates: int = Field(10, ge=1, le=750, description="trials (models) the search trains")
    max_runtime_seconds: int = Field(3600, ge=1, description="the whole job's time budget")
    validation_fraction: float = Field(0.2, gt=0, lt=1, description="rows held out to rank the candidates")
    content_type: Literal["text/csv;header=present", "x-application/vnd.amazon+parquet"] | None = Field(
        None, description="the table's format; default: inferred from the objects"
    )

    output_descriptions: ClassVar[dict[str, str]] = {
        "model": "the best candidate's model (its inference containers, as get_best_auto_ml_model reads them)",
        "candidates": "the job's output prefix: every candidate's artifacts and the leaderboard",
    }

    def output_names(self) -> list[str]:
        return list(self.output_descriptions)

    def gate_metrics(self) -> list[str]:
        """The best candidate's objective value, by its metric's name or as ``objective``."""
        return ["objective", *([self.objective_metric] if self.objective_metric else [])]

    @property
    def objective_metric(self) -> str | None:
        """The metric the job ranks by: the spec's, else the default of a declared problem type (None: auto)."""
        if self.objective is not None:
            return self.objective
        return DEFAULT_METRIC.get(self.problem_type)

    def check(self, checks: Checks, here: Path_) -> None:
        if self.objective is not None and self.problem_type == "auto":
            checks.add(
                (*here, "objective"),
                "an objective needs a problem_type (the SDK's AutoML: a problem type and an objective metric come "
                "both or neither)",
                f"add problem_type: one of {', '.join(PROBLEM_TYPES)}, or remove objective",
            )
        elif self.objective is not None and self.objective not in METRICS[self.problem_type]:
            allowed = METRICS[self.problem_type]
            other = next((kind for kind, names in METRICS.items() if self.objective in names), None)
            checks.add(
                (*here, "objective"),
                f"'{self.objective}' is not an Autopilot metric for {self.problem_type} (AutoMLJobObjective)"
                + (f": it is a {other} metric" if other else ""),
                (suggest(self.objective, allowed) if other is None else None) or f"use one of {', '.join(allowed)}",
            )
        if self.algorithms is not None and len(set(self.algorithms)) != len(self.algorithms):
            checks.add((*here, "algorithms"), "lists an algorithm twice", "list each algorithm once")
