"""Running on SageMaker, against moto (mock_aws) and botocore's Stubber for what moto lacks."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from pipelines.cli import main
from pipelines.compiler import compile_pipeline
from pipelines.loader import load_spec
from pipelines.parameters import ParameterError, parse_overrides
from pipelines.remote import Remote, remote_step
from pipelines.report.view import RunView
from pipelines.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = Settings(region="us-east-1", role_arn="arn:aws:iam::123456789012:role/exec", default_bucket="bucket")
EXEC_ARN = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/digits-quickstart/execution/abc123"


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("SMP_ROLE_ARN", "SMP_DEFAULT_BUCKET", "SMP_NAME_PREFIX"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def spec():  # type: ignore[no-untyped-def]
    return load_spec(ROOT / "config" / "digits.yaml")


@mock_aws
def test_upsert_uploads_code_then_creates_and_later_updates_the_pipeline(spec) -> None:  # type: ignore[no-untyped-def]
    boto3.client("s3").create_bucket(Bucket="bucket")
    compiled = compile_pipeline(spec, SETTINGS)
    said: list[str] = []
    remote = Remote(SETTINGS, echo=said.append)
    arn = remote.upsert(compiled.name, compiled.definition, compiled.uploads(), spec.description, spec.tags)
    assert arn.endswith(":pipeline/digits-quickstart")
    described = boto3.client("sagemaker").describe_pipeline(PipelineName="digits-quickstart")
    assert json.loads(described["PipelineDefinition"]) == json.loads(compiled.definition)
    assert described["RoleArn"] == SETTINGS.role_arn
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="bucket")["Contents"]}
    assert f"digits-quickstart/code/{compiled.code.digest}/sourcedir.tar.gz" in keys
    assert f"digits-quickstart/code/{compiled.code.digest}/scripts/train.py" in keys
    assert "created pipeline digits-quickstart" in said

    said.clear()
    remote.upsert(
        compiled.name, compiled.definition.replace('"DefaultValue": 4', '"DefaultValue": 5'), compiled.uploads()
    )
    assert "updated pipeline digits-quickstart" in said
    assert said[0].startswith("code: 0 new object(s) uploaded")  # content-addressed: nothing to upload again
    described = boto3.client("sagemaker").describe_pipeline(PipelineName="digits-quickstart")
    assert '"DefaultValue": 5' in described["PipelineDefinition"]


@mock_aws
def test_start_passes_typed_overrides(spec) -> None:  # type: ignore[no-untyped-def]
    boto3.client("s3").create_bucket(Bucket="bucket")
    compiled = compile_pipeline(spec, SETTINGS)
    remote = Remote(SETTINGS, echo=lambda _: None)
    remote.upsert(compiled.name, compiled.definition, compiled.uploads(), spec.description, spec.tags)
    arn = remote.start(
        compiled.name, parse_overrides(json.loads(compiled.definition), ["Epochs=3", "AccuracyThreshold=0.9"])
    )
    sm = boto3.client("sagemaker")
    assert sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] in (
        "Executing",
        "Succeeded",
    )
    params = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    assert {p["Name"]: p["Value"] for p in params} == {"Epochs": "3", "AccuracyThreshold": "0.9"}


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["Epoch=3"], r"unknown parameter 'Epoch'; did you mean 'Epochs'\?"),
        (["Epochs=three"], r"parameter 'Epochs' is Integer; 'three' is not one"),
        (["AccuracyThreshold=high"], r"parameter 'AccuracyThreshold' is Float"),
        (["Epochs"], r"'Epochs' is not Name=Value"),
    ],
)
def test_bad_overrides_are_refused(spec, pairs: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    definition = json.loads(compile_pipeline(spec, SETTINGS).definition)
    with pytest.raises(ParameterError, match=message):
        parse_overrides(definition, pairs)


def test_cli_run_refuses_bad_overrides_and_missing_settings_before_any_call(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "config/digits.yaml", "Epoch=3"]) == 2
    assert "unknown parameter 'Epoch'" in capsys.readouterr().err
    assert main(["run", "config/digits.yaml", "Epochs=3"]) == 2
    err = capsys.readouterr().err
    assert "missing settings: SMP_ROLE_ARN" in err and "SMP_DEFAULT_BUCKET" in err
    assert main(["upsert", "config/digits.yaml"]) == 2
    assert "missing settings" in capsys.readouterr().err


def _step(name: str, status: str, job: tuple[str, str] | None = None, reason: str | None = None) -> dict:
    step: dict = {"StepName": name, "StepStatus": status}
    if job:
        kind, job_name = job
        service = {"TrainingJob": "training-job", "ProcessingJob": "processing-job"}[kind]
        step["Metadata"] = {kind: {"Arn": f"arn:aws:sagemaker:us-east-1:123456789012:{service}/{job_name}"}}
    if reason:
        step["FailureReason"] = reason
    return step


def test_wait_prints_status_changes_and_a_failure_shows_reason_and_every_hosts_log_tail() -> None:
    said: list[str] = []
    remote = Remote(SETTINGS, session=boto3.Session(region_name="us-east-1"), echo=said.append)
    sm, logs = Stubber(remote.sm), Stubber(remote.logs)
    arn = {"PipelineExecutionArn": EXEC_ARN}
    listing = {"PipelineExecutionArn": EXEC_ARN, "SortOrder": "Ascending"}
    train_job = ("TrainingJob", "pipelines-abc-train-1")
    # poll 1: preprocess running (two pages of steps)
    sm.add_response("describe_pipeline_execution", {"PipelineExecutionStatus": "Executing"}, arn)
    sm.add_response(
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": [_step("preprocess", "Executing")], "NextToken": "t1"},
        listing,
    )
    sm.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": []}, listing | {"NextToken": "t1"})
    # poll 2: preprocess done, train failed, execution failed
    sm.add_response("describe_pipeline_execution", {"PipelineExecutionStatus": "Failed"}, arn)
    failed = [
        _step("preprocess", "Succeeded"),
        _step("train", "Failed", train_job, "AlgorithmError: CUDA out of memory"),
    ]
    sm.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": failed}, listing)
    # failure report
    sm.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": failed}, listing)
    group = {"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamNamePrefix": "pipelines-abc-train-1/"}
    logs.add_response(
        "describe_log_streams",
        {"logStreams": [{"logStreamName": "pipelines-abc-train-1/algo-1-1"}], "nextToken": "n1"},
        group,
    )
    logs.add_response(
        "describe_log_streams",
        {"logStreams": [{"logStreamName": "pipelines-abc-train-1/algo-2-1"}]},
        group | {"nextToken": "n1"},
    )
    for host in (1, 2):
        logs.add_response(
            "get_log_events",
            {
                "events": [
                    {"timestamp": 1, "message": f"host {host}: epoch=1 train_loss=2.3"},
                    {"timestamp": 2, "message": f"host {host}: RuntimeError: CUDA out of memory"},
                ]
            },
            {
                "logGroupName": "/aws/sagemaker/TrainingJobs",
                "logStreamName": f"pipelines-abc-train-1/algo-{host}-1",
                "limit": 30,
                "startFromHead": False,
            },
        )
    with sm, logs:
        assert remote.wait(EXEC_ARN, sleep=lambda _: None) == "Failed"
        report = remote.failure_report(EXEC_ARN)
    assert said == ["  preprocess: Executing", "  preprocess: Succeeded", "  train: Failed", "execution Failed"]
    assert report[0] == "step 'train' failed: AlgorithmError: CUDA out of memory"
    assert "--- pipelines-abc-train-1/algo-1-1 (last 2 lines)" in report
    assert "    host 2: RuntimeError: CUDA out of memory" in report


@mock_aws
def test_success_downloads_the_model_and_the_evaluation_report(tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bucket")
    s3.put_object(Bucket="bucket", Key="digits/train/job-1/output/model.tar.gz", Body=b"model")
    s3.put_object(Bucket="bucket", Key="digits/exec/evaluate/evaluation/evaluation.json", Body=b'{"metrics": {}}')
    remote = Remote(SETTINGS, echo=lambda _: None)
    sm = Stubber(remote.sm)
    steps = [
        _step("train", "Succeeded", ("TrainingJob", "job-1")),
        _step("evaluate", "Succeeded", ("ProcessingJob", "job-2")),
    ]
    sm.add_response(
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": steps},
        {"PipelineExecutionArn": EXEC_ARN, "SortOrder": "Ascending"},
    )
    sm.add_response(
        "describe_training_job",
        _training_job("job-1", "s3://bucket/digits/train/job-1/output/model.tar.gz"),
        {"TrainingJobName": "job-1"},
    )
    sm.add_response(
        "describe_processing_job",
        _processing_job("job-2", "s3://bucket/digits/exec/evaluate/evaluation"),
        {"ProcessingJobName": "job-2"},
    )
    view = RunView("digits", "exec", "Succeeded", {}, {}, {})
    fetched: list[Path] = []
    with sm:
        for step in remote.steps(EXEC_ARN):  # each described once by its Type's RemoteStep, then downloaded
            job, _ = remote_step(step)
            assert job is not None
            fetched += remote.download(job.downloads(job.describe(remote, view, step)), tmp_path / step["StepName"])
    assert [p.relative_to(tmp_path).as_posix() for p in fetched] == ["train/model.tar.gz", "evaluate/evaluation.json"]
    assert (tmp_path / "train" / "model.tar.gz").read_bytes() == b"model"


def _training_job(name: str, artifact: str) -> dict:
    import datetime

    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
        "ModelArtifacts": {"S3ModelArtifacts": artifact},
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"VolumeSizeInGB": 30},
        "StoppingCondition": {},
        "CreationTime": datetime.datetime(2026, 1, 1),
    }


def _processing_job(name: str, uri: str) -> dict:
    import datetime

    return {
        "ProcessingJobName": name,
        "ProcessingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{name}",
        "ProcessingJobStatus": "Completed",
        "CreationTime": datetime.datetime(2026, 1, 1),
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}
        },
        "AppSpecification": {"ImageUri": "image"},
        "RoleArn": SETTINGS.role_arn,
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "evaluation",
                    "S3Output": {
                        "S3Uri": uri,
                        "LocalPath": "/opt/ml/processing/output/evaluation",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
    }


# --------------------------------------------------------------------------- list, describe, logs, stop


@mock_aws
def test_describe_builds_the_summary_and_report_from_the_api_downloads_and_logs(tmp_path: Path) -> None:
    import datetime

    from pipelines.report import summary
    from pipelines.report.html import write_report

    s3, logs = boto3.client("s3"), boto3.client("logs")
    s3.create_bucket(Bucket="bucket")
    s3.put_object(Bucket="bucket", Key="digits/train/job-1/output/model.tar.gz", Body=b"model")
    evaluation = {"metrics": {"weighted_recall": {"value": 0.91}}, "samples": 269}
    s3.put_object(Bucket="bucket", Key="digits/exec/evaluate/evaluation/evaluation.json", Body=json.dumps(evaluation))
    s3.put_object(
        Bucket="bucket",
        Key="digits/exec/evaluate/evaluation/confusion_matrices.json",
        Body=json.dumps({"label": {"labels": [0, 1], "matrix": [[5, 1], [0, 4]]}}),
    )
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName="job-1/algo-1-1")
    lines = [f"epoch={e} train_loss={1 / e:.3f} val_weighted_recall={0.5 + e / 10:.2f}" for e in (1, 2, 3)]
    logs.put_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs",
        logStreamName="job-1/algo-1-1",
        logEvents=[{"timestamp": _now_ms() + i, "message": m} for i, m in enumerate(lines)],
    )
    compiled = compile_pipeline(load_spec(ROOT / "config" / "digits.yaml"), SETTINGS)
    remote = Remote(SETTINGS, echo=lambda _: None)
    sm = Stubber(remote.sm)
    arn = {"PipelineExecutionArn": EXEC_ARN}
    start = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.UTC)
    steps = [
        _step("train", "Succeeded", ("TrainingJob", "job-1")) | {"StartTime": start},
        _step("evaluate", "Succeeded", ("ProcessingJob", "job-2")) | {"StartTime": start},
        {"StepName": "quality-gate", "StepStatus": "Succeeded", "Metadata": {"Condition": {"Outcome": "True"}}},
    ]
    job = _training_job("job-1", "s3://bucket/digits/train/job-1/output/model.tar.gz")
    job["AlgorithmSpecification"]["MetricDefinitions"] = [
        {"Name": "train_loss", "Regex": "train_loss=([0-9.]+)"},
        {"Name": "val_weighted_recall", "Regex": "val_weighted_recall=([0-9.]+)"},
    ]
    job["FinalMetricDataList"] = [{"MetricName": "val_weighted_recall", "Value": 0.8, "Timestamp": start}]
    sm.add_response(
        "describe_pipeline_execution",
        {
            "PipelineExecutionStatus": "Succeeded",
            "CreationTime": start,
            "LastModifiedTime": start + datetime.timedelta(minutes=12),
        },
        arn,
    )
    sm.add_response("describe_pipeline_definition_for_execution", {"PipelineDefinition": compiled.definition}, arn)
    sm.add_response(
        "list_pipeline_parameters_for_execution",
        {"PipelineParameters": [{"Name": "AccuracyThreshold", "Value": "0.8"}]},
        arn,
    )
    listing = arn | {"SortOrder": "Ascending"}
    # the steps are listed once and each job is described once: what it downloads comes from that description
    sm.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": steps}, listing)
    sm.add_response("describe_training_job", job, {"TrainingJobName": "job-1"})
    sm.add_response(
        "describe_processing_job",
        _processing_job("job-2", "s3://bucket/digits/exec/evaluate/evaluation"),
        {"ProcessingJobName": "job-2"},
    )
    with sm:
        view = remote.view(EXEC_ARN, tmp_path)
    said = summary.lines(view)
    assert said[0] == "execution abc123 of digits-quickstart: Succeeded in 720.0s (0 cache hit(s))"
    assert "gate 'Quality gate': evaluate weighted_recall = 0.91 >= AccuracyThreshold = 0.8: passed" in said
    assert "train: training job job-1: val_weighted_recall=0.8" in said
    assert (
        f"    model: {tmp_path / 'train' / 'model.tar.gz'} (s3://bucket/digits/train/job-1/output/model.tar.gz)" in said
    )
    assert "evaluate: weighted_recall=0.91 on 269 images" in said
    assert view.curves["job-1"] == {"train_loss": [1.0, 0.5, 0.333], "val_weighted_recall": [0.6, 0.7, 0.8]}
    page = write_report(view, tmp_path / "report.html").read_text()
    assert 'data-figure="curves"' in page and 'data-figure="confusion-label"' in page and "SageMaker" in page


@mock_aws
def test_list_logs_and_stop_a_sagemaker_execution(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pipelines.cli.remote as cli

    logs = boto3.client("logs")
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    for host in (1, 2):
        stream = f"job-1/algo-{host}-1"
        logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream)
        logs.put_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs",
            logStreamName=stream,
            logEvents=[{"timestamp": _now_ms(), "message": f"host {host} line {i}"} for i in range(3)],
        )
    remote = Remote(SETTINGS, echo=print)
    monkeypatch.setattr(cli, "remote_client", lambda: remote)
    sm = Stubber(remote.sm)
    sm.add_response(
        "list_pipeline_executions",
        {"PipelineExecutionSummaries": [{"PipelineExecutionArn": EXEC_ARN, "PipelineExecutionStatus": "Executing"}]},
        {"PipelineName": "digits-quickstart", "SortBy": "CreationTime", "SortOrder": "Descending"},
    )
    listing = {"PipelineExecutionArn": EXEC_ARN, "SortOrder": "Ascending"}
    sm.add_response(
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": [_step("train", "Executing", ("TrainingJob", "job-1"))]},
        listing,
    )
    sm.add_response("stop_pipeline_execution", {"PipelineExecutionArn": EXEC_ARN}, {"PipelineExecutionArn": EXEC_ARN})
    with sm:
        assert main(["list", "config/digits.yaml", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)[0]["PipelineExecutionArn"] == EXEC_ARN
        assert main(["logs", EXEC_ARN, "train"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out == [
            "--- job-1/algo-1-1",
            "host 1 line 0",
            "host 1 line 1",
            "host 1 line 2",
            "--- job-1/algo-2-1",
            "host 2 line 0",
            "host 2 line 1",
            "host 2 line 2",
        ]
        assert main(["stop", EXEC_ARN]) == 0
        assert f"stopping {EXEC_ARN}" in capsys.readouterr().out


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)  # CloudWatch (and moto) refuse events from weeks ago


def test_retry_calls_retry_pipeline_execution_and_a_missing_region_is_refused_before_any_call(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.stub import ANY

    import pipelines.cli.remote as cli

    remote = Remote(SETTINGS, echo=print)
    monkeypatch.setattr(cli, "remote_client", lambda: remote)
    sm = Stubber(remote.sm)
    sm.add_response(
        "retry_pipeline_execution",
        {"PipelineExecutionArn": EXEC_ARN},
        {"PipelineExecutionArn": EXEC_ARN, "ClientRequestToken": ANY},
    )
    with sm:
        assert main(["retry", EXEC_ARN, "--no-wait"]) == 0
    assert f"retrying {EXEC_ARN}" in capsys.readouterr().out
    monkeypatch.undo()
    for var in ("AWS_DEFAULT_REGION", "AWS_REGION", "SMP_REGION"):
        monkeypatch.delenv(var, raising=False)
    assert main(["stop", EXEC_ARN]) == 2
    assert "no region: set SMP_REGION or AWS_REGION" in capsys.readouterr().err
