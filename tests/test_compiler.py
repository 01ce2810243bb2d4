"""Compiling specs: golden definitions, determinism, offline, and the contract with steps/train.py."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest
import yaml

from pipelines.compiler import compile_pipeline
from pipelines.compiler.code import pack_steps
from pipelines.compiler.context import CompileError, container_tag
from pipelines.loader import load_spec
from pipelines.settings import Settings
from tests.tools.golden import GOLDEN_DIR, GOLDEN_SETTINGS, golden_definition

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("spec", sorted(GOLDEN_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_definition_matches_its_golden_file(spec: Path) -> None:
    expected = spec.with_suffix(".json").read_text()
    assert golden_definition(spec) == expected, (
        f"run `make golden` if the change to {spec.name}'s definition is intended"
    )


def test_golden_specs_are_the_bundled_configs() -> None:
    """`make golden` copies config/*.yaml here; a config edited without it fails this test."""
    for spec in GOLDEN_DIR.glob("*.yaml"):
        assert spec.read_text() == (ROOT / "config" / spec.name).read_text()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_compiling_twice_gives_identical_bytes(config: Path) -> None:
    spec = load_spec(config)
    first = compile_pipeline(spec, GOLDEN_SETTINGS)
    second = compile_pipeline(load_spec(config), GOLDEN_SETTINGS)
    assert first.definition == second.definition
    assert first.code.tarball == second.code.tarball == pack_steps().tarball
    assert not re.search(r"20\d\d-\d\d-\d\d[-T]\d\d", first.definition), "a timestamp leaked into the definition"


def test_compiling_needs_no_network_and_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"compile tried to open a connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    compiled = compile_pipeline(load_spec(ROOT / "config" / "bengali.yaml"), Settings(region="us-west-2"))
    assert "us-west-2" in compiled.definition


def definition(config: str, settings: Settings = GOLDEN_SETTINGS) -> dict:
    return json.loads(compile_pipeline(load_spec(ROOT / "config" / config), settings).definition)


def test_parameters_appear_with_their_defaults() -> None:
    params = {p["Name"]: p for p in definition("digits.yaml")["Parameters"]}
    assert params["Epochs"] == {"Name": "Epochs", "Type": "Integer", "DefaultValue": 4}
    assert params["AccuracyThreshold"] == {"Name": "AccuracyThreshold", "Type": "Float", "DefaultValue": 0.8}
    assert params["InputData"]["Type"] == "String"


def test_every_execution_is_tracked_as_an_experiment_trial() -> None:
    config = definition("digits.yaml")["PipelineExperimentConfig"]
    assert config == {
        "ExperimentName": {"Get": "Execution.PipelineName"},
        "TrialName": {"Get": "Execution.PipelineExecutionId"},
    }


def _train_parser():  # type: ignore[no-untyped-def]
    train = pytest.importorskip("train")
    return train.build_parser(), train


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_emitted_hyperparameters_are_ones_train_py_reads_and_regexes_match_what_it_prints(config: Path) -> None:
    parser, train = _train_parser()
    spec = load_spec(config)
    d = json.loads(compile_pipeline(spec, GOLDEN_SETTINGS).definition)
    for step in d["Steps"]:
        if step["Type"] == "Training":
            args, metrics = (
                step["Arguments"]["HyperParameters"],
                step["Arguments"]["AlgorithmSpecification"]["MetricDefinitions"],
            )
        elif step["Type"] == "Tuning":
            job = step["Arguments"]["TrainingJobDefinition"]
            ranges = step["Arguments"]["HyperParameterTuningJobConfig"]["ParameterRanges"]
            args = job["StaticHyperParameters"] | {r["Name"]: "0.001" for r in ranges["ContinuousParameterRanges"]}
            metrics = job["AlgorithmSpecification"]["MetricDefinitions"]
        else:
            continue
        argv = []
        for key, value in args.items():
            if key.startswith("sagemaker_"):
                continue  # the training toolkit's own, not passed to the script
            if isinstance(value, dict):  # a parameter expression: its default
                name = re.search(r"Parameters\.(\w+)", json.dumps(value)).group(1)  # type: ignore[union-attr]
                default = spec.parameters[name].default
                value = json.dumps(default) if isinstance(default, bool) else str(default)
            text = value
            argv += [f"--{key}", json.loads(text) if text.startswith('"') else text]
        parser.parse_args([str(a) for a in argv])  # exits on an unknown option
        line = train.format_metrics(
            {
                "epoch": 1,
                "train_loss": 0.5,
                "val_loss": 0.25,
                "val_acc_label": 0.9,
                "val_recall_grapheme_root": 0.75,
                "val_weighted_recall": 0.125,
                "lr": 1e-3,
            }
        )
        for metric in metrics:
            match = re.search(metric["Regex"], line)
            assert match, (metric, line)
            assert float(match.group(1)) in (0.5, 0.25, 0.9, 0.75, 0.125)


def test_gate_fails_with_a_message_naming_metric_value_and_threshold() -> None:
    gate = next(s for s in definition("digits.yaml")["Steps"] if s["Type"] == "Condition")
    fail = gate["Arguments"]["ElseSteps"][0]
    assert fail["Type"] == "Fail"
    values = fail["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert values[0] == "evaluate.weighted_recall ="
    assert values[1] == {
        "Std:JsonGet": {
            "Path": "metrics.weighted_recall.value",
            "PropertyFile": {"Get": "Steps.evaluate.PropertyFiles.evaluate-report"},
        }
    }
    assert {"Get": "Parameters.AccuracyThreshold"} in values


def test_register_and_deploy_run_only_when_the_gate_passes_and_deploy_only_when_approved() -> None:
    d = definition("bengali.yaml")
    top = [s["Type"] for s in d["Steps"]]
    assert "RegisterModel" not in top and "Endpoint" not in top
    gate = next(s for s in d["Steps"] if s["Type"] == "Condition")
    assert [s["Type"] for s in gate["Arguments"]["IfSteps"]] == ["RegisterModel", "Condition"]
    approved = gate["Arguments"]["IfSteps"][1]
    assert approved["Arguments"]["Conditions"] == [
        {
            "Type": "Equals",
            "LeftValue": {"Get": "Steps.register-RegisterModel.ModelApprovalStatus"},
            "RightValue": "Approved",
        }
    ]
    deploy = approved["Arguments"]["IfSteps"]
    assert [s["Type"] for s in deploy] == ["Model", "EndpointConfig", "Endpoint"] and not approved["Arguments"][
        "ElseSteps"
    ]
    assert "DataCaptureConfig" not in deploy[1]["Arguments"]  # SageMaker Pipelines refuses it (pipelines.limits)
    register = gate["Arguments"]["IfSteps"][0]["Arguments"]
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    stats = register["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]["Std:Join"]["Values"]
    assert stats[-1] == "evaluation.json"
    container = register["InferenceSpecification"]["Containers"][0]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert "pytorch-inference:2.6.0" in container["Image"]
    assert not any(s["Type"] == "Training" for s in d["Steps"]), "no hidden repack step"


def test_flagship_preprocessing_splits_the_images_among_its_instances_and_copies_the_labels_to_each() -> None:
    prep = next(s for s in definition("bengali.yaml")["Steps"] if s["Name"] == "preprocess")["Arguments"]
    assert prep["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 2
    distribution = {i["InputName"]: i["S3Input"]["S3DataDistributionType"] for i in prep["ProcessingInputs"]}
    assert distribution == {"input": "ShardedByS3Key", "labels": "FullyReplicated", "code": "FullyReplicated"}


def test_a_sharded_training_channel_compiles_to_sharded_by_s3_key(tmp_path: Path) -> None:
    text = (ROOT / "config" / "digits.yaml").read_text().replace(
        "      validation: preprocess.validation\n", "      validation: preprocess.validation\n    sharded: [train]\n"
    )
    spec = tmp_path / "sharded.yaml"
    spec.write_text(text)
    tune = next(s for s in definition(str(spec))["Steps"] if s["Type"] == "Tuning")["Arguments"]
    channels = tune["TrainingJobDefinition"]["InputDataConfig"]
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3DataDistributionType"] for c in channels} == {
        "train": "ShardedByS3Key", "validation": "FullyReplicated"}


def test_flagship_tuning_is_bayesian_ddp_on_spot_with_checkpoints() -> None:
    tune = next(s for s in definition("bengali.yaml")["Steps"] if s["Type"] == "Tuning")["Arguments"]
    job = tune["TrainingJobDefinition"]
    assert tune["HyperParameterTuningJobConfig"]["Strategy"] == "Bayesian"
    assert tune["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"] == {
        "MetricName": "val_weighted_recall",
        "Type": "Maximize",
    }
    assert job["EnableManagedSpotTraining"] is True
    assert job["StaticHyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    assert job["StaticHyperParameters"]["sagemaker_job_name"] == '"tune"'
    assert "Execution.PipelineExecutionId" in json.dumps(job["CheckpointConfig"])
    assert job["StoppingCondition"]["MaxWaitTimeInSeconds"] >= job["StoppingCondition"]["MaxRuntimeInSeconds"]


def test_processing_runs_the_script_from_the_content_addressed_code_input() -> None:
    prep = definition("digits.yaml")["Steps"][0]["Arguments"]
    # on the stock image, the entry script installs requirements-processing.txt, then runs the script
    code_dir = "/opt/ml/processing/input/code"
    assert prep["AppSpecification"]["ContainerEntrypoint"] == [
        "/bin/bash", f"{code_dir}/processing_entry.sh", f"{code_dir}/preprocess.py"
    ]  # fmt: skip
    code = next(i for i in prep["ProcessingInputs"] if i["InputName"] == "code")
    digest = pack_steps().digest
    assert code["S3Input"]["S3Uri"] == f"s3://golden-bucket/digits-quickstart/code/{digest}/scripts/"
    assert {"processing_entry.sh", "requirements-processing.txt", "preprocess.py"} <= set(pack_steps().files)
    args = prep["AppSpecification"]["ContainerArguments"]
    # every mount is passed to the script, then the spec's own arguments
    assert args[:4] == ["--input", "/opt/ml/processing/input/input", "--train", "/opt/ml/processing/output/train"]
    assert args[8:11] == ["--size", "16", "16"]


def test_custom_images_are_tagged_with_the_hash_of_their_container_folder(tmp_path: Path) -> None:
    text = (
        (ROOT / "config" / "digits.yaml")
        .read_text()
        .replace("    script: train.py\n", "    script: train.py\n    image: {custom: true}\n")
    )
    spec_path = tmp_path / "custom.yaml"
    spec_path.write_text(text)
    d = json.loads(compile_pipeline(load_spec(spec_path), GOLDEN_SETTINGS).definition)
    tune = d["Steps"][1]["Arguments"]["TrainingJobDefinition"]  # the quickstart tunes
    image = tune["AlgorithmSpecification"]["TrainingImage"]
    assert image == f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/sm-pipelines-training:{container_tag('training')}"
    with pytest.raises(CompileError, match="image: custom needs the AWS account"):
        compile_pipeline(load_spec(spec_path), Settings(region="eu-west-1"))


def test_a_processing_step_on_the_projects_image_runs_its_script_directly(tmp_path: Path) -> None:
    text = (ROOT / "config" / "digits.yaml").read_text()
    text = text.replace("    script: preprocess.py\n", "    script: preprocess.py\n    image: {custom: true}\n")
    spec_path = tmp_path / "custom.yaml"
    spec_path.write_text(text)
    d = json.loads(compile_pipeline(load_spec(spec_path), GOLDEN_SETTINGS).definition)
    prep = d["Steps"][0]["Arguments"]["AppSpecification"]
    assert prep["ContainerEntrypoint"] == ["python3", "/opt/ml/processing/input/code/preprocess.py"]
    assert "/sm-pipelines-training:" in prep["ImageUri"]  # its requirements are baked in


def test_dockerfiles_extend_the_sagemaker_pytorch_images() -> None:
    for kind in ("training", "inference"):
        dockerfile = (ROOT / "containers" / kind / "Dockerfile").read_text()
        assert re.search(rf"ARG BASE_IMAGE=.*pytorch-{kind}:2\.6\.0", dockerfile)
        assert "FROM ${BASE_IMAGE}" in dockerfile
        assert "requirements.txt" in dockerfile and (ROOT / "containers" / kind / "requirements.txt").exists()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMP_ROLE_ARN", "arn:aws:iam::210987654321:role/r")
    monkeypatch.setenv("SMP_DEFAULT_BUCKET", "my-bucket")
    monkeypatch.setenv("SMP_NAME_PREFIX", "team-")
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    settings = Settings()
    assert (settings.region, settings.bucket, settings.account) == ("ap-southeast-2", "my-bucket", "210987654321")
    compiled = compile_pipeline(load_spec(ROOT / "config" / "digits.yaml"), settings)
    assert compiled.name == "team-digits-quickstart"
    assert "s3://my-bucket/team-digits-quickstart/" in compiled.definition
    assert "arn:aws:iam::210987654321:role/r" in compiled.definition


def test_settings_take_arguments_then_the_environment_then_the_smp_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.settings import SettingsFileError

    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("SMP_") or name.upper() in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            monkeypatch.delenv(name)
    (tmp_path / ".smp.env").write_text("SMP_REGION=eu-west-1\nSMP_DEFAULT_BUCKET='file-bucket'  # a comment\n"
                                       "export SMP_NAME_PREFIX=file-\nSMP_ROLE_ARN\n")  # fmt: skip
    settings = Settings()
    assert (settings.region, settings.default_bucket, settings.name_prefix, settings.role_arn) == (
        "eu-west-1", "file-bucket", "file-", None)  # fmt: skip
    monkeypatch.setenv("AWS_REGION", "us-west-2")  # the environment before the file, by any of the region's names
    monkeypatch.setenv("smp_default_bucket", "env-bucket")  # in any case
    settings = Settings()
    assert (settings.region, settings.default_bucket, settings.name_prefix) == ("us-west-2", "env-bucket", "file-")
    monkeypatch.setenv("SMP_REGION", "ca-central-1")  # SMP_REGION before AWS_REGION
    assert Settings().region == "ca-central-1"
    assert Settings(region="ap-south-1").region == "ap-south-1"  # arguments first
    (tmp_path / ".smp.env").write_bytes(b"SMP_REGION=\xff\n")
    with pytest.raises(SettingsFileError, match=r"\.smp\.env: cannot be read as UTF-8"):
        Settings()


RETRY_TYPES = [
    "Step.SERVICE_FAULT",
    "Step.THROTTLING",
    "SageMaker.JOB_INTERNAL_ERROR",
    "SageMaker.CAPACITY_ERROR",
    "SageMaker.RESOURCE_LIMIT",
]


@pytest.mark.parametrize("errors", [[e] for e in RETRY_TYPES] + [RETRY_TYPES, RETRY_TYPES[::-1] + ["Step.THROTTLING"]])
def test_retry_policies_compile_to_exactly_the_error_types_the_spec_names(tmp_path: Path, errors: list[str]) -> None:
    text = (ROOT / "config" / "digits.yaml").read_text()
    anchor = "    metrics: [weighted_recall, accuracy_label]\n"
    assert anchor in text  # the evaluation step: a processing job, which may retry every type
    text = text.replace(anchor, anchor + f"    retry:\n      - errors: [{', '.join(errors)}]\n")
    spec_path = tmp_path / "retry.yaml"
    spec_path.write_text(text)
    d = json.loads(compile_pipeline(load_spec(spec_path), GOLDEN_SETTINGS).definition)
    evaluate = next(s for s in d["Steps"] if s["Name"] == "evaluate")
    compiled = [t for policy in evaluate["RetryPolicies"] for t in policy["ExceptionType"]]
    assert sorted(compiled) == sorted(set(errors)) and len(compiled) == len(set(compiled))


_DEFINITIONS = """
import json, sys
from pathlib import Path
from tests.tools.golden import golden_definition
print(json.dumps({p.name: golden_definition(p) for p in sorted(Path("config").glob("*.yaml"))}))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("pandas", "scipy", "omegaconf", "numpy",
                                                                     "jsonschema", "requests"))))
"""


def test_a_lean_compile_emits_byte_for_byte_what_the_whole_sdk_emits() -> None:
    """The compiler loads the SDK lean (`pipelines.compiler.sdk`): the definitions of every shipped spec are
    those the whole SDK (``SMP_FULL_SDK=1``) writes, and the modules it leaves out were never imported."""
    import subprocess
    import sys

    runs = {}
    for mode, extra in (("lean", {}), ("full", {"SMP_FULL_SDK": "1"})):
        env = {k: v for k, v in os.environ.items() if k != "SMP_FULL_SDK"} | extra | {"SMP_NO_COMPILE_CACHE": "1"}
        done = subprocess.run([sys.executable, "-c", _DEFINITIONS], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        definitions, imported = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
        runs[mode] = (definitions, imported)
    assert runs["lean"][0] == runs["full"][0] and len(runs["lean"][0]) == len(list((ROOT / "config").glob("*.yaml")))
    assert runs["lean"][1] == [] and runs["full"][1]  # the whole SDK imports pandas, scipy, numpy...


def test_the_sdks_configuration_is_a_valid_constant_and_a_left_out_module_refuses_use() -> None:
    from pipelines.compiler import sdk
    from pipelines.compiler.context import sdk_environment

    sdk_environment()
    sdk.schema_check(sdk.SDK_CONFIG)  # the SDK's own JSON-schema check passes
    assert yaml.safe_load(Path(os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"]).read_text()) == sdk.SDK_CONFIG
    with pytest.raises(sdk.SdkUnavailable, match="scipy.sparse.csr_matrix.*SMP_FULL_SDK=1"):
        sdk._placeholder("scipy.sparse", "csr_matrix")()
    with pytest.raises(sdk.SdkUnavailable, match=r"tried to call AWS \(s3\.list_buckets\)"):
        sdk.OfflineClient("s3", "eu-west-1").list_buckets()


def test_the_shared_service_model_is_botocores_own_and_an_unknown_service_fails_as_botocore_fails() -> None:
    """`sdk.share_service_models` reads a model without botocore's listing of every service it knows: the model
    botocore's own method reads (extras applied), parsed once; an unknown service or model type still raises
    botocore's own error."""
    import botocore.loaders
    from botocore.exceptions import DataNotFoundError, UnknownServiceError

    from pipelines.compiler import sdk

    sdk.share_service_models()
    botocores = botocore.loaders.Loader.load_service_model.__wrapped__  # botocore's, as share_service_models found it
    for service, kind in (("sagemaker", "service-2"), ("sagemaker", "paginators-1"), ("s3", "service-2")):
        theirs = botocores(botocore.loaders.create_loader(), service, kind)
        assert sdk._load_listed(botocore.loaders.create_loader(), service, kind, None) == theirs
    shared = botocore.loaders.create_loader()
    model = shared.load_service_model("sagemaker", "service-2")
    assert model is botocore.loaders.create_loader().load_service_model("sagemaker", "service-2")  # parsed once
    assert sdk._load_listed(shared, "no-such-service", "service-2", None) is None
    with pytest.raises(UnknownServiceError):
        shared.load_service_model("no-such-service", "service-2")
    with pytest.raises(DataNotFoundError):
        shared.load_service_model("sagemaker", "no-such-model-1")


def test_botocores_data_files_parse_to_the_same_values_in_the_same_order_as_botocore_parses_them() -> None:
    """The lean load's plain-dict JSON loader (`sdk._plain_json_files`): botocore's files as botocore reads them."""
    import os

    import botocore
    import botocore.loaders

    from pipelines.compiler import sdk

    data = os.path.join(os.path.dirname(botocore.__file__), "data")
    plain, theirs = sdk._plain_json_files()(), botocore.loaders.JSONFileLoader()
    for name in ("endpoints", "sagemaker/2017-07-24/service-2", "sagemaker/2017-07-24/paginators-1", "no-such-file"):
        path = os.path.join(data, name)
        assert json.dumps(plain.load_file(path)) == json.dumps(theirs.load_file(path))
    assert plain.load_file(os.path.join(data, "sagemaker/2017-07-24/service-2")) is not None


def test_the_sdks_import_time_sessions_share_one_botocore_session() -> None:
    """JumpStart's three import-time boto3 sessions (`sdk._one_botocore_session`) make one botocore session, and
    read the region they read apart: the environment's."""
    import subprocess
    import sys

    script = """
import json, botocore.session
made = []
init = botocore.session.Session.__init__
def counted(self, *args, **kwargs):
    made.append(1)
    init(self, *args, **kwargs)
botocore.session.Session.__init__ = counted
from pipelines.compiler.context import offline_aws, sdk_environment
with offline_aws():
    sdk_environment()
from sagemaker.jumpstart import constants
print(json.dumps([len(made), constants.JUMPSTART_DEFAULT_REGION_NAME, constants.NEO_DEFAULT_REGION_NAME,
                  constants.DEFAULT_JUMPSTART_SAGEMAKER_SESSION.boto_region_name]))
"""
    for region, expected in (("eu-central-1", "eu-central-1"), (None, "us-west-2")):
        env = {k: v for k, v in os.environ.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION", "SMP_FULL_SDK")}
        env |= {"AWS_DEFAULT_REGION": region} if region else {}
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout.splitlines()[-1]) == [1, expected, expected, expected]
