"""The model registry, one interface over two stores: the local SQLite registry (versions never lost or
duplicated under concurrent registration) and SageMaker's (moto, and botocore's Stubber where moto stops)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from pipelines.cli import main
from pipelines.local.registry import LocalRegistry, RegistryError, parse_ref
from pipelines.remote.registry import Deployment, SageMakerRegistry

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"Containers": [{"Image": "image", "ModelDataUrl": "s3://b/model.tar.gz"}]}


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("SMP_REGION", "us-east-1")
    for var in ("SMP_ROLE_ARN", "SMP_DEFAULT_BUCKET"):
        monkeypatch.delenv(var, raising=False)


def test_versions_count_up_per_group_and_read_back_like_describe_model_package(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path)
    first = registry.register("a", SPEC, "PendingManualApproval", metrics={"metrics": {"acc": {"value": 0.9}}})
    second = registry.register("a", SPEC, "Approved")
    other = registry.register("b", SPEC, "Approved")
    assert (first["ModelPackageVersion"], second["ModelPackageVersion"], other["ModelPackageVersion"]) == (1, 2, 1)
    assert first["ModelPackageArn"] == "arn:aws:sagemaker:local:000000000000:model-package/a/1"
    assert registry.describe("a")["ModelPackageVersion"] == 2  # the latest
    assert registry.describe("a", 1)["Metrics"]["metrics"]["acc"]["value"] == 0.9
    assert [p["ModelPackageVersion"] for p in registry.list("a")] == [2, 1]
    approved = registry.set_status("a", 1, "Approved", "fine")
    assert approved["ModelApprovalStatus"] == "Approved" and approved["ApprovalDescription"] == "fine"
    with pytest.raises(RegistryError, match="no model package group 'c'"):
        registry.describe("c")
    with pytest.raises(RegistryError, match="has no version 9"):
        registry.describe("a", 9)
    with pytest.raises(RegistryError, match="'Aproved' is not one of .*did you mean 'Approved'"):
        registry.set_status("a", 1, "Aproved")


def test_eight_processes_registering_at_once_never_lose_or_duplicate_a_version(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from pipelines.local.registry import LocalRegistry\n"
        "r = LocalRegistry(Path(sys.argv[1]))\n"
        "versions = [r.register('g', {'Containers': []}, 'Approved')['ModelPackageVersion'] for _ in range(5)]\n"
        "print(' '.join(map(str, versions)))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        for _ in range(8)
    ]
    versions = [int(v) for p in procs for v in p.communicate(timeout=120)[0].split()]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(versions) == list(range(1, 41))  # 8 x 5 registrations: every number once
    assert [p["ModelPackageVersion"] for p in LocalRegistry(tmp_path).list("g")] == list(range(40, 0, -1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("g", ("g", None)), ("g:3", ("g", 3)), ("arn:aws:sagemaker:us-east-1:1:model-package/g/7", ("g", 7))],
)
def test_package_references(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_ref(text) == expected


def test_a_bad_version_reference_is_refused() -> None:
    with pytest.raises(RegistryError, match="must be a number"):
        parse_ref("g:latest")


# --------------------------------------------------------------------------- SageMaker


def _sagemaker_package(sm, s3) -> str:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="reports")
    report = {"metrics": {"weighted_recall": {"value": 0.93}}}
    s3.put_object(Bucket="reports", Key="eval/evaluation.json", Body=json.dumps(report))
    sm.create_model_package_group(ModelPackageGroupName="digits")
    arn = sm.create_model_package(
        ModelPackageGroupName="digits",
        InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"}],
                                "SupportedContentTypes": ["image/png"],
                                "SupportedResponseMIMETypes": ["application/json"]},
        ModelApprovalStatus="PendingManualApproval",
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                      "S3Uri": "s3://reports/eval/evaluation.json"}}},
    )["ModelPackageArn"]  # fmt: skip
    return str(arn)


@mock_aws
def test_the_sagemaker_registry_lists_describes_and_approves_in_the_same_shape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sm, s3 = boto3.client("sagemaker"), boto3.client("s3")
    arn = _sagemaker_package(sm, s3)
    registry = SageMakerRegistry(boto3.Session())
    assert registry.groups() == ["digits"]
    package = registry.describe("digits")
    assert package["ModelPackageArn"] == arn and package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["Metrics"]["metrics"]["weighted_recall"]["value"] == 0.93

    assert main(["registry", "describe", "digits:1"]) == 0
    out = capsys.readouterr().out
    assert "digits version 1: PendingManualApproval" in out and "weighted_recall" in out and "0.9300" in out
    assert main(["deploy", "digits:1", "--endpoint", "e"]) == 2
    assert "is PendingManualApproval, not Approved" in capsys.readouterr().err
    assert main(["registry", "approve", "digits:1", "--reason", "ok"]) == 0
    described = sm.describe_model_package(ModelPackageName=arn)
    assert described["ModelApprovalStatus"] == "Approved"
    assert main(["registry", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert [p["ModelApprovalStatus"] for p in listed] == ["Approved"]


@mock_aws
def test_deploying_an_approved_version_creates_the_model_config_and_endpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sm, s3 = boto3.client("sagemaker"), boto3.client("s3")
    arn = _sagemaker_package(sm, s3)
    sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    assert main(["deploy", "digits", "--endpoint", "e"]) == 2
    assert "missing settings: SMP_ROLE_ARN" in capsys.readouterr().err  # refused before any call
    monkeypatch.setenv("SMP_ROLE_ARN", "arn:aws:iam::123456789012:role/exec")
    monkeypatch.setenv("SMP_DEFAULT_BUCKET", "reports")
    assert main(["deploy", "digits", "--endpoint", "e", "--instance-type", "ml.c5.large"]) == 0
    assert "endpoint e created: serving digits version 1" in capsys.readouterr().out
    endpoint = sm.describe_endpoint(EndpointName="e")
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.c5.large" and variant["InitialInstanceCount"] == 1
    model = sm.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["ModelPackageName"] == arn  # the registered package itself, as approved
    assert not config.get("DataCaptureConfig")


@mock_aws
def test_deploy_switches_data_capture_on_outside_the_pipeline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SageMaker Pipelines refuses DataCaptureConfig in its steps: `deploy --data-capture` sets it on the
    endpoint configuration it creates (CreateEndpointConfig + UpdateEndpoint, outside any pipeline)."""
    sm, s3 = boto3.client("sagemaker"), boto3.client("s3")
    arn = _sagemaker_package(sm, s3)
    sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    monkeypatch.setenv("SMP_ROLE_ARN", "arn:aws:iam::123456789012:role/exec")
    monkeypatch.setenv("SMP_DEFAULT_BUCKET", "reports")
    with pytest.raises(SystemExit) as exited:
        main(["deploy", "digits", "--endpoint", "e", "--data-capture", "101"])
    assert exited.value.code == 2 and "not a whole percentage from 0 to 100" in capsys.readouterr().err
    assert main(["deploy", "digits", "--endpoint", "e", "--capture-destination", "s3://b/c/"]) == 2
    assert "--capture-destination needs --data-capture" in capsys.readouterr().err
    assert main(["deploy", "digits", "--endpoint", "e", "--data-capture", "20"]) == 0
    endpoint = sm.describe_endpoint(EndpointName="e")
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["DataCaptureConfig"]["InitialSamplingPercentage"] == 20
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == "s3://reports/data-capture/"
    assert {o["CaptureMode"] for o in config["DataCaptureConfig"]["CaptureOptions"]} == {"Input", "Output"}


