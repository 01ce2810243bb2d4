"""An execution as a tree of MLflow runs, the same shape wherever it ran, built from its run view (`RunView`):

* a parent run per execution (tag ``smp.kind=execution``): the execution's parameters, the spec's SHA-256, the
  git commit, the definition as an artifact; tags for the gate's verdict (and the value it compared), the
  registered model package and the endpoint; the evaluation metrics, so executions compare on them;
* a child run per training job and per tuning trial (``smp.kind=job``): its hyperparameters, every metric its
  regexes captured per epoch (the spec's metric names, one step per epoch), its final metrics and its model's
  URI; an AutoML step's candidates likewise (their algorithm and objective value);
* a child run per evaluation (``smp.kind=evaluation``): its metrics, and its files (the report, confusion
  matrices, predictions) as artifacts.

A step that was a cache hit ran no job in this execution: its jobs' runs stay in the tree of the execution that ran
them, and the parent is tagged ``smp.cache_hit.<step>``. A run another process already logged for a job
(``steps/train.py`` on SageMaker, tagged ``smp.job``) is adopted as the child: it gets the parent's tag and keeps
what it logged. Recording again (a retried execution) updates the tree in place: each run is found by its tags,
nothing is logged twice. Statuses follow the execution's: FINISHED, FAILED, KILLED (stopped); a run is never left
RUNNING.

MLflow is imported only here, and only when recording (its import costs about a second).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.report.outcomes.base import is_number
from pipelines.report.summary import comparisons
from pipelines.report.view import seconds

if TYPE_CHECKING:
    from pipelines.report.view import RunView

STATUS = {"Succeeded": "FINISHED", "Completed": "FINISHED", "Failed": "FAILED", "Stopped": "KILLED",
          "Stopping": "KILLED"}  # fmt: skip
BATCH = 900  # MLflow's log_batch takes at most 1000 metrics (and 100 params, 100 tags): sent in slices
PARAM_LIMIT = 6000  # MLflow's longest param value
TOOLKIT_KEYS = ("sagemaker_", "_tuning_objective_metric")  # the toolkit's own hyperparameters, not the job's


STORE_DIR = "mlflow"  # a run root's MLflow store: <root>/mlflow/mlflow.db
ARTIFACT_BUCKET = "mlflow"  # the local object store's bucket holding the runs' artifacts


def store_uri(root: Path) -> str:
    """The MLflow tracking store of a local run root (SQLite)."""
    return f"sqlite:///{(Path(root) / STORE_DIR / 'mlflow.db').resolve()}"


def artifact_location(root: Path, experiment: str) -> str:
    """Where an experiment's artifacts go in the run root's object store: a folder named from the experiment with
    every character but letters, digits, '-' and '_' replaced (no '.', no '/': it stays inside the store)."""
    folder = re.sub(r"[^A-Za-z0-9_-]", "-", experiment)[:200] or "experiment"
    return (Path(root) / "s3" / ARTIFACT_BUCKET / folder).resolve().as_uri()


def forget(root: Path, execution_ids: list[str]) -> int:
    """Delete the runs of executions `local gc` removed (their models and files are gone): no run is left
    pointing at freed data. The runs of kept executions are untouched; returns how many runs went."""
    if not execution_ids or not (Path(root) / STORE_DIR / "mlflow.db").exists():
        return 0
    import logging

    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=store_uri(root))
    gone = 0
    with FileLock(Path(root) / STORE_DIR / ".lock", timeout=600):
        experiments = [e.experiment_id for e in client.search_experiments()]
        for execution in execution_ids:
            for run in client.search_runs(experiments, f"tags.`smp.execution` = '{execution}'", max_results=5000):
                client.delete_run(run.info.run_id)
                gone += 1
    return gone


def spec_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def git_commit(directory: Path) -> str | None:
    """The commit the spec's repository is at (``-dirty`` when its tree has changes), or None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                               capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _ms(value: Any) -> int | None:
    at = seconds(value)
    return int(at * 1000) if at is not None else None


