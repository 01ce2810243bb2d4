"""``kind: automl`` (Autopilot, ENSEMBLING; locally AutoGluon) and ``kind: transform`` (batch transform): the
spec's rules, the definition as SDK v2 emits it, the bad tables Autopilot refuses, the transform's batching,
the evaluation of predictions, the tabular quickstart end to end (invoked with a CSV row), and the remote view."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.cli import main
from tests.tools.datasets import write_breast_cancer

ROOT = Path(__file__).resolve().parents[1]
TABULAR = ROOT / "config" / "tabular.yaml"


# --------------------------------------------------------------------------- the spec


def _validate(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    code = main(["validate", str(path)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    objective: F1\n", "    objective: F2\n", "'F2' is not an Autopilot metric for BinaryClassification"),
        ("    objective: F1\n", "    objective: MSE\n", "it is a Regression metric"),
        ("    problem_type: BinaryClassification\n", "", "an objective needs a problem_type"),
        ("algorithms: [lightgbm, catboost, xgboost, linear-learner, randomforest]", "algorithms: [lightgbm, sklearn]",
         "choose one of catboost, extra-trees, fastai"),
        ("algorithms: [lightgbm, catboost,", "algorithms: [lightgbm, lightgbm,", "lists an algorithm twice"),
        ("max_candidates: 6", "max_candidates: 751", "less than or equal to 750"),
        ("validation_fraction: 0.2", "validation_fraction: 1", "less than 1"),
        ("metric: evaluate.balanced_accuracy", "metric: automl.AUC", "automl step 'automl' produces no metric 'AUC'"),
        ("metric: evaluate.balanced_accuracy", "metric: split.x", "'split' is not a step whose metrics a gate reads"),
        ("    split_type: Line\n", "    split_type: None\n", "MultiRecord batches the records of a split input"),
        ("    accept: text/csv\n    instance", "    max_payload_mb: 101\n    accept: text/csv\n    instance",
         "less than or equal to 100"),
        ("    instance: {type: ml.m5.large}\n\n  - name: evaluate", "    instance: {type: ml.m5.huge}\n\n  - name: "
         "evaluate", "TransformInstanceType"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)  # fmt: skip
def test_the_specs_rules_are_refused_at_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str
) -> None:
    text = TABULAR.read_text()
    assert old in text
    code, err = _validate(tmp_path, text.replace(old, new, 1), capsys)
    assert code == 2 and message in err, err
    assert "spec.yaml:" in err and "Traceback" not in err


@pytest.mark.parametrize("metric", ["automl.objective", "automl.F1"])
def test_the_gate_may_read_the_best_candidates_objective(tmp_path: Path, metric: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(TABULAR.read_text().replace("metric: evaluate.balanced_accuracy", f"metric: {metric}"))
    assert main(["definition", str(spec), "--out", str(tmp_path / "d.json")]) == 0
    gate = next(s for s in json.loads((tmp_path / "d.json").read_text())["Steps"] if s["Type"] == "Condition")
    left = gate["Arguments"]["Conditions"][0]["LeftValue"]
    assert left == {"Get": "Steps.automl.BestCandidate.FinalAutoMLJobObjectiveMetric.Value"}


# --------------------------------------------------------------------------- the definition


def _definition(tmp_path: Path) -> dict[str, Any]:
    assert main(["definition", str(TABULAR), "--out", str(tmp_path / "d.json")]) == 0
    return json.loads((tmp_path / "d.json").read_text())


def _steps(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found, stack = {}, list(definition["Steps"])
    while stack:
        step = stack.pop()
        found[step["Name"]] = step
        stack += step.get("Arguments", {}).get("IfSteps", []) + step.get("Arguments", {}).get("ElseSteps", [])
    return found


def test_the_automl_step_is_what_sdk_v2s_automl_fit_emits_with_the_algorithms_added(tmp_path: Path) -> None:
    """Compiled by hand with the SDK's own AutoML/AutoMLStep, the request is ours less AlgorithmsConfig (which
    the V1 AutoML class cannot set); the models read the best candidate as get_best_auto_ml_model does."""
    from pipelines.compiler.context import offline_aws, offline_session, sdk_environment
    from pipelines.settings import Settings

    steps = _steps(_definition(tmp_path))
    ours = steps["automl"]["Arguments"]
    assert ours["AutoMLJobConfig"]["Mode"] == "ENSEMBLING" and "AutoMLJobName" not in ours
    generation = ours["AutoMLJobConfig"].pop("CandidateGenerationConfig")
    assert generation == {"AlgorithmsConfig": [{"AutoMLAlgorithms": ["lightgbm", "catboost", "xgboost",
                                                                     "linear-learner", "randomforest"]}]}  # fmt: skip
    with offline_aws():
        sdk_environment()
        from sagemaker.automl.automl import AutoML, AutoMLInput
        from sagemaker.workflow.automl_step import AutoMLStep

        settings = Settings()
        session = offline_session(settings)
        automl = AutoML(role=settings.role, target_attribute_name="diagnosis", sagemaker_session=session,
                        output_path=f"s3://{settings.bucket}/tabular-quickstart/automl", mode="ENSEMBLING",
                        problem_type="BinaryClassification", job_objective={"MetricName": "F1"}, max_candidates=6,
                        total_job_runtime_in_seconds=120, validation_fraction=0.2)  # fmt: skip
        uri = {"Get": "Steps.split.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}
        args = automl.fit(inputs=AutoMLInput(inputs="PLACEHOLDER", target_attribute_name="diagnosis"), wait=False)
        theirs = json.loads(json.dumps(AutoMLStep(name="automl", step_args=args).arguments))
    theirs["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = uri
    assert ours == theirs
    best = "Steps.automl.BestCandidate.InferenceContainers[0]"
    for model in ("predict-model-CreateModel", "deploy-model-CreateModel"):
        container = steps[model]["Arguments"]["PrimaryContainer"]
        assert container["Image"] == {"Get": f"{best}.Image"}
        assert container["ModelDataUrl"] == {"Get": f"{best}.ModelDataUrl"}
        assert container["Environment"]["SAGEMAKER_PROGRAM"] == {"Get": f"{best}.Environment['SAGEMAKER_PROGRAM']"}
        assert set(container["Environment"]) == {"MODEL_NAME", "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT",
                                                 "SAGEMAKER_SUBMIT_DIRECTORY", "SAGEMAKER_INFERENCE_SUPPORTED",
                                                 "SAGEMAKER_INFERENCE_OUTPUT", "SAGEMAKER_PROGRAM"}  # fmt: skip
    registered = steps["register-RegisterModel"]["Arguments"]["InferenceSpecification"]["Containers"][0]
    assert registered["ModelDataUrl"] == {"Get": f"{best}.ModelDataUrl"}
    transform = steps["predict"]["Arguments"]
    assert transform["ModelName"] == {"Get": "Steps.predict-model-CreateModel.ModelName"}
    assert transform["MaxPayloadInMB"] == 6 and transform["BatchStrategy"] == "MultiRecord"
    assert transform["TransformInput"]["SplitType"] == "Line" and transform["TransformOutput"]["AssembleWith"] == "Line"
    evaluate = {i["InputName"]: i["S3Input"]["S3Uri"] for i in steps["evaluate"]["Arguments"]["ProcessingInputs"]}
    assert evaluate["predictions"] == {"Get": "Steps.predict.TransformOutput.S3OutputPath"}


# --------------------------------------------------------------------------- bad tables


def _table(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header or ["x", "y", "label"])
        writer.writerows(rows)
    return path


def _rows(n: int, classes: int = 2) -> list[list[str]]:
    return [[str(i), str(i % 7), f"c{i % classes}"] for i in range(n)]


@pytest.mark.parametrize(
    ("write", "target", "message"),
    [
        (lambda d: _table(d / "t.csv", _rows(600)), "Label", "no column 'Label', the target; did you mean 'label'?"),
        (lambda d: _table(d / "t.csv", _rows(600, classes=1)), "label",
         "the target 'label' holds a single value ('c0') in every row"),
        (lambda d: _table(d / "t.csv", _rows(499)), "label",
         "499 rows have a target value; Autopilot needs at least 500 rows"),
        (lambda d: (d / "t.csv").write_bytes(b"x,y,label\n1,2,a\n3,\xff4,b\n"), "label",
         "t.csv: line 3 is not UTF-8 (byte 0xff at offset 18)"),
        (lambda d: (d / "t.csv").write_text("x,y,label\n1,2,a\n3,4\n"), "label",
         "t.csv: line 3 has 2 fields where the header has 3"),
        (lambda d: _table(d / "t.csv", [[r[0], "", r[2]] for r in _rows(600)]), "label",
         "column 'y' is empty in every row"),
        (lambda d: _table(d / "t.csv", _rows(600), ["x", "x", "label"]), "label", "the header row names 'x' twice"),
        (lambda d: (d / "t.csv").write_text(""), "label", "t.csv: the file is empty"),
    ],
    ids=["missing-target", "single-class", "too-few-rows", "not-utf8", "ragged", "empty-column", "duplicate-header",
         "empty-file"],
)  # fmt: skip
def test_a_table_autopilot_refuses_gets_one_line_naming_the_file_and_the_rule(
    tmp_path: Path, write: Any, target: str, message: str
) -> None:
    from pipelines.local.automl import search

    data = tmp_path / "data"
    data.mkdir()
    write(data)
    with pytest.raises(search.TableError) as caught:
        table, _ = search.read_table(data, "s3://b/data/", None)
        search.check_table(table, target, "s3://b/data/", None)
    assert message in str(caught.value) and "\n" not in str(caught.value), caught.value
    assert "s3://b/data/" in str(caught.value)


AUTOML_ONLY = """\
name: automl-only
steps:
  - name: automl
    kind: automl
    input: s3://tables/bad/
    target: label
    max_runtime_seconds: 60
