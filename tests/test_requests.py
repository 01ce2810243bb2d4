"""Every request a spec compiles to is checked against botocore's SageMaker service model: a value the API
would refuse exits 2 at the spec line that set it, with the rule; the shipped specs and goldens pass."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.requests.model import check_definition

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = (ROOT / "config" / "digits.yaml").read_text()
PREPROCESS_INSTANCE = "    script: preprocess.py\n    instance: {type: ml.m5.xlarge}\n"
TUNE_INSTANCE = "    instance: {type: ml.g5.12xlarge, count: 1}\n"
EVALUATE = "    metrics: [weighted_recall, accuracy_label]\n"
LONG = "a" * 50  # a valid step name, whose derived names are over the API's 64 characters
EVAL_INSTANCE = "    display_name: Evaluate on the test split\n    instance: {type: ml.m5.xlarge}\n"

# (id, text replaced, its replacement, a marker in the new text on the line the error must name, the rule)
CASES = [
    (
        "training-instance-typo",
        TUNE_INSTANCE,
        "    instance: {type: ml.g5.xlarg, count: 1}\n",
        "ml.g5.xlarg",
        r"ml\.g5\.xlarg.*\n    fix: did you mean 'ml\.g5\.xlarge'\?",
    ),
    (
        "instance-without-ml-prefix",
        PREPROCESS_INSTANCE,
        "    script: preprocess.py\n    instance: {type: m5.xlarge}\n",
        "m5.xlarge}",
        r"'m5\.xlarge' is not a valid ProcessingInstanceType",
    ),
    (
        "processing-on-a-training-only-type",
        PREPROCESS_INSTANCE,
        "    script: preprocess.py\n    instance: {type: ml.p4d.24xlarge}\n",
        "ml.p4d",
        r"not a valid ProcessingInstanceType",
    ),
    (
        "evaluation-instance-typo",
        EVAL_INSTANCE,
        EVAL_INSTANCE.replace("ml.m5.xlarge", "ml.m5.xlarg"),
        "ml.m5.xlarg}",
        r"'ml\.m5\.xlarg' is not a valid ProcessingInstanceType.*\n    fix: did you mean 'ml\.m5\.xlarge'\?",
    ),
    (
        "instance-type-parameter-default",
        EVAL_INSTANCE,
        EVAL_INSTANCE.replace("ml.m5.xlarge", "$EvalType"),
        "    default: ml.m5.xlrge",
        r"'ml\.m5\.xlrge' is not a valid ProcessingInstanceType",
    ),
    (
        "malformed-s3-uri",
        "      input: $InputData\n",
        "      input: s3:/sm-pipelines-data/digits/\n",
        "s3:/sm",
        r"'s3:/sm-pipelines-data/digits/' is neither \$Param, step\.output nor s3://",
    ),
    (
        "malformed-uri-in-a-parameter-default",
        "    default: s3://sm-pipelines-data/digits/\n",
        "    default: s3:/sm-pipelines-data/digits/\n",
        "s3:/sm",
        r"S3Uri's pattern.*\(from \$InputData\)",
    ),
    (
        "processing-runtime-over-the-api-maximum",
        "    cache: {enabled: true, expire_after: P30D}\n",
        "    cache: {enabled: true, expire_after: P30D}\n    max_runtime_seconds: 99999999\n",
        "99999999",
        r"99999999 is above the maximum \d+",
    ),
    (
        "derived-step-name-over-64",
        "  - name: register\n",
        f"  - name: register-{LONG}\n",
        f"register-{LONG}",
        r"step name .* over the limit of 64",
    ),
    (
        "derived-model-step-name-over-64",
        "  - name: deploy\n",
        f"  - name: deploy-{LONG}\n",
        f"deploy-{LONG}",
        r"step name .* over the limit of 64",
    ),
    (
        "endpoint-name-over-63",
        "    endpoint_name: digits-quickstart\n",
        f"    endpoint_name: e{'x' * 63}\n",
        "    endpoint_name: e",
        r"endpoint_name: 'ex+' does not match the pattern",
    ),
    (
        "endpoint-name-with-an-underscore",
        "    endpoint_name: digits-quickstart\n",
        "    endpoint_name: digits_quickstart\n",
        "digits_quickstart",
        r"'digits_quickstart' does not match the pattern",
    ),
    (
        "model-package-group-pattern",
        "    model_package_group: digits-quickstart\n",
        "    model_package_group: digits-quickstart-\n",
        "digits-quickstart-\n",
        r"'digits-quickstart-' does not match",
    ),
    (
        "processing-instance-count-over-100",
        PREPROCESS_INSTANCE,
        "    script: preprocess.py\n    instance: {type: ml.m5.xlarge, count: 101}\n",
        "count: 101",
        r"101 is above the maximum 100",
    ),
    (
        "processing-volume-over-16-tb",
        PREPROCESS_INSTANCE,
        "    script: preprocess.py\n    instance: {type: ml.m5.xlarge, volume_gb: 20000}\n",
        "volume_gb: 20000",
        r"20000 is above the maximum 16384",
    ),
    (
        "environment-key-pattern",
        "    cache: {enabled: true, expire_after: P30D}\n",
        "    cache: {enabled: true, expire_after: P30D}\n    environment: {1-BAD: x}\n",
        "1-BAD",
        r"key '1-BAD' does not match ProcessingEnvironmentKey's pattern",
    ),
    (
        "environment-value-too-long",
        "    cache: {enabled: true, expire_after: P30D}\n",
        f"    cache: {{enabled: true, expire_after: P30D}}\n    environment: {{LOG_LEVEL: {'v' * 300}}}\n",
        "LOG_LEVEL",
        r"300 characters, over the limit of 256",
    ),
    (
        "environment-over-100-entries",
        EVALUATE,
        EVALUATE + "    environment: {" + ", ".join(f"V{i}: x" for i in range(101)) + "}\n",
        "    environment: {V0",
        r"takes at most 100 entries, has 101",
    ),
    (
        "hyperparameter-value-too-long",
        "      batch-size: 32\n",
        f"      batch-size: 32\n      head-weights: {'1,' * 1300}1\n",
        "    hyperparameters:",
        r"characters, over the limit of 2500",
    ),
    (
        "metric-regex-too-long",
        "      train_loss: '\\btrain_loss=([0-9.eE+-]+)'\n",
        f"      train_loss: 'train_loss{'=' * 500}([0-9.eE+-]+)'\n",
        "    metrics:\n      train_loss: 'train_loss==",
        r"over the limit of 500",
    ),
    (
        "inference-instance-typo",
        "    inference_instances: [ml.m5.large]\n",
        "    inference_instances: [ml.m5.lrge]\n",
        "ml.m5.lrge",
        r"'ml\.m5\.lrge' is not a valid ProductionVariantInstanceType",
    ),
    (
        "endpoint-instance-typo",
        "    instance: {type: ml.m5.large}\n",
        "    instance: {type: ml.m5.larg}\n",
        "ml.m5.larg}",
        r"'ml\.m5\.larg' is not a valid ProductionVariantInstanceType",
    ),
    (
        "approval-status-literal",
        "    approval_status: $ModelApprovalStatus\n",
        "    approval_status: Approve\n",
        "approval_status: Approve",
        r"'Approve' is not a valid ModelApprovalStatus.*\n    fix: did you mean 'Approved'\?",
    ),
    (
        "approval-status-parameter-default",
        "    default: Approved\n",
        "    default: Aproved\n",
        "default: Aproved",
        r"'Aproved' is not a valid ModelApprovalStatus.*\(from \$ModelApprovalStatus\)",
    ),
    # the rules the service model does not carry (pipelines/limits.py), each with its source
    (
        "data-capture-in-a-pipeline",
        "    endpoint_name: digits-quickstart\n",
        "    endpoint_name: digits-quickstart\n    data_capture: {sampling_percentage: 20}\n",
        "    data_capture:",
        r"SageMaker Pipelines refuses DataCaptureConfig in an EndpointConfig step \(sagemaker-python-sdk 34b16d3dc"
        r".*\n    fix: remove it, and switch capture on .*--data-capture PERCENT",
    ),
    (
        "training-runtime-over-28-days",
        "    max_parallel_jobs: 2\n",
        "    max_parallel_jobs: 2\n    max_runtime_seconds: 2419201\n",
        "max_runtime_seconds",
        r"2419201 s is over 28 days \(2419200 s\).*MaxRuntimeInSeconds: the maximum value is 28 days",
    ),
    (
        "grid-max-jobs-other-than-the-combinations",
        "      lr: {type: continuous, min: 0.0005, max: 0.03, scaling: log}\n"
        "      dropout: {type: continuous, min: 0.0, max: 0.4, scaling: linear}\n    strategy: Bayesian\n",
        "      lr: {type: categorical, values: [0.001, 0.003, 0.01]}\n"
        "      dropout: {type: categorical, values: [0.0, 0.2]}\n    strategy: Grid\n",
        "    default: 4\n    description: Training jobs",
        r"6 distinct combination\(s\).*must equal 6, not 4 \(developer guide, How Hyperparameter Tuning Works"
        r".*\(from \$TuningJobs\)\n    fix: remove max_jobs \(SageMaker then runs all 6\), or set it to 6",
    ),
    (
        "hyperband-with-early-stopping",
        "    strategy: Bayesian\n",
        "    strategy: Hyperband\n    early_stopping: Auto\n",
        "early_stopping: Auto",
        r"Hyperband stops trials itself: TrainingJobEarlyStoppingType must be Off",
    ),
    (
        "hyperband-with-nothing-to-infer-max-resource-from",
        "      epochs: $Epochs\n",
        "",
        "    strategy: Hyperband",
        r"Hyperband needs a MaxResource.*\n    fix: add hyperband: \{max_resource: N\}",
    ),
    (
        "hyperband-settings-with-another-strategy",
        "    strategy: Bayesian\n",
        "    strategy: Bayesian\n    hyperband: {max_resource: 4}\n",
        "    hyperband:",
        r"hyperband: configures the Hyperband strategy, not Bayesian",
    ),
    (
        "endpoint-config-name-over-63-with-the-execution-id",
        "    endpoint_name: digits-quickstart\n",
        f"    endpoint_name: e{'x' * 53}\n",
        "    endpoint_name: e",
        r"is 67 characters \(with the execution id SageMaker adds\), over the limit of 63.*EndpointConfigName"
        r".*\n    fix: shorten it by 4 character",
    ),
    (
        "checkpoint-uri-malformed",
        "    max_parallel_jobs: 2\n",
        "    max_parallel_jobs: 2\n    checkpoint_s3_uri: s3:/b/ckpt\n",
        "s3:/b/ckpt",
        r"'s3:/b/ckpt' is not an s3:// URI",
    ),
]


def _line(text: str, marker: str) -> int:
    index = text.index(marker)
    return text.count("\n", 0, index) + 1


@pytest.mark.parametrize(("case", "old", "new", "marker", "rule"), CASES, ids=[c[0] for c in CASES])
def test_a_value_the_api_refuses_exits_2_at_its_line_with_the_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, old: str, new: str, marker: str, rule: str
) -> None:
    assert old in QUICKSTART, old
    text = QUICKSTART.replace(old, new, 1)
    if case == "derived-step-name-over-64":  # the deploy step names the registration it waits for
        text = text.replace("    registration: register ", f"    registration: register-{LONG} ")
    if case == "hyperband-with-nothing-to-infer-max-resource-from":
        text = text.replace("    strategy: Bayesian\n", "    strategy: Hyperband\n")
    if case == "instance-type-parameter-default":
        text = text.replace(
            "\nparameters:\n", "\nparameters:\n  EvalType:\n    type: String\n    default: ml.m5.xlrge\n"
        )
    spec = tmp_path / f"{case}.yaml"
    spec.write_text(text)
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = _line(text, marker)
    at_line = [block for block in err.split(f"{spec}:")[1:] if block.startswith(f"{line}:")]
    assert at_line and any(re.search(rule, block) for block in at_line), f"line {line}:\n{err}"


@pytest.mark.parametrize("golden", sorted((ROOT / "tests" / "golden").glob("*.json")), ids=lambda p: p.name)
def test_every_golden_definition_passes_the_service_model(golden: Path) -> None:
    assert check_definition(json.loads(golden.read_text())) == []


@pytest.mark.parametrize("config", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_spec_validates_against_the_service_model(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(config)]) == 0
    assert "warning" not in capsys.readouterr().err  # its metric regexes each read one line of train.py's


def test_a_metric_regex_that_reads_two_of_the_scripts_lines_is_a_warning_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``val_weighted_recall=`` also matches train.py's closing ``best_val_weighted_recall=`` line: an epoch that
    never ran, on SageMaker's chart and for the tuner."""
    old = "      val_weighted_recall: '\\bval_weighted_recall=([0-9.eE+-]+)'\n"
    assert old in QUICKSTART
    text = QUICKSTART.replace(old, "      val_weighted_recall: 'val_weighted_recall=([0-9.eE+-]+)'\n")
    spec = tmp_path / "unanchored.yaml"
    spec.write_text(text)
    assert main(["validate", str(spec)]) == 0  # a warning, not a refusal
    err = capsys.readouterr().err
    line = _line(text, "      val_weighted_recall: 'val")
    assert f"{spec}:{line}:7: warning: steps[1].metrics.val_weighted_recall: the regex" in err
    assert "matches 2 of the lines steps/train.py prints" in err and "best_val_weighted_recall" in err
    assert "fix: anchor it" in err


def test_overrides_get_the_same_checks_as_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["local", "run", "config/digits.yaml", "--root", str(tmp_path)]
    assert main([*argv, "ModelApprovalStatus=Aproved"]) == 2
    err = capsys.readouterr().err
    assert "override ModelApprovalStatus='Aproved': 'Aproved' is not a valid ModelApprovalStatus" in err
    assert "did you mean 'Approved'?" in err
    assert main([*argv, "InputData=s3:/x/"]) == 2
    assert "override InputData='s3:/x/'" in capsys.readouterr().err
    assert not (tmp_path / "executions").exists()  # refused before anything ran