class Recorder:
    """Writes one execution's tree into an MLflow tracking store (a URI: ``sqlite:///...``, ``http://...``, or a
    SageMaker MLflow ARN where the ``sagemaker-mlflow`` plugin is installed)."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None):
        import logging

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its store migrations log at INFO
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # a server that cannot be reached answers within seconds, not after MLflow's 7 retries with backoff
        for key, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")):
            os.environ.setdefault(key, value)
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found is not None else self.client.create_experiment(
            experiment, artifact_location=artifact_location)  # fmt: skip

    def _find(self, **tags: str) -> Any:
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1)
        return runs[0] if runs else None

    def _run(self, name: str, tags: dict[str, str], started: int | None, parent: str | None = None) -> tuple[str, bool]:
        """(run id, whether it is new) of the run tagged ``tags``: found, else created."""
        found = self._find(**{k: tags[k] for k in ("smp.kind", "smp.execution", "smp.job") if k in tags})
        if found is None and "smp.job" in tags:  # logged by the job itself (steps/train.py): adopted
            found = self._find(**{"smp.job": tags["smp.job"]})
        if found is not None:
            run_id = str(found.info.run_id)
            self._tags(run_id, tags | ({"mlflow.parentRunId": parent} if parent else {}))
            return run_id, False
        every = tags | {"mlflow.runName": name} | ({"mlflow.parentRunId": parent} if parent else {})
        run = self.client.create_run(self.experiment_id, start_time=started, tags=every, run_name=name)
        return str(run.info.run_id), True

    def _tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        for i in range(0, len(items), 90):
            self.client.log_batch(run_id, tags=items[i : i + 90])

    def _params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:PARAM_LIMIT]) for k, v in params.items()]
        for i in range(0, len(items), 90):
            self.client.log_batch(run_id, params=items[i : i + 90])

    def _metrics(self, run_id: str, curves: dict[str, list[float]], finals: dict[str, float], at: int) -> None:
        from mlflow.entities import Metric

        items = [Metric(k, float(v), at, step) for k, values in curves.items() for step, v in enumerate(values, 1)
                 if is_number(v)]  # fmt: skip
        items += [Metric(k, float(v), at, 0) for k, v in finals.items() if is_number(v) and k not in curves]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(run_id, metrics=items[i : i + BATCH])

    def _end(self, run_id: str, status: str, ended: int | None) -> None:
        self.client.set_terminated(run_id, status=status, end_time=ended)

    # ----------------------------------------------------------------- the tree

    def record(self, view: RunView, extra: dict[str, str] | None = None, definition_text: str | None = None
               ) -> dict[str, Any]:  # fmt: skip
        """The execution's tree; {experiment_id, parent, runs: {job or step: run id}}."""
        status = STATUS.get(view.status, "FAILED" if view.ended else "KILLED")
        started, ended = _ms(view.started), _ms(view.ended) or int(time.time() * 1000)
        tags = {"smp.kind": "execution", "smp.execution": view.id, "smp.pipeline": view.pipeline,
                "smp.where": view.where, "smp.status": view.status, **(extra or {})}  # fmt: skip
        parent, new = self._run(f"{view.pipeline} {view.id}", tags, started)
        if new:
            self._params(parent, {k: v for k, v in view.parameters.items()})
            if definition_text is not None:
                self.client.log_text(parent, definition_text, "definition.json")
        runs: dict[str, str] = {}
        summary: dict[str, str] = {}
        for name, step in view.steps.items():
            result = step.result
            if step.cache_hit:  # its jobs ran in the execution that made the cache entry: their runs are there
                summary[f"smp.cache_hit.{name}"] = "true"
                continue
            if "TrainingJobName" in result and name not in view.children:
                runs[name] = self._job(view, name, result, parent, ended)
            best = (result.get("BestTrainingJob") or {}).get("TrainingJobName") or (
                result.get("BestCandidate") or {}).get("CandidateName")  # fmt: skip
            for child in view.children.get(name, []):
                runs[str(child["Name"])] = run_id = self._child(view, name, child, result, parent, ended)
                if child["Name"] == best:
                    self._tags(run_id, {"smp.best": "true"})
            if name in view.evaluations:
                runs[name] = self._evaluation(view, name, parent, ended)
            if result.get("ModelPackageArn"):
                summary["smp.model_package"] = (f"{result.get('ModelPackageGroupName')}:"
                                                f"{result.get('ModelPackageVersion')} ({result['ModelPackageArn']})")
            if result.get("EndpointName") and "EndpointStatus" in result:
                url = f" {result['Url']}" if result.get("Url") else ""
                summary["smp.endpoint"] = f"{result['EndpointName']}{url}"
        gates = [c for c in comparisons(view) if isinstance(c.get("outcome"), bool)]
        for c in gates:
            verdict = "passed" if c["outcome"] else "failed"
            summary[f"smp.gate.{c['step']}"] = f"{verdict}: {c.get('left_value')} {c['op']} {c.get('right_value')}"
        quality = [c for c in gates if c["step"] == "quality-gate"] or gates
        if quality:
            summary["smp.gate"] = "passed" if all(c["outcome"] for c in quality) else "failed"
        self._tags(parent, summary | {"smp.status": view.status})
        finals = {f"{step}.{k}": v for step, found in view.evaluations.items() for k, v in found.metrics.items()}
        self._metrics(parent, {}, finals, ended)
        self._end(parent, status, ended)
        return {"uri": self.uri, "experiment_id": self.experiment_id, "parent": parent, "runs": runs}

    def _job(self, view: RunView, step: str, result: dict[str, Any], parent: str, at: int) -> str:
        job = str(result["TrainingJobName"])
        run_id, new = self._run(job, {"smp.kind": "job", "smp.execution": view.id, "smp.job": job, "smp.step": step},
                                _ms(result.get("TrainingStartTime")), parent)  # fmt: skip
        hps = {k: v for k, v in (result.get("HyperParameters") or {}).items() if not k.startswith(TOOLKIT_KEYS)}
        finals = {m["MetricName"]: m["Value"] for m in result.get("FinalMetricDataList", [])}
        model = (result.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
        self._log_job(run_id, new, hps, view.curves.get(job, {}), finals, at)
        self._tags(run_id, {"smp.model": str(model)} if model else {})
        self._end(run_id, STATUS.get(str(result.get("TrainingJobStatus", view.status)), "FAILED"),
                  _ms(result.get("TrainingEndTime")) or at)  # fmt: skip
        return run_id

    def _child(self, view: RunView, step: str, child: dict[str, Any], result: dict[str, Any], parent: str,
               at: int) -> str:  # fmt: skip
        """A job the step ran on its own: a tuning trial (its static and tuned hyperparameters), a candidate."""
        name = str(child["Name"])
        run_id, new = self._run(name, {"smp.kind": "job", "smp.execution": view.id, "smp.job": name, "smp.step": step},
                                _ms(child.get("Started")), parent)  # fmt: skip
        definition = result.get("TrainingJobDefinition") or {}
        static = {k: v for k, v in (definition.get("StaticHyperParameters") or {}).items()
                  if not k.startswith(TOOLKIT_KEYS)}  # fmt: skip
        curves = dict(child.get("Curves") or view.curves.get(name) or {})
        finals = {k: v[-1] for k, v in curves.items() if v}
        if child.get("Value") is not None:
            finals[str(child.get("Metric") or "objective")] = child["Value"]
        self._log_job(run_id, new, static | dict(child.get("Parameters") or {}), curves, finals, at)
        output = (definition.get("OutputDataConfig") or {}).get("S3OutputPath")
        if output:
            self._tags(run_id, {"smp.model": f"{output.rstrip('/')}/{name}/output/model.tar.gz"})
        self._end(run_id, STATUS.get(str(child.get("Status")), "FAILED"), _ms(child.get("Ended")) or at)
        return run_id

    def _log_job(self, run_id: str, new: bool, params: dict[str, Any], curves: dict[str, list[float]],
                 finals: dict[str, Any], at: int) -> None:  # fmt: skip
        if not new:
            return  # logged before (a retried execution, or the job itself did): nothing twice
        self._params(run_id, params)
        self._metrics(run_id, curves, finals, at)

    def _evaluation(self, view: RunView, step: str, parent: str, at: int) -> str:
        evaluation = view.evaluations[step]
        tags = {"smp.kind": "evaluation", "smp.execution": view.id, "smp.job": f"{view.id}/{step}", "smp.step": step}
        run_id, new = self._run(step, tags, _ms(view.steps[step].started), parent)
        if new:
            self._metrics(run_id, {}, evaluation.metrics, at)
            files = [p for p in sorted(Path(evaluation.directory).glob("*")) if p.is_file()]
            for path in files:
                self.client.log_artifact(run_id, str(path))
        self._end(run_id, STATUS.get(view.steps[step].status, "FAILED"), _ms(view.steps[step].ended) or at)
        return run_id


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    """A run's page in MLflow's UI served at ``ui``."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def executions(uri: str, experiment: str | None, last: int) -> list[dict[str, Any]]:
    """The latest ``last`` executions recorded (every experiment's, or one's), newest first: each with its
    parameters, metrics and tags, and its best job's hyperparameters and final metrics."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiments = [e for e in client.search_experiments() if experiment in (None, e.name)]
    if not experiments:
        return []
    ids = [e.experiment_id for e in experiments]
    names = {e.experiment_id: e.name for e in experiments}
    parents = client.search_runs(ids, filter_string="tags.`smp.kind` = 'execution'", max_results=last,
                                 order_by=["attributes.start_time DESC"])  # fmt: skip
    out = []
    for run in parents:
        children = client.search_runs([run.info.experiment_id], max_results=1000,
                                      filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")  # fmt: skip
        jobs = [c for c in children if c.data.tags.get("smp.kind") == "job"]
        best = _best(jobs)
        out.append({
            "experiment": names.get(run.info.experiment_id), "run_id": run.info.run_id,
            "execution": run.data.tags.get("smp.execution"), "pipeline": run.data.tags.get("smp.pipeline"),
            "status": run.data.tags.get("smp.status"), "started": run.info.start_time,
            "parameters": dict(run.data.params), "metrics": dict(run.data.metrics),
            "gate": run.data.tags.get("smp.gate"), "model_package": run.data.tags.get("smp.model_package"),
            "best_job": best.data.tags.get("smp.job") if best else None,
            "best_params": dict(best.data.params) if best else {},
            "best_metrics": dict(best.data.metrics) if best else {}, "jobs": len(jobs),
        })  # fmt: skip
    return out


def _best(jobs: list[Any]) -> Any:
    """The job its step chose (a tuning job's best training job, an AutoML job's best candidate: tagged
    ``smp.best``), else the only one, else None."""
    chosen = [j for j in jobs if j.data.tags.get("smp.best") == "true"]
    return chosen[0] if chosen else (jobs[0] if len(jobs) == 1 else None)

