"""Loading specs: the bundled configs validate; every bad spec fails with file, line, rule and fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.loader import SpecError, load_spec

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
name: t
parameters:
  Epochs: {type: Integer, default: 2}
  Threshold: {type: Float, default: 0.5}
steps:
  - name: prep
    kind: processing
    script: preprocess.py
    instance: {type: ml.m5.xlarge}
    outputs: [train, test]
  - name: train
    kind: training
    instance: {type: ml.m5.xlarge}
    inputs: {train: prep.train}
    hyperparameters: {epochs: $Epochs}
    metrics: {val_weighted_recall: 'val_weighted_recall=([0-9.]+)'}
  - name: evaluate
    kind: evaluation
    instance: {type: ml.m5.xlarge}
    inputs: {model: train.model, test: prep.test}
gate:
  metric: evaluate.weighted_recall
  threshold: $Threshold
"""

TUNING = BASE.replace(
    "    kind: training\n",
    "    kind: tuning\n    objective: {metric: val_weighted_recall}\n"
    "    ranges:\n      lr: {type: continuous, min: 0.0001, max: 0.01}\n",
)


@pytest.mark.parametrize("config", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_specs_validate(config: Path) -> None:
    assert main(["validate", str(config)]) == 0


def test_the_base_spec_of_the_corpus_is_valid(tmp_path: Path) -> None:
    for text in (BASE, TUNING):
        path = tmp_path / "valid.yaml"
        path.write_text(text)
        load_spec(path)


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


CASES = [
    # (id, spec text, line, message regex)
    (
        "unknown-key",
        edit(BASE, "    script: preprocess.py", "    scirpt: preprocess.py"),
        8,
        r"steps\[0\]\.scirpt: unknown key 'scirpt'\n    fix: did you mean 'script'\?",
    ),
    (
        "unknown-kind",
        edit(BASE, "    kind: training", "    kind: trainig"),
        12,
        r"steps\[1\]\.kind: 'trainig' is not allowed here\n    fix: did you mean 'training'\?",
    ),
    (
        "unknown-step-reference",
        edit(BASE, "{train: prep.train}", "{train: prepp.train}"),
        14,
        r"steps\[1\]\.inputs\.train: unknown step 'prepp'\n    fix: did you mean 'prep'\?",
    ),
    (
        "unknown-output",
        edit(BASE, "{train: prep.train}", "{train: prep.trian}"),
        14,
        r"step 'prep' has no output 'trian'\n    fix: did you mean 'train'\?",
    ),
    (
        "duplicate-name",
        edit(BASE, "  - name: evaluate\n", "  - name: train\n"),
        17,
        r"steps\[2\]\.name: duplicate step name 'train' \(also steps\[1\]\)",
    ),
    (
        "cycle",
        edit(BASE, "    outputs: [train, test]\n", "    outputs: [train, test]\n    depends_on: [evaluate]\n"),
        6,
        r"steps form a cycle: .*prep.*evaluate|steps form a cycle",
    ),
    (
        "spot-without-checkpoints",
        edit(BASE, "    hyperparameters:", "    spot: {max_wait_seconds: 90000}\n    hyperparameters:"),
        15,
        r"spot training without checkpoints.*\n    fix: add checkpoint_s3_uri: auto",
    ),
    (
        "spot-with-warm-pool",
        edit(
            BASE,
            "    hyperparameters:",
            "    spot: {max_wait_seconds: 90000}\n    checkpoint_s3_uri: auto\n    keep_alive_seconds: 300\n"
            "    hyperparameters:",
        ),
        17,
        r"keep_alive_seconds: warm pools are not available for spot training",
    ),
    (
        "ddp-on-cpu-instance",
        edit(
            BASE,
            "    inputs: {train: prep.train}",
            "    distribution: torch_distributed\n    inputs: {train: prep.train}",
        ),
        13,
        r"instance\.type: torch_distributed needs a GPU instance type; ml\.m5\.xlarge has none",
    ),
    (
        "ddp-with-parameter-instance",
        edit(
            edit(
                BASE,
                "    inputs: {train: prep.train}",
                "    distribution: torch_distributed\n    inputs: {train: prep.train}",
            ),
            "  - name: train\n    kind: training\n    instance: {type: ml.m5.xlarge}",
            "  - name: train\n    kind: training\n    instance: {type: $Instance}",
        ).replace("parameters:\n", "parameters:\n  Instance: {type: String, default: ml.g5.xlarge}\n"),
        14,
        r"torch_distributed needs a literal instance type, not a parameter",
    ),
    (
        "objective-not-produced",
        edit(TUNING, "objective: {metric: val_weighted_recall}", "objective: {metric: val_acc}"),
        13,
        r"objective\.metric: no metric definition produces the objective 'val_acc'",
    ),
    (
        "gate-metric-not-produced",
        edit(BASE, "  metric: evaluate.weighted_recall", "  metric: evaluate.weighted_recal"),
        22,
        r"gate\.metric: evaluation step 'evaluate' produces no metric 'weighted_recal'"
        r"\n    fix: did you mean 'weighted_recall'\?",
    ),
    (
        "regex-does-not-compile",
        edit(BASE, "'val_weighted_recall=([0-9.]+)'", "'val_weighted_recall=([0-9.]+'"),
        16,
        r"metric 'val_weighted_recall': regex .* does not compile",
    ),
    (
        "regex-without-group",
        edit(BASE, "'val_weighted_recall=([0-9.]+)'", "'val_weighted_recall=[0-9.]+'"),
        16,
        r"has 0 capture groups; it needs exactly one",
    ),
    (
        "regex-two-groups",
        edit(BASE, "'val_weighted_recall=([0-9.]+)'", "'(val)_weighted_recall=([0-9.]+)'"),
        16,
        r"has 2 capture groups; it needs exactly one",
    ),
    (
        "range-min-not-below-max",
        edit(TUNING, "{type: continuous, min: 0.0001, max: 0.01}", "{type: continuous, min: 0.1, max: 0.01}"),
        15,
        r"ranges\.lr: .*min \(0\.1\) must be below max \(0\.01\)",
    ),
    (
        "script-does-not-exist",
        edit(BASE, "script: preprocess.py", "script: preproces.py"),
        8,
        r"script steps/preproces\.py does not exist\n    fix: did you mean 'preprocess\.py'\?",
    ),
    (
        "unknown-parameter",
        edit(BASE, "{epochs: $Epochs}", "{epochs: $Epoch}"),
        15,
        r"hyperparameters\.epochs: unknown parameter '\$Epoch'\n    fix: did you mean 'Epochs'\?",
    ),
    (
        "unknown-hyperparameter",
        edit(BASE, "{epochs: $Epochs}", "{epochs: $Epochs, learning-rate: 0.1}"),
        15,
        r"steps/train\.py has no option --learning-rate",
    ),
    (
        "one-letter-hyperparameter-the-script-takes-only-as-a-long-option",
        edit(BASE, "{epochs: $Epochs}", "{epochs: $Epochs, x: 1}"),
        15,
        r"passes the one-letter hyperparameter 'x' as -x; steps/train\.py declares no -x",
    ),
    (
        "parameter-default-type",
        edit(BASE, "{type: Integer, default: 2}", "{type: Integer, default: two}"),
        3,
        r"parameters\.Epochs: .*default 'two' is not a Integer",
    ),
    (
        "missing-required-key",
        edit(BASE, "    instance: {type: ml.m5.xlarge}\n    outputs", "    outputs"),
        6,
        r"steps\[0\]\.instance: missing required key 'instance'",
    ),
    ("invalid-yaml", edit(BASE, "    outputs: [train, test]", "    outputs: [train, test"), 11, r"invalid YAML"),
    (
        "register-without-gate",
        BASE.split("gate:")[0] + "  - name: register\n    kind: register\n    model: train.model\n"
        "    model_package_group: grp\n",
        22,
        r"register steps run only behind a quality gate",
    ),
    (
        "bad-step-name",
        edit(BASE, "  - name: prep\n", "  - name: prep_1\n"),
        6,
        r"steps\[0\]\.name: 'prep_1' does not match the pattern",
    ),
    (
        "bad-cache-duration",
        edit(BASE, "    outputs: [train, test]\n", "    outputs: [train, test]\n    cache: {expire_after: 30 days}\n"),
        11,
        r"expire_after '30 days' is not an ISO 8601 duration",
    ),
    (
        "tuning-retry-of-job-internal-error",
        edit(TUNING, "    metrics: {val", "    retry: [{errors: [SageMaker.JOB_INTERNAL_ERROR]}]\n    metrics: {val"),
        19,
        r"a tuning step never retries SageMaker\.JOB_INTERNAL_ERROR",
    ),
    (
        "evaluation-metric-the-script-never-writes",
        edit(
            BASE,
            "    inputs: {model: train.model, test: prep.test}\n",
            "    inputs: {model: train.model, test: prep.test}\n    metrics: [weighted_recall, f1_macro]\n",
        ),
        21,
        r"steps\[2\]\.metrics\[1\]: steps/evaluate\.py never writes a metric 'f1_macro' "
        r"\(it writes weighted_recall, accuracy_<head>, recall_<head>\)",
    ),
    (
        "register-mixing-cpu-and-gpu-instances",
        BASE.replace(
            "  - name: evaluate\n",
            "  - name: reg\n    kind: register\n    model: train.model\n"
            "    model_package_group: g\n    inference_instances: [ml.m5.large, ml.g5.xlarge]\n"
            "  - name: evaluate\n",
        ),
        21,
        r"inference_instances: mixes CPU \(ml\.m5\.large\) and GPU \(ml\.g5\.xlarge\) instance types",
    ),
    (
        "sharded-names-no-input",
        edit(BASE, "    outputs: [train, test]\n", "    outputs: [train, test]\n    sharded: [data]\n"),
        11,
        r"steps\[0\]\.sharded\[0\]: 'data' is not one of this step's inputs \(none\)",
    ),
    (
        "duplicate-key",  # PyYAML would keep the second silently: the spec that runs is not the one read
        edit(BASE, "    outputs: [train, test]\n", "    outputs: [train, test]\n    script: evaluate.py\n"),
        11,
        r"steps\[0\]\.script: 'script' is written twice, on lines 8 and 11; YAML keeps only the last one",
    ),
    (
        "parameter-default-outside-its-bounds",
        edit(BASE, "  Epochs: {type: Integer, default: 2}", "  Epochs: {type: Integer, default: 2, min: 3}"),
        3,
        r"default 2 is below the minimum 3",
    ),
    (
        "threshold-not-numeric-parameter",
        edit(BASE, "  Threshold: {type: Float, default: 0.5}", "  Threshold: {type: String, default: high}"),
        23,
        r"gate\.threshold: parameter 'Threshold' is not a number",
    ),
]


@pytest.mark.parametrize(("case", "text", "line", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_spec_names_file_line_rule_and_fix(
    tmp_path: Path, case: str, text: str, line: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    matching = [i for i in info.value.issues if re.search(message, str(i))]
    assert matching, "\n".join(str(i) for i in info.value.issues)
    assert matching[0].line == line, str(matching[0])
    assert matching[0].file == str(path)
    # the CLI prints the same, exits 2, and shows no traceback
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}:" in err and "Traceback" not in err and "problem(s) in the spec" in err


def test_every_issue_is_reported_in_one_run(tmp_path: Path) -> None:
    text = edit(edit(BASE, "script: preprocess.py", "script: nope.py"), "{epochs: $Epochs}", "{epochs: $Nope}")
    path = tmp_path / "two.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert len(info.value.issues) == 2
