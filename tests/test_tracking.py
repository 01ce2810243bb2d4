"""Experiment tracking in MLflow: the spec's ``tracking:`` block in the requests, the run tree an execution
leaves in the run root's store (SQLite), a tuning step's trials as child runs with their curves, two executions
compared, recording twice at once, a stopped execution's runs, `local gc`, `train.py` logging by itself (and going
on when the server cannot be reached), and a real ``mlflow server`` on 127.0.0.1 queried over REST."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.cli import main
from tests.conftest import run_step, training_env
from tests.tools.datasets import write_digits

ROOT = Path(__file__).resolve().parents[1]
ARN = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/team"


def _quiet(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------- the spec and the requests


def _tracked_spec(tmp_path: Path, mlflow: str = ARN, extra: str = "") -> Path:
    text = (ROOT / "config" / "digits.yaml").read_text()
    text = text.replace("gate:\n", f"tracking:\n  mlflow: {mlflow}\n  experiment: digits-team\n\ngate:\n")
    text = text.replace("  - name: tune\n", "  - name: train\n    kind: training\n    script: train.py\n"
                        "    instance: {type: ml.m5.xlarge}\n    inputs: {train: preprocess.train}\n"
                        "    hyperparameters: {epochs: 1}\n\n  - name: tune\n")  # fmt: skip
    path = tmp_path / "tracked.yaml"
    path.write_text(extra + text)
    return path


def test_the_tracking_block_compiles_into_mlflow_config_and_the_jobs_environment(tmp_path: Path) -> None:
    spec = _tracked_spec(tmp_path)
    assert main(["definition", str(spec), "--out", str(tmp_path / "d.json")]) == 0
    steps = {s["Name"]: s for s in json.loads((tmp_path / "d.json").read_text())["Steps"]}
    environment = {"MLFLOW_TRACKING_URI": ARN, "MLFLOW_EXPERIMENT_NAME": "digits-team"}
    # CreateTrainingJob has MlflowConfig (botocore's model); the tuning job's API has none: its trials log
    # through the environment, as processing jobs do
    assert steps["train"]["Arguments"]["MlflowConfig"] == {"MlflowResourceArn": ARN,
                                                            "MlflowExperimentName": "digits-team"}  # fmt: skip
    assert environment.items() <= steps["train"]["Arguments"]["Environment"].items()
    assert "MlflowConfig" not in steps["tune"]["Arguments"]
    assert environment.items() <= steps["tune"]["Arguments"]["TrainingJobDefinition"]["Environment"].items()
    assert environment.items() <= steps["preprocess"]["Arguments"]["Environment"].items()
    assert "PipelineExperimentConfig" in json.loads((tmp_path / "d.json").read_text())  # it stays


def test_a_parameter_names_the_tracking_server_at_run_time(tmp_path: Path) -> None:
    params = f"parameters:\n  Tracking:\n    type: String\n    default: {ARN}\n"
    spec = _tracked_spec(tmp_path, "$Tracking")
    spec.write_text(spec.read_text().replace("parameters:\n", params, 1))
    assert main(["definition", str(spec), "--out", str(tmp_path / "d.json")]) == 0
    train = next(s for s in json.loads((tmp_path / "d.json").read_text())["Steps"] if s["Name"] == "train")
    assert train["Arguments"]["MlflowConfig"]["MlflowResourceArn"] == {"Get": "Parameters.Tracking"}


def test_an_experiment_name_cannot_lead_its_artifacts_out_of_the_run_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.report.tracking import artifact_location

    spec = _tracked_spec(tmp_path)
    spec.write_text(spec.read_text().replace("experiment: digits-team", "experiment: ../../etc"))
    assert main(["validate", str(spec)]) == 2
    assert "tracking.experiment" in capsys.readouterr().err
    for name in ("../../etc", "a/../../b", "..", "team/sub"):
        location = Path(artifact_location(tmp_path, name).removeprefix("file://"))
        assert location.parent == (tmp_path / "s3" / "mlflow").resolve() and ".." not in location.name


@pytest.mark.parametrize(
    ("value", "message"),
    [("https://mlflow.example.com", "is not a SageMaker MLflow ARN"),
     ("arn:aws:sagemaker:eu-west-1:12345:mlflow-tracking-server/x", "is not a SageMaker MLflow ARN"),
     ("$Nope", "unknown parameter '$Nope'")],
)  # fmt: skip
def test_a_bad_tracking_server_is_refused_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    spec = _tracked_spec(tmp_path, value)
    line = next(i for i, row in enumerate(spec.read_text().splitlines(), 1) if "mlflow:" in row)
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"tracked.yaml:{line}:" in err and message in err, err


# --------------------------------------------------------------------------- local: the run tree


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two executions of the quickstart (different epochs), each recorded as it ended (--tracking wait)."""
    from pipelines.local.serving import stop_all

    data = tmp_path_factory.mktemp("data")
    write_digits(data / "digits")
    root = tmp_path_factory.mktemp("runs")
    base = ["local", "run", "config/digits.yaml", "--root", str(root), "--mount", f"sm-pipelines-data={data}",
            "TuningJobs=2", "AccuracyThreshold=0.5", "--tracking", "wait"]  # fmt: skip
    # (a one-epoch search's best trial can land below the quickstart's 0.8: these tests are about the record,
    # so the gate's threshold is one every trial passes)
    runs = []
    for epochs in (1, 2):
        code, out, err = _quiet([*base, f"Epochs={epochs}"])
        assert code == 0, err[-3000:]
        assert "tracking: recorded in sqlite:///" in out
        runs.append(out)
    yield {"root": root, "data": data, "outputs": runs}
    stop_all(root)


