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
from pipelines.remote import Remote
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
    with sm:
        fetched = remote.download_results(EXEC_ARN, tmp_path)
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