def test_deploying_onto_an_existing_endpoint_updates_it_in_place() -> None:
    session = boto3.Session(region_name="us-east-1")
    registry = SageMakerRegistry(session)
    package = {
        "ModelPackageGroupName": "digits",
        "ModelPackageVersion": 2,
        "ModelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/digits/2",
    }
    with Stubber(registry.sm) as stub:
        stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m"})
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c"},
        )
        stub.add_response(
            "describe_endpoint",
            {"EndpointName": "e", "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e",
             "EndpointConfigName": "old", "EndpointStatus": "InService", "CreationTime": "2026-01-01",
             "LastModifiedTime": "2026-01-01"},
            {"EndpointName": "e"},
        )  # fmt: skip
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e"},
            {"EndpointName": "e", "EndpointConfigName": stub_any()},
        )
        deployment = Deployment("e", "arn:aws:iam::123456789012:role/exec", "ml.m5.large")
        assert registry.deploy(package, deployment) == "updated"
        stub.assert_no_pending_responses()


def stub_any():  # type: ignore[no-untyped-def]
    from botocore.stub import ANY

    return ANY


@mock_aws
def test_invoke_calls_sagemaker_runtime_with_the_files_content_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from unittest import mock

    image = tmp_path / "digit.png"
    image.write_bytes(b"\x89PNG fake")
    answer = json.dumps({"predictions": [{"label": {"class": 7, "label": "seven", "probability": 0.9}}]}).encode()
    calls: list[dict] = []

    class Runtime:
        def invoke_endpoint(self, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(kwargs)
            return {"Body": mock.Mock(read=lambda: answer), "ContentType": "application/json"}

    real_client = boto3.Session.client

    def client(self, name, *args, **kwargs):  # type: ignore[no-untyped-def]
        return Runtime() if name == "sagemaker-runtime" else real_client(self, name, *args, **kwargs)

    with mock.patch.object(boto3.Session, "client", client):
        assert main(["invoke", "digits", str(image)]) == 0
    assert calls == [{"EndpointName": "digits", "ContentType": "image/png", "Accept": "application/json",
                      "Body": b"\x89PNG fake"}]  # fmt: skip
    assert capsys.readouterr().out.strip() == "digit.png: label=seven (0.900)"
    assert main(["invoke", "digits", str(tmp_path / "notes.txt")]) == 2
    assert "unknown file type" in capsys.readouterr().err