"""


def test_a_bad_table_fails_the_step_in_one_line_and_publishes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tables" / "bad").mkdir(parents=True)
    (tmp_path / "tables" / "bad" / "t.csv").write_text("x,y,label\n1,2,a\n3,4\n")
    spec = tmp_path / "automl.yaml"
    spec.write_text(AUTOML_ONLY)
    root = tmp_path / "runs"
    code = main(["local", "run", str(spec), "--root", str(root), "--mount", f"tables={tmp_path / 'tables'}"])
    err = capsys.readouterr().err
    assert code == 1
    assert ("step 'automl' failed: ClientError: s3://tables/bad/t.csv: line 3 has 2 fields where the header has 3"
            in err), err  # fmt: skip
    record = json.loads(next((root / "executions").glob("*/execution.json")).read_text())
    assert record["steps"]["automl"]["status"] == "Failed"
    written = [p for p in (root / "s3").rglob("*") if p.is_file() and "automl-only/automl" in p.as_posix()]
    assert written == []  # no model, no leaderboard


# --------------------------------------------------------------------------- batch transform and evaluation


def test_a_transform_packs_whole_records_into_requests_within_max_payload(tmp_path: Path) -> None:
    from pipelines.local.transform_job import TransformError, _requests

    table = tmp_path / "t.csv"
    table.write_bytes(b"".join(f"{i},{'x' * 20}\n".encode() for i in range(100)))  # 23-24 bytes a record
    job = {"max_payload_bytes": 100, "split_type": "Line", "batch_strategy": "MultiRecord"}
    batches = list(_requests(table, "s3://b/t.csv", job))
    assert sum(n for _, n in batches) == 100 and all(len(body) <= 100 for body, _ in batches)
    assert b"".join(body for body, _ in batches) == table.read_bytes()  # every record once, in order, whole
    assert max(n for _, n in batches) == 4
    single = list(_requests(table, "s3://b/t.csv", job | {"batch_strategy": "SingleRecord"}))
    assert len(single) == 100
    whole = list(_requests(table, "s3://b/t.csv", job | {"split_type": "None", "max_payload_bytes": 10**6}))
    assert whole == [(table.read_bytes(), 1)]
    table.write_bytes(b"1,2\n" + b"9" * 200 + b"\n")
    with pytest.raises(TransformError, match=r"s3://b/t.csv: the record at line 2 is 201 bytes, over MaxPayloadInMB"):
        list(_requests(table, "s3://b/t.csv", job))


def _model_archive(path: Path, labels: list[Any]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"labels": labels, "features": ["x"], "target": "y", "problem_type": "BinaryClassification"})
    with tarfile.open(path / "model.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("code/automl.json")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta.encode()))
    return path


def _evaluate(tmp_path: Path, predictions: str, labels: str, model: Path | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "p").mkdir(exist_ok=True)
    (tmp_path / "p" / "test.csv.out").write_text(predictions)
    (tmp_path / "l").mkdir(exist_ok=True)
    (tmp_path / "l" / "labels.csv").write_text(labels)
    cmd = [sys.executable, str(ROOT / "steps" / "evaluate_table.py"), "--predictions", str(tmp_path / "p"),
           "--labels", str(tmp_path / "l"), "--evaluation", str(tmp_path / "e")]  # fmt: skip
    cmd += ["--model", str(model)] if model else []
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_the_evaluation_scores_predictions_and_refuses_a_class_the_model_never_saw(tmp_path: Path) -> None:
    model = _model_archive(tmp_path / "m", ["benign", "malignant"])
    done = _evaluate(tmp_path, "benign\nmalignant\nbenign\nbenign\n", "d\nbenign\nmalignant\nmalignant\nbenign\n",
                     model)  # fmt: skip
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "e" / "evaluation.json").read_text())["metrics"]
    assert metrics["accuracy"]["value"] == 0.75 and metrics["balanced_accuracy"]["value"] == 0.75
    assert metrics["f1_macro"]["value"] == pytest.approx((2 / 3 + 0.8) / 2)
    unseen = _evaluate(tmp_path, "benign\nbenign\n", "d\nbenign\nunknown\n", model)
    assert unseen.returncode == 2
    assert ("labels.csv line 3: class 'unknown' was never seen in training (the model knows 'benign', 'malignant')"
            in unseen.stderr)  # fmt: skip
    regression = _evaluate(tmp_path, "1.5\n2.5\n3.0\n", "y\n1.0\n2.0\n3.5\n")
    assert regression.returncode == 0, regression.stderr
    metrics = json.loads((tmp_path / "e" / "evaluation.json").read_text())["metrics"]
    assert metrics["mae"]["value"] == pytest.approx(0.5) and metrics["mse"]["value"] == pytest.approx(0.25)
    short = _evaluate(tmp_path, "benign\n", "d\nbenign\nmalignant\n", model)
    assert short.returncode == 2 and "1 predictions for 2 labels" in short.stderr


# --------------------------------------------------------------------------- the tabular quickstart


@pytest.fixture(scope="module")
def tabular(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from pipelines.local.serving import stop_all

    data = tmp_path_factory.mktemp("data")
    write_breast_cancer(data / "tabular")
    root = tmp_path_factory.mktemp("runs")
    out, err = io.StringIO(), io.StringIO()
    import contextlib

    argv = ["local", "run", str(TABULAR), "--root", str(root), "--mount", f"sm-pipelines-data={data}"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code == 0, err.getvalue()[-3000:]
    record = json.loads(next((root / "executions").glob("*/execution.json")).read_text())
    yield {"root": root, "data": data, "record": record, "out": out.getvalue(), "argv": argv}
    stop_all(root)


def _result(env: dict[str, Any], step: str) -> dict[str, Any]:
    path = env["root"] / "executions" / env["record"]["id"] / "steps" / step / "result.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@pytest.mark.slow
def test_the_tabular_quickstart_runs_automl_transform_evaluation_gate_and_deploys(tabular: dict[str, Any]) -> None:
    from pipelines.local.store import ObjectStore

    steps = tabular["record"]["steps"]
    assert tabular["record"]["status"] == "Succeeded"
    assert {n: s["status"] for n, s in steps.items() if n != "quality-gate-failed"} == dict.fromkeys(
        ["split", "automl", "predict-model-CreateModel", "predict", "evaluate", "quality-gate",
         "register-RegisterModel", "deploy-if-approved", "deploy-model-CreateModel", "deploy-config", "deploy"],
        "Succeeded")  # fmt: skip
    automl = _result(tabular, "automl")
    best = automl["BestCandidate"]
    assert automl["AutoMLJobStatus"] == "Completed" and automl["ProblemType"] == "BinaryClassification"
    assert best["FinalAutoMLJobObjectiveMetric"]["MetricName"] == "F1"
    assert best["FinalAutoMLJobObjectiveMetric"]["Value"] > 0.9
    assert best["InferenceContainers"][0]["Environment"]["SAGEMAKER_PROGRAM"] == "tabular_serve.py"
    names = [c["CandidateName"] for c in automl["Candidates"]]
    assert len(names) == 6 and best["CandidateName"] in names  # five algorithms and their ensemble
    algorithms = {c["Algorithm"] for c in automl["Candidates"]}
    assert algorithms == {"lightgbm", "catboost", "xgboost", "linear-learner", "randomforest", "ensemble"}
    store = ObjectStore(tabular["root"] / "s3", {"sm-pipelines-data": tabular["data"]})
    predictions = _result(tabular, "predict")["TransformOutput"]["S3OutputPath"]
    lines = store.path(predictions.rstrip("/") + "/test.csv.out").read_text().splitlines()
    assert len(lines) == 57 and set(lines) <= {"benign", "malignant"}  # the held-out rows, one prediction each
    assert "evaluate: accuracy=" in tabular["out"] and "automl: best of 6 candidate(s)" in tabular["out"]
    report = (tabular["root"] / "executions" / tabular["record"]["id"] / "report.html").read_text()
    assert "Candidates: automl" in report and "seconds since start" in report  # the leaderboard, metric v. time
    assert (tabular["root"] / "executions" / tabular["record"]["id"] / "steps" / "automl" / "log.txt").read_text(
    ).count("candidate ") >= 6  # fmt: skip


@pytest.mark.slow
def test_the_goldens_property_paths_resolve_against_the_tabular_run(tabular: dict[str, Any]) -> None:
    from pipelines.local.expressions import path_tokens, walk
    from tests.test_local import golden_gets

    gets = golden_gets(("tabular.json",))
    assert {t for _, _, t, _ in gets} >= {"AutoML", "Transform", "Model", "Processing"}
    for golden, step, _, path in gets:
        result = _result(tabular, step)
        if path.startswith("PropertyFiles."):
            assert path.split(".", 1)[1] in result["PropertyFiles"]
        else:
            walk(result, path_tokens(path), f"{golden}: Steps.{step}")


def _post(port: int, body: bytes, content_type: str, accept: str) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body, method="POST",
                                     headers={"Content-Type": content_type, "Accept": accept})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
def test_the_endpoint_answers_a_csv_row_in_autopilots_shapes(
    tabular: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.local.serving import find

    with (tabular["data"] / "tabular" / "breast_cancer.csv").open() as handle:
        rows = list(csv.reader(handle))
    features, row = rows[0][:-1], rows[1][:-1]
    root = str(tabular["root"])
    assert main(["invoke", "tabular-quickstart", "--body", ",".join(row), "--local", "--root", root]) == 0
    assert "--body: predicted_label=malignant" in capsys.readouterr().out  # the first row is malignant
    port = find(tabular["root"], "tabular-quickstart")["port"]
    status, text = _post(port, ",".join(row).encode(), "text/csv", "text/csv")
    assert (status, text) == (200, "malignant\n")
    status, text = _post(port, ("\n".join(",".join(r[:-1]) for r in rows[1:4])).encode(), "text/csv",
                         "application/json")  # fmt: skip
    predictions = json.loads(text)["predictions"]
    assert status == 200 and len(predictions) == 3 and set(predictions[0]) == {"predicted_label"}
    by_name = json.dumps({"instances": [dict(zip(features, map(float, row), strict=True))]}).encode()
    status, text = _post(port, by_name, "application/json", "application/jsonlines")
    assert status == 200 and json.loads(text.splitlines()[0])["predicted_label"] == "malignant"
    status, text = _post(port, b"1,2,3", "text/csv", "text/csv")
    assert status == 400 and "CSV row 1 has 3 values; the model takes 30" in text
    assert _post(port, b"x", "image/png", "text/csv")[0] == 415
    assert _post(port, ",".join(row).encode(), "text/csv", "text/html")[0] == 406


@pytest.mark.slow
def test_a_second_run_reuses_the_automl_step_from_the_cache(tabular: dict[str, Any]) -> None:
    out, err = io.StringIO(), io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(tabular["argv"]) == 0, err.getvalue()[-2000:]
    from pipelines.local.records import load_execution

    second = load_execution(tabular["root"], "latest")
    assert second["id"] != tabular["record"]["id"]
    assert second["steps"]["split"]["cache_hit"] and second["steps"]["automl"]["cache_hit"]


# --------------------------------------------------------------------------- the remote view


def test_the_remote_view_reads_the_candidates_as_a_leaderboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SageMaker stubbed (moto has no Autopilot), S3 by moto: the best candidate's model is downloaded."""
    import boto3
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="models-bucket")
        boto3.client("s3").put_object(Bucket="models-bucket", Key="m/model.tar.gz", Body=b"model")
        _remote_view(tmp_path)