def _client(root: Path) -> Any:
    from mlflow.tracking import MlflowClient

    from pipelines.local.track import store_uri

    return MlflowClient(tracking_uri=store_uri(root))


@pytest.mark.slow
def test_each_execution_is_a_run_tree_with_its_jobs_trials_and_evaluation(tracked: dict[str, Any]) -> None:
    from pipelines.local.records import list_executions

    client = _client(tracked["root"])
    experiment = client.get_experiment_by_name("digits-quickstart")
    newest = list_executions(tracked["root"])[0]
    query = f"tags.`smp.execution` = '{newest['id']}' and tags.`smp.kind` = 'execution'"
    parent = client.search_runs([experiment.experiment_id], query)[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["Epochs"] == "2" and parent.data.params["TuningJobs"] == "2"
    tags = parent.data.tags
    assert tags["smp.gate"] == "passed" and tags["smp.model_package"].startswith("digits-quickstart:2")
    assert tags["smp.endpoint"].startswith("digits-quickstart http://127.0.0.1:")
    assert len(tags["smp.spec_sha256"]) == 64 and tags["smp.spec"] == "config/digits.yaml"
    assert "smp.git_commit" in tags
    assert parent.data.metrics["evaluate.weighted_recall"] > 0.5
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "definition.json" in artifacts
    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    kinds = sorted(c.data.tags["smp.kind"] for c in children)
    assert kinds == ["evaluation", "job", "job"]  # two tuning trials and the evaluation
    trials = [c for c in children if c.data.tags["smp.kind"] == "job"]
    for trial in trials:  # each trial: its hyperparameters (static and tuned), its curves per epoch, its model
        assert {"lr", "dropout", "epochs", "batch-size"} <= set(trial.data.params)
        assert not any(k.startswith("sagemaker_") for k in trial.data.params)
        history = client.get_metric_history(trial.info.run_id, "val_weighted_recall")
        assert [m.step for m in history] == [1, 2]
        assert trial.data.tags["smp.model"].endswith("/output/model.tar.gz")
        assert trial.info.status == "FINISHED"
    assert sum(t.data.tags.get("smp.best") == "true" for t in trials) == 1
    evaluation = next(c for c in children if c.data.tags["smp.kind"] == "evaluation")
    assert "weighted_recall" in evaluation.data.metrics
    assert {"evaluation.json", "predictions.csv"} <= {a.path for a in client.list_artifacts(evaluation.info.run_id)}
    # the report links each job to its run
    report = (tracked["root"] / "executions" / newest["id"] / "report.html").read_text()
    assert f"/runs/{parent.info.run_id}" in report and all(f"/runs/{t.info.run_id}" in report for t in trials)


@pytest.mark.slow
def test_compare_prints_executions_side_by_side(tracked: dict[str, Any]) -> None:
    code, out, err = _quiet(["compare", "--root", str(tracked["root"]), "--json"])
    assert code == 0, err
    found = json.loads(out)
    assert [e["parameters"]["Epochs"] for e in found] == ["2", "1"]  # newest first
    assert all(e["gate"] == "passed" and e["best_job"] and "lr" in e["best_params"] for e in found)
    assert all("val_weighted_recall" in e["best_metrics"] for e in found)
    code, out, _ = _quiet(["compare", "--root", str(tracked["root"])])
    assert code == 0 and "parameter Epochs" in out and "evaluate.weighted_recall" in out


@pytest.mark.slow
def test_recording_again_and_at_once_loses_and_doubles_nothing(tracked: dict[str, Any]) -> None:
    """Two writers recording the same executions at the same time (the lock takes turns), then again: one
    tree per execution, each job once."""
    from pipelines.local.records import list_executions
    from pipelines.local.track import record

    root = tracked["root"]
    ids = [e["id"] for e in list_executions(root)]
    errors: list[BaseException] = []

    def write(execution: str) -> None:
        try:
            record(root, execution)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in ids + ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    client = _client(root)
    experiment = client.get_experiment_by_name("digits-quickstart").experiment_id
    parents = client.search_runs([experiment], "tags.`smp.kind` = 'execution'")
    assert sorted(p.data.tags["smp.execution"] for p in parents) == sorted(ids)
    jobs = client.search_runs([experiment], "tags.`smp.kind` = 'job'")
    assert len(jobs) == len({j.data.tags["smp.job"] for j in jobs}) == 2 * len(ids)


@pytest.mark.slow
def test_gc_keeps_what_a_kept_executions_runs_point_to(tracked: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    from pipelines.local.records import list_executions

    root = tmp_path / "copy"
    shutil.copytree(tracked["root"], root, ignore=shutil.ignore_patterns("endpoints"))
    newest = list_executions(root)[0]["id"]
    assert _quiet(["local", "gc", "--keep", "1", "--root", str(root)])[0] == 0
    client = _client(root)
    experiment = client.get_experiment_by_name("digits-quickstart").experiment_id
    parents = client.search_runs([experiment], "tags.`smp.kind` = 'execution'")
    assert [p.data.tags["smp.execution"] for p in parents] == [newest]  # the removed one's runs are deleted
    from pipelines.local.store import ObjectStore

    store = ObjectStore(root / "s3")
    for job in client.search_runs([experiment], "tags.`smp.kind` = 'job'"):
        assert store.exists(job.data.tags["smp.model"])  # each kept run's model is still there
    evaluation = client.search_runs([experiment], "tags.`smp.kind` = 'evaluation'")[0]
    assert client.list_artifacts(evaluation.info.run_id)  # and its artifacts


@pytest.mark.slow
def test_by_default_a_run_is_recorded_in_the_background_and_its_report_then_links_its_runs(
    tracked: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.local.records import load_execution

    monkeypatch.delenv("SMP_TRACKING", raising=False)
    code, out, err = _quiet(["local", "run", "config/digits.yaml", "--root", str(tracked["root"]), "--mount",
                             f"sm-pipelines-data={tracked['data']}", "TuningJobs=2", "Epochs=1",
                             "AccuracyThreshold=0.5"])  # fmt: skip
    assert code == 0, err[-2000:]
    assert "tracking: recording in MLflow in the background" in out
    execution = load_execution(tracked["root"], "latest")["id"]
    directory = tracked["root"] / "executions" / execution
    deadline = time.time() + 120
    while "parent" not in json.loads((directory / "tracking.json").read_text()):
        assert time.time() < deadline, (directory / "tracking.log").read_text()
        time.sleep(0.5)
    settings = json.loads((directory / "tracking.json").read_text())
    assert f"/runs/{settings['parent']}" in (directory / "report.html").read_text()


def test_a_stopped_execution_leaves_its_runs_killed_not_running(tmp_path: Path) -> None:
    from pipelines.local.track import record
    from tests.tools.engine import engine_with, processing_step

    execution = engine_with(tmp_path, {"ok.py": "print('ok')"}, [processing_step("a", "ok.py")])
    assert execution.run() == "Succeeded"
    record_path = tmp_path / "executions" / execution.id / "execution.json"
    saved = json.loads(record_path.read_text())
    saved["status"] = "Stopped"
    record_path.write_text(json.dumps(saved))
    done = record(tmp_path, execution.id)
    run = _client(tmp_path).get_run(done["parent"])
    assert run.info.status == "KILLED" and run.data.tags["smp.status"] == "Stopped"


# --------------------------------------------------------------------------- train.py logs by itself


def test_train_py_logs_its_run_only_when_a_tracking_uri_is_set(digits_shards: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = training_env(tmp_path, digits_shards / "train", digits_shards / "validation")
    env |= {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "jobs", "TRAINING_JOB_NAME": "job-1"}
    done = run_step("train.py", "--epochs", "3", "--batch-size", "64", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    client = MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("jobs").experiment_id], "tags.`smp.job` = 'job-1'")[0]
    assert run.info.status == "FINISHED" and run.data.params["epochs"] == "3"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_weighted_recall")] == [1, 2, 3]
    assert "best_epoch" in run.data.metrics and "model_dir" not in run.data.params
    untracked = training_env(tmp_path / "again", digits_shards / "train", digits_shards / "validation")
    script = str(ROOT / "steps" / "train.py")
    code = (f"import sys, runpy; sys.argv = [{script!r}, '--epochs', '1', '--batch-size', '64']\n"
            f"try:\n    runpy.run_path({script!r}, run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code\nprint('MLFLOW' if 'mlflow' in sys.modules else 'NONE')")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **untracked}, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("NONE")  # without a tracking URI MLflow is never imported


def test_a_job_that_cannot_reach_the_tracking_server_still_trains_and_says_so_once(
    digits_shards: Path, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    env = training_env(tmp_path, digits_shards / "train", digits_shards / "validation")
    env |= {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}", "TRAINING_JOB_NAME": "job-2"}
    done = run_step("train.py", "--epochs", "2", "--batch-size", "64", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    said = [line for line in done.stdout.splitlines() if line.startswith("tracking:")]
    assert len(said) == 1 and "training goes on without MLflow" in said[0], said
    assert (tmp_path / "model" / "model.pth").exists()


# --------------------------------------------------------------------------- a real MLflow server over REST


@pytest.mark.slow
def test_an_execution_recorded_into_a_real_mlflow_server_is_read_back_over_rest(
    tracked: dict[str, Any], tmp_path: Path
) -> None:
    """What `make pipeline-run` does against SageMaker's managed MLflow (the same Recorder, another URI), here
    against MLflow's own server on 127.0.0.1, read back with MLflow's REST API."""
    from pipelines.local.records import list_executions
    from pipelines.local.view import load_view
    from pipelines.report.tracking import Recorder

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "artifacts")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "mlflow server did not start"
                time.sleep(0.5)
        ran = [e for e in list_executions(tracked["root"]) if not e["steps"]["tune"]["cache_hit"]]
        view = load_view(tracked["root"], ran[0]["id"])  # one whose trials ran in it (not a cache hit)
        view.where = "sagemaker"
        done = Recorder(url, "remote-digits").record(view)
        request = urllib.request.Request(
            f"{url}/api/2.0/mlflow/runs/search", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"experiment_ids": [done["experiment_id"]], "max_results": 50}).encode(),
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as answer:
            runs = json.loads(answer.read())["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        assert sorted(t["smp.kind"] for t in tags) == ["evaluation", "execution", "job", "job"]
        assert all(t.get("mlflow.parentRunId") == done["parent"] for t in tags if t["smp.kind"] != "execution")
        assert next(t for t in tags if t["smp.kind"] == "execution")["smp.where"] == "sagemaker"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_a_tracking_server_that_cannot_be_reached_costs_the_remote_command_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli.remote import record_remote
    from pipelines.report.view import RunView

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    view = RunView(pipeline="p", id="e", status="Succeeded", definition={}, parameters={}, steps={}, where="sagemaker")
    record_remote(view, {"uri": f"http://127.0.0.1:{port}", "experiment": "x"})
    err = capsys.readouterr().err
    assert f"warning: tracking: the execution was not recorded in http://127.0.0.1:{port}" in err
    assert view.tracking is None


def test_a_sagemaker_jobs_own_run_is_adopted_as_the_executions_child(tmp_path: Path) -> None:
    """On SageMaker train.py logs its run itself (tagged with its job name); recording the execution afterwards
    (what pipeline-run does) makes that run the execution's child instead of logging the job twice."""
    import sys as _sys

    from pipelines.report.tracking import Recorder
    from pipelines.report.view import RunView, StepView

    _sys.path.insert(0, str(ROOT / "steps"))
    from tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    job = "pipelines-abc-train-0a1b2c"
    said: list[str] = []
    tracker = Tracker({"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "digits-team",
                       "TRAINING_JOB_NAME": job}, said.append)  # fmt: skip
    tracker.start({"epochs": 2, "lr": 0.01})
    for epoch in (1, 2):
        tracker.metrics({"val_weighted_recall": 0.5 + epoch / 10}, epoch)
    tracker.finish()
    own = tracker.client.search_runs([tracker.client.get_experiment_by_name("digits-team").experiment_id])[0]
    result = {"TrainingJobName": job, "TrainingJobStatus": "Completed", "HyperParameters": {"epochs": "2"},
              "FinalMetricDataList": [{"MetricName": "val_weighted_recall", "Value": 0.7}],
              "ModelArtifacts": {"S3ModelArtifacts": f"s3://b/p/train/{job}/output/model.tar.gz"}}  # fmt: skip
    view = RunView(pipeline="digits-quickstart", id="abc", status="Succeeded", definition={}, parameters={"Epochs": 2},
                   steps={"train": StepView(name="train", type="Training", status="Succeeded", result=result)},
                   where="sagemaker", curves={job: {"val_weighted_recall": [0.6, 0.7]}})  # fmt: skip
    done = Recorder(uri, "digits-team").record(view)
    client = tracker.client
    runs = client.search_runs([done["experiment_id"]])
    assert len(runs) == 2  # the execution and the job's own run: nothing logged twice
    child = client.get_run(own.info.run_id)
    assert done["runs"]["train"] == own.info.run_id
    assert child.data.tags["mlflow.parentRunId"] == done["parent"]
    assert child.data.tags["smp.model"] == f"s3://b/p/train/{job}/output/model.tar.gz"
    assert [m.step for m in client.get_metric_history(own.info.run_id, "val_weighted_recall")] == [1, 2]
    assert client.get_run(done["parent"]).data.tags["smp.where"] == "sagemaker"
