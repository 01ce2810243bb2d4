"""The local step cache decides as SageMaker's does: the key is the pipeline, the step's name and its Type's
documented request attributes, on URIs as given. A table of changes, each with SageMaker's verdict."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines.local.engine import Execution, LocalOptions
from pipelines.local.store import ObjectStore
from tests.tools.archives import put_source_archive
from tests.tools.engine import processing_step

CACHE = {"Enabled": True, "ExpireAfter": "P30D"}


def processing(name: str = "prep") -> dict:
    step = processing_step(name, "ok.py", CacheConfig=CACHE)
    step["Arguments"]["ProcessingInputs"].append(
        {
            "InputName": "data",
            "S3Input": {
                "S3Uri": "s3://b/data/",
                "LocalPath": "/opt/ml/processing/input/data",
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
            },
        }
    )
    return step


def training(name: str = "train") -> dict:
    return {
        "Name": name,
        "Type": "Training",
        "CacheConfig": CACHE,
        "Arguments": {
            "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
            "HyperParameters": {
                "sagemaker_program": '"t.py"',
                "sagemaker_submit_directory": '"s3://b/code/sourcedir.tar.gz"',
                "lr": "0.1",
            },
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/data/"}},
                }
            ],
            "OutputDataConfig": {"S3OutputPath": "s3://b/models/"},
            "CheckpointConfig": {"S3Uri": "s3://b/checkpoints/", "LocalPath": "/opt/ml/checkpoints"},
            "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        },
    }


def _run(root: Path, steps: list[dict], pipeline: str = "p") -> Execution:
    store = ObjectStore(root / "s3")
    if not store.exists("s3://b/code/"):  # written once: a source archive made a second later differs (gzip's mtime)
        store.put_bytes("s3://b/code/ok.py", b"print('ok')")
        put_source_archive(store, "s3://b/code/sourcedir.tar.gz", "t.py", "print('trained')")
    if not store.exists("s3://b/data/"):
        store.put_bytes("s3://b/data/x.csv", b"1,2,3")
    definition = {"Version": "2020-12-01", "Parameters": [], "Steps": steps}
    execution = Execution(root, definition, {}, store, LocalOptions(), pipeline_name=pipeline)
    assert execution.run() == "Succeeded", execution.failure
    return execution


def _args(step: dict) -> dict[str, Any]:
    return step["Arguments"]


def _moved_data(step: dict, root: Path) -> None:
    store = ObjectStore(root / "s3")
    store.put_bytes("s3://b/data-copy/x.csv", store.path("s3://b/data/x.csv").read_bytes())
    for item in _args(step).get("ProcessingInputs", []):
        if item["InputName"] == "data":
            item["S3Input"]["S3Uri"] = "s3://b/data-copy/"


def _new_content(step: dict, root: Path) -> None:
    ObjectStore(root / "s3").put_bytes("s3://b/data/x.csv", b"4,5,6")


def _checkpoint_with_execution_id(step: dict, root: Path) -> None:
    uri = {"Std:Join": {"On": "/", "Values": ["s3://b/checkpoints", {"Get": "Execution.PipelineExecutionId"}, ""]}}
    _args(step)["CheckpointConfig"]["S3Uri"] = uri


# (id, the step, a change made before the second run (None: none), verdict on SageMaker: hit?, run under
# another pipeline name?, how many steps alike but for their names)
Change = Callable[[dict, Path], None]
CASES: list[tuple[str, Callable[[], dict], Change | None, bool]] = [
    ("identical rerun", processing, None, True),
    ("same data under another URI", processing, _moved_data, False),
    (
        "changed instance type (not a key attribute)",
        processing,
        lambda s, r: _args(s)["ProcessingResources"]["ClusterConfig"].update(InstanceType="ml.m5.4xlarge"),
        True,
    ),
    (
        "changed stopping condition (not a key attribute)",
        training,
        lambda s, r: _args(s)["StoppingCondition"].update(MaxRuntimeInSeconds=7200),
        True,
    ),
    ("changed environment", processing, lambda s, r: _args(s).update(Environment={"MODE": "fast"}), False),
    ("changed hyperparameter", training, lambda s, r: _args(s)["HyperParameters"].update(lr="0.2"), False),
    ("changed input content under the same URI (a hit, with a note)", processing, _new_content, True),
    ("checkpoint URI holding the execution id", training, _checkpoint_with_execution_id, False),
]


@pytest.mark.parametrize(("case", "make", "change", "hit"), CASES, ids=[c[0] for c in CASES])
def test_a_change_hits_or_misses_as_sagemaker_decides(
    tmp_path: Path, case: str, make: Callable[[], dict], change: Change | None, hit: bool
) -> None:
    step = make()
    if change is _checkpoint_with_execution_id:
        change(step, tmp_path)  # both runs use it: each resolves to its own execution id
    first = _run(tmp_path, [copy.deepcopy(step)])
    assert not first.states[step["Name"]].cache_hit
    if change is not None and change is not _checkpoint_with_execution_id:
        change(step, tmp_path)
    second = _run(tmp_path, [step])
    state = second.states[step["Name"]]
    assert state.cache_hit is hit
    if change is _new_content:
        assert state.cache_note and "s3://b/data/ changed since execution" in state.cache_note
        from pipelines.local.view import load_view
        from pipelines.report.summary import lines

        said = lines(load_view(tmp_path, second.id))
        note = "note: prep was a cache hit although the data under s3://b/data/"
        assert any(line.startswith(note) for line in said), said
    else:
        assert state.cache_note is None


def test_two_steps_alike_but_for_their_names_each_run(tmp_path: Path) -> None:
    execution = _run(tmp_path, [processing("a"), processing("b")])
    assert not execution.states["a"].cache_hit and not execution.states["b"].cache_hit
    again = _run(tmp_path, [processing("a"), processing("b")])
    assert again.states["a"].cache_hit and again.states["b"].cache_hit  # each its own entry


def test_the_same_spec_under_another_pipeline_name_misses(tmp_path: Path) -> None:
    _run(tmp_path, [processing()], pipeline="one")
    assert not _run(tmp_path, [processing()], pipeline="two").states["prep"].cache_hit
    assert _run(tmp_path, [processing()], pipeline="one").states["prep"].cache_hit


def _gated(root: Path, mode: str) -> Execution:
    """prep (cached), then a gate that fails the execution unless Mode is 'pass'."""
    store = ObjectStore(root / "s3")
    if not store.exists("s3://b/code/"):
        store.put_bytes("s3://b/code/ok.py", b"print('ok')")
        store.put_bytes("s3://b/data/x.csv", b"1,2,3")
    gate = {"Name": "gate", "Type": "Condition", "DependsOn": ["prep"], "Arguments": {
        "Conditions": [{"Type": "Equals", "LeftValue": {"Get": "Parameters.Mode"}, "RightValue": "pass"}],
        "IfSteps": [], "ElseSteps": [{"Name": "refused", "Type": "Fail", "Arguments": {"ErrorMessage": "gate"}}]}}
    definition = {"Version": "2020-12-01", "Parameters": [{"Name": "Mode", "Type": "String", "DefaultValue": "x"}],
                  "Steps": [processing(), gate]}  # fmt: skip
    execution = Execution(root, definition, {"Mode": mode}, store, LocalOptions(), pipeline_name="p")
    execution.run()
    return execution


def test_nothing_of_an_execution_that_failed_is_reused(tmp_path: Path) -> None:
    """The gate fails: prep succeeded, but its run is not a cache entry (SageMaker's guide: a step's run counts
    when "the run itself and the entire pipeline are both successful"); the rerun runs prep again. Once an
    execution succeeds, its runs are reused."""
    failed = _gated(tmp_path, "fail")
    assert failed.status == "Failed" and failed.states["prep"].status == "Succeeded"
    again = _gated(tmp_path, "fail")
    assert not again.states["prep"].cache_hit  # nothing from the failed execution
    passed = _gated(tmp_path, "pass")
    assert passed.status == "Succeeded" and not passed.states["prep"].cache_hit
    assert _gated(tmp_path, "pass").states["prep"].cache_hit  # from the execution that succeeded
    assert _gated(tmp_path, "fail").states["prep"].cache_hit  # a hit whatever happens after it