def _remote_view(tmp_path: Path) -> None:
    import datetime

    from botocore.stub import Stubber

    from pipelines.remote import Remote
    from pipelines.report import summary
    from pipelines.settings import Settings

    definition = _definition(tmp_path)
    remote = Remote(Settings(region="us-east-1", role_arn="arn:aws:iam::123456789012:role/r", default_bucket="b"),
                    echo=lambda _: None)  # fmt: skip
    arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/tabular-quickstart/execution/abc"
    job = "arn:aws:sagemaker:us-east-1:123456789012:automl-job/automl-abc"
    when = datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC)
    later = when + datetime.timedelta(seconds=30)
    container = {"Image": "i", "ModelDataUrl": "s3://models-bucket/m/model.tar.gz", "Environment": {}}

    def candidate(name: str, value: float, algorithm: str) -> dict[str, Any]:
        return {"CandidateName": name, "CandidateStatus": "Completed", "ObjectiveStatus": "Succeeded",
                "CreationTime": when, "EndTime": later, "LastModifiedTime": later,
                "FinalAutoMLJobObjectiveMetric": {"MetricName": "F1", "Value": value, "Type": "Maximize"},
                "CandidateSteps": [{"CandidateStepType": "AWS::SageMaker::TrainingJob", "CandidateStepArn": "a",
                                    "CandidateStepName": algorithm}], "InferenceContainers": [container]}  # fmt: skip

    sm = Stubber(remote.sm)
    sm.add_response("describe_pipeline_execution", {"PipelineExecutionStatus": "Succeeded", "CreationTime": when,
                    "LastModifiedTime": when}, {"PipelineExecutionArn": arn})  # fmt: skip
    sm.add_response("describe_pipeline_definition_for_execution", {"PipelineDefinition": json.dumps(definition)},
                    {"PipelineExecutionArn": arn})  # fmt: skip
    sm.add_response("list_pipeline_parameters_for_execution", {"PipelineParameters": []}, {"PipelineExecutionArn": arn})
    sm.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": [
        {"StepName": "automl", "StepStatus": "Succeeded", "StartTime": when, "Metadata": {"AutoMLJob": {"Arn": job}}}]},
        {"PipelineExecutionArn": arn, "SortOrder": "Ascending"})  # fmt: skip
    best = candidate("c-ensemble", 0.97, "ensemble")
    sm.add_response("describe_auto_ml_job", {
        "AutoMLJobName": "automl-abc", "AutoMLJobArn": job, "RoleArn": remote.settings.role,
        "InputDataConfig": [{"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/t/"}},
                             "TargetAttributeName": "diagnosis"}],
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"}, "CreationTime": when, "LastModifiedTime": later,
        "AutoMLJobStatus": "Completed", "AutoMLJobSecondaryStatus": "Completed", "BestCandidate": best,
        "ProblemType": "BinaryClassification"}, {"AutoMLJobName": "automl-abc"})  # fmt: skip
    sm.add_response("list_candidates_for_auto_ml_job", {"Candidates": [best, candidate("c-gbm", 0.95, "lightgbm")]},
                    {"AutoMLJobName": "automl-abc", "SortBy": "FinalObjectiveMetricValue"})  # fmt: skip
    with sm:
        view = remote.view(arn, tmp_path / "remote")
    lines = summary.lines(view)
    assert any("automl: best of 2 candidate(s) c-ensemble: F1=0.97 (BinaryClassification)" in line for line in lines)
    assert any("c-gbm (lightgbm): 0.95" in line for line in lines), lines
    assert [c["Name"] for c in view.children["automl"]] == ["c-ensemble", "c-gbm"]
    assert (tmp_path / "remote" / "automl" / "model.tar.gz").read_bytes() == b"model"
