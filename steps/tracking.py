"""MLflow logging of a training job, only when ``MLFLOW_TRACKING_URI`` is set (on SageMaker: the spec's
``tracking.mlflow`` ARN, resolved by the ``sagemaker-mlflow`` plugin). Without it nothing is imported and
nothing is slowed.

The job's run is named and tagged by its job name (``smp.job``, ``TRAINING_JOB_NAME``), in
``MLFLOW_EXPERIMENT_NAME``; it holds the hyperparameters, every epoch's metrics under the names the metric lines
print (the spec's metric regexes read the same names), and the final metrics. The pipeline's own record later
adopts it as a child of the execution's run. Epoch metrics are sent asynchronously (MLflow's async logging), so
an epoch waits for none of them; the run ends waiting for them all.

A tracking server that cannot be reached, a missing library or a refused request never stops training: the
reason is written once in the job's log, and the job goes on without tracking.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

# an unreachable server must not stall training in MLflow's retries (7 by default, with backoff)
QUICK_FAILURE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


class Tracker:
    def __init__(self, environ: Mapping[str, str], say: Callable[[str], None], enabled: bool = True):
        self.uri = environ.get("MLFLOW_TRACKING_URI") if enabled else None
        self.experiment = environ.get("MLFLOW_EXPERIMENT_NAME") or "Default"
        self.job = environ.get("TRAINING_JOB_NAME") or environ.get("MLFLOW_RUN_NAME") or "local-training"
        self.say = say
        self.client: Any = None
        self.run_id: str | None = None
        self.pending: list[Any] = []

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def _give_up(self, what: str, exc: BaseException) -> None:
        """Once: the reason in the log; then every later call does nothing."""
        if self.uri is not None:
            self.say(f"tracking: {what} failed ({type(exc).__name__}: {exc}); training goes on without MLflow")
        self.uri, self.run_id = None, None

    def start(self, params: Mapping[str, Any]) -> None:
        if not self.uri:
            return
        try:
            for key, value in QUICK_FAILURE.items():
                os.environ.setdefault(key, value)
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(self.experiment)
            experiment = found.experiment_id if found else self.client.create_experiment(self.experiment)
            tags = {"smp.kind": "job", "smp.job": self.job, "mlflow.runName": self.job}
            self.run_id = self.client.create_run(experiment, tags=tags, run_name=self.job).info.run_id
            items = [Param(str(k), str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 90):
                self.client.log_batch(self.run_id, params=items[i : i + 90])
            self.say(f"tracking: MLflow run {self.run_id} in experiment {self.experiment}")
        except Exception as exc:  # noqa: BLE001 - whatever MLflow raises, training goes on
            self._give_up(f"starting an MLflow run at {self.uri}", exc)

    def metrics(self, values: Mapping[str, Any], step: int) -> None:
        """One epoch's numbers, sent in the background."""
        if not self.active:
            return
        try:
            from mlflow.entities import Metric

            at = int(time.time() * 1000)
            batch = [Metric(k, float(v), at, step) for k, v in values.items()
                     if isinstance(v, int | float) and not isinstance(v, bool)]  # fmt: skip
            self.pending.append(self.client.log_batch(self.run_id, metrics=batch, synchronous=False))
        except Exception as exc:  # noqa: BLE001
            self._give_up("logging metrics", exc)

    def finish(self, status: str = "FINISHED") -> None:
        if not self.active:
            return
        try:
            for operation in self.pending:
                if operation is not None:
                    operation.wait()
            self.client.set_terminated(self.run_id, status=status)
        except Exception as exc:  # noqa: BLE001
            self._give_up("ending the MLflow run", exc)
        self.run_id = None
