"""The seams of docs/design.md are real: a new definition Type runs through its runner alone, every field
that takes a reference is found by the walk (not listed by hand), and what each layer may import holds."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.cli import main
from pipelines.local import runners
from pipelines.local.engine import Execution, LocalOptions
from pipelines.local.records import load_execution
from pipelines.local.runners import Job, Runner
from pipelines.local.store import ObjectStore
from pipelines.spec import PipelineSpec, walk_references

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- a toy definition Type


class EchoRunner(Runner):
    """A made-up Type: writes its message to an output; cacheable on the message alone."""

    cacheable = True
    runs = 0

    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        EchoRunner.runs += 1
        job.store.put_bytes(args["Output"], args["Message"].encode())
        job.log(f"echoed {args['Message']!r}")
        return {"EchoStatus": "Completed", "Output": args["Output"]}

    def cache_material(self, args: dict[str, Any]) -> Any:
        return {"Message": args["Message"]}

    def outputs(self, result: dict[str, Any]) -> list[str]:
        return [result["Output"]]


def test_a_new_type_runs_caches_and_is_recorded_through_its_runner_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(runners.RUNNERS, "Echo", EchoRunner())
    out = {"Std:Join": {"On": "/", "Values": ["s3://b/echo", {"Get": "Execution.PipelineExecutionId"}]}}
    definition = {
        "Version": "2020-12-01",
        "Parameters": [{"Name": "Message", "Type": "String", "DefaultValue": "hello"}],
        "Steps": [
            {
                "Name": "echo",
                "Type": "Echo",
                "Arguments": {"Message": {"Get": "Parameters.Message"}, "Output": out},
                "CacheConfig": {"Enabled": True, "ExpireAfter": "P1D"},
            },
            # a Fail step reading the toy step's result: references into a new Type resolve too
            {
                "Name": "after",
                "Type": "Condition",
                "Arguments": {
                    "Conditions": [
                        {"Type": "Equals", "LeftValue": {"Get": "Steps.echo.EchoStatus"}, "RightValue": "Completed"}
                    ],
                    "IfSteps": [],
                    "ElseSteps": [{"Name": "never", "Type": "Fail", "Arguments": {"ErrorMessage": "no"}}],
                },
            },
        ],
    }
    store = ObjectStore(tmp_path / "s3")
    EchoRunner.runs = 0
    first = Execution(tmp_path, copy.deepcopy(definition), {}, store, LocalOptions())
    assert first.run() == "Succeeded"
    assert EchoRunner.runs == 1 and store.path(first.states["echo"].result["Output"]).read_text() == "hello"
    assert first.states["never"].status == "Skipped"
    record = load_execution(tmp_path, first.id)
    assert record["steps"]["echo"]["type"] == "Echo" and record["steps"]["echo"]["status"] == "Succeeded"
    assert json.loads((first.step_dir("echo") / "result.json").read_text())["EchoStatus"] == "Completed"

    second = Execution(tmp_path, copy.deepcopy(definition), {}, store, LocalOptions())
    assert second.run() == "Succeeded" and second.states["echo"].cache_hit and EchoRunner.runs == 1
    third = Execution(tmp_path, copy.deepcopy(definition), {"Message": "other"}, store, LocalOptions())
    assert third.run() == "Succeeded" and not third.states["echo"].cache_hit and EchoRunner.runs == 2


def test_the_engine_names_no_step_type() -> None:
    source = (Path(__file__).resolve().parents[1] / "pipelines" / "local" / "engine.py").read_text()
    for step_type in ("Processing", "Training", "Tuning", "Condition", "Fail", "IfSteps", "ElseSteps", "Outcome"):
        assert f'"{step_type}"' not in source, step_type


# --------------------------------------------------------------------------- every field that takes a reference

SPEC: dict[str, Any] = {
    "name": "every-kind",
    "parameters": {
        "Epochs": {"type": "Integer", "default": 2},
        "Threshold": {"type": "Float", "default": 0.5},
        "Approval": {"type": "String", "default": "Approved"},
        "Type": {"type": "String", "default": "ml.m5.xlarge"},
        "Data": {"type": "String", "default": "s3://b/data/"},
    },
    "steps": [
        {
            "name": "prep",
            "kind": "processing",
            "script": "preprocess.py",
            "instance": {"type": "$Type"},
            "inputs": {"input": "$Data"},
            "outputs": ["train", "validation", "test"],
            "arguments": {"size": [16, "$Epochs"], "seed": "$Epochs"},
        },
        {
            "name": "train",
            "kind": "training",
            "instance": {"type": "$Type"},
            "inputs": {"train": "prep.train"},
            "hyperparameters": {"epochs": "$Epochs"},
            "metrics": {"val_weighted_recall": "val_weighted_recall=([0-9.]+)"},
        },
        {
            "name": "tune",
            "kind": "tuning",
            "instance": {"type": "$Type"},
            "inputs": {"train": "prep.train"},
            "hyperparameters": {"epochs": "$Epochs"},
            "metrics": {"val_weighted_recall": "val_weighted_recall=([0-9.]+)"},
            "objective": {"metric": "val_weighted_recall"},
            "ranges": {"lr": {"type": "continuous", "min": 0.001, "max": 0.1}},
        },
        {
            "name": "evaluate",
            "kind": "evaluation",
            "instance": {"type": "$Type"},
            "inputs": {"model": "train.model", "test": "prep.test"},
            "arguments": {"batch-size": "$Epochs"},
        },
        {"name": "register", "kind": "register", "model": "tune.model", "evaluation": "evaluate",
         "model_package_group": "g", "approval_status": "$Approval"},
        {"name": "deploy", "kind": "deploy", "model": "train.model", "endpoint_name": "e",
         "instance": {"type": "$Type"}, "registration": "register"},
    ],
    "gate": {"metric": "evaluate.weighted_recall", "threshold": "$Threshold"},
}  # fmt: skip

# (step, path) of every value that may be $Param; the walk must find exactly these
PARAMETER_FIELDS = [
    ("prep", ("instance", "type")),
    ("prep", ("inputs", "input")),
    ("prep", ("arguments", "size", 1)),
    ("prep", ("arguments", "seed")),
    ("train", ("instance", "type")),
    ("train", ("inputs", "train")),
    ("train", ("hyperparameters", "epochs")),
    ("tune", ("instance", "type")),
    ("tune", ("inputs", "train")),
    ("tune", ("hyperparameters", "epochs")),
    ("evaluate", ("instance", "type")),
    ("evaluate", ("inputs", "model")),
    ("evaluate", ("inputs", "test")),
    ("evaluate", ("arguments", "batch-size")),
    ("register", ("model",)),
    ("register", ("approval_status",)),
    ("deploy", ("model",)),
    ("deploy", ("instance", "type")),
    (None, ("threshold",)),
]


def _set(data: dict[str, Any], step: str | None, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    node = data["gate"] if step is None else next(s for s in data["steps"] if s["name"] == step)
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


def _validate(tmp_path: Path, data: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code = main(["validate", str(path)])
    return code, capsys.readouterr().err, path.read_text()


def test_the_reference_walk_finds_every_field_that_takes_a_parameter() -> None:
    spec = PipelineSpec.model_validate(SPEC)
    found = {(s.name, r.path) for s in spec.steps for r in s.references() if r.accepts and r.accepts.parameter}
    found |= {(None, r.path) for r in walk_references(spec.gate) if r.accepts and r.accepts.parameter}
    literal_defaults = {("deploy", ("instance", "type"))}  # found above because the spec sets it
    assert found == set(PARAMETER_FIELDS) | literal_defaults


def test_the_every_kind_spec_itself_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err, _ = _validate(tmp_path, SPEC, capsys)
    assert code == 0, err


@pytest.mark.parametrize(("step", "path"), PARAMETER_FIELDS, ids=lambda v: str(v))
def test_an_unknown_parameter_in_any_field_is_caught_at_validate_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], step: str | None, path: tuple[Any, ...]
) -> None:
    code, err, text = _validate(tmp_path, _set(SPEC, step, path, "$NoSuchParam"), capsys)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "$NoSuchParam" in row)
    assert code == 2
    assert f"spec.yaml:{line}:" in err and "unknown parameter '$NoSuchParam'" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("step", "path"),
    [("train", ("environment",)), ("prep", ("display_name",)), ("register", ("content_types",))],
)
def test_a_parameter_where_none_is_taken_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], step: str, path: tuple[Any, ...]
) -> None:
    value: Any = {"environment": {"LR": "$Epochs"}, "content_types": ["$Epochs"]}.get(path[0], "$Epochs")
    code, err, _ = _validate(tmp_path, _set(SPEC, step, path, value), capsys)
    assert code == 2 and "does not take a parameter ($Epochs)" in err, err


def test_a_processing_instance_type_parameter_compiles(tmp_path: Path) -> None:
    """The bug that started this: ``instance: {type: $Param}`` on processing passed validate, then crashed."""
    data = _set(SPEC, "prep", ("instance", "type"), "$Type")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["definition", str(path), "--out", str(tmp_path / "d.json")]) == 0
    steps = json.loads((tmp_path / "d.json").read_text())["Steps"]
    prep = next(s for s in steps if s["Name"] == "prep")
    assert prep["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceType"] == {"Get": "Parameters.Type"}


# --------------------------------------------------------------------------- a toy kind, added as a contributor would

TOY_DRIVER = r'''
import contextlib, io, json, sys
from pathlib import Path

from pipelines.cli import main


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()}


root = "runs"
said = {
    "validate": run("validate", "echo.yaml"),
    "refused": run("validate", "bad.yaml"),
    "first": run("local", "run", "echo.yaml", "--root", root),
    "second": run("local", "run", "echo.yaml", "Message=again", "--root", root),
    "describe": run("local", "describe", "latest", "--root", root),
}
from pipelines.local.records import read_record
# in the order they started (two runs within one second have ids that sort by their random part)
records = [name for _, name in sorted((read_record(p.parent)["started"], p.parent.name)
                                      for p in Path(root, "executions").glob("*/execution.json"))]
said["outputs"] = [json.loads(Path(root, "executions", i, "steps", "say", "result.json").read_text())["Output"]
                   for i in records]
said["gc"] = run("local", "gc", "--keep", "1", "--root", root)
from pipelines.local.store import ObjectStore
store = ObjectStore(Path(root) / "s3")
said["after_gc"] = [store.exists(uri) for uri in said["outputs"]]
said["report"] = Path(root, "executions", records[-1], "report.html").read_text()

# the remote view, through the Type's RemoteStep (SageMaker stubbed)
import datetime
from botocore.stub import Stubber
from pipelines.remote import Remote
from pipelines.report import summary
from pipelines.settings import Settings

settings = Settings(region="us-east-1", role_arn="arn:aws:iam::123456789012:role/r", default_bucket="bucket")
remote = Remote(settings, echo=lambda _: None)
arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/echo-pipeline/execution/abc"
when = datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC)
sm = Stubber(remote.sm)
sm.add_response("describe_pipeline_execution", {"PipelineExecutionStatus": "Succeeded", "CreationTime": when,
                "LastModifiedTime": when}, {"PipelineExecutionArn": arn})
sm.add_response("describe_pipeline_definition_for_execution",
                {"PipelineDefinition": Path("build/echo-pipeline.json").read_text()}, {"PipelineExecutionArn": arn})
sm.add_response("list_pipeline_parameters_for_execution", {"PipelineParameters": []}, {"PipelineExecutionArn": arn})
sm.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": [
    {"StepName": "say", "StepStatus": "Succeeded", "StartTime": when, "Metadata": {}}]},
    {"PipelineExecutionArn": arn, "SortOrder": "Ascending"})
sm.add_response("describe_experiment", {"ExperimentName": "toy-experiment", "Description": "hello",
                "ExperimentArn": "arn:aws:sagemaker:us-east-1:123456789012:experiment/toy-experiment"},
                {"ExperimentName": "toy-experiment"})
with sm:
    view = remote.view(arn, Path("build/remote"))
said["remote"] = summary.lines(view)
print(json.dumps(said))
'''

TOY_SPEC = """\
name: echo-pipeline
parameters:
  Message: {type: String, default: hello}
steps:
  - name: say
    kind: echo
    message: $Message
    experiment: toy-experiment
"""


def _repository_copy(destination: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("pipelines", "steps", "containers"):
        shutil.copytree(ROOT / part, destination / part, ignore=ignore)
    return destination


def _add_toy_kind(repo: Path) -> None:
    """What a contributor writes: the kind's modules, and one import and one entry in each layer's table."""
    from tests import toykind

    for module, target in toykind.MODULES.items():
        shutil.copy(Path(toykind.__file__).parent / module, repo / target)
    for table, lines in toykind.TABLES.items():
        text = (repo / table).read_text().splitlines()
        for anchor, line in lines:
            text.insert(next(i for i, row in enumerate(text) if row.startswith(anchor)) + 1, line)
        (repo / table).write_text("\n".join(text) + "\n")


def _changed_files(repo: Path) -> dict[str, tuple[int, int]]:
    """Every file of the copy that differs from the repository: path -> (lines added, lines removed)."""
    import difflib

    changed = {}
    for path in sorted(repo.rglob("*")):
        top = path.relative_to(repo).parts[0]
        if not path.is_file() or "__pycache__" in path.parts or top not in ("pipelines", "steps", "containers"):
            continue
        rel = path.relative_to(repo).as_posix()
        before = (ROOT / rel).read_text().splitlines() if (ROOT / rel).is_file() else None
        after = path.read_text().splitlines()
        if before != after:
            diff = list(difflib.ndiff(before or [], after))
            changed[rel] = (sum(d.startswith("+ ") for d in diff), sum(d.startswith("- ") for d in diff))
    return changed


@pytest.mark.slow
def test_a_toy_kind_needs_only_its_own_modules_and_one_line_per_table(tmp_path: Path) -> None:
    """A new kind, added as its own modules plus one line (and its import) in each layer's table, validates with
    its requests checked, runs locally, shows in the summary, the report and `local describe`, keeps its outputs
    through `local gc` and is described by the remote view; no other file is edited."""
    import subprocess
    import sys

    from tests import toykind

    repo = _repository_copy(tmp_path / "repo")
    _add_toy_kind(repo)
    changed = _changed_files(repo)
    new = {rel for rel, (_, removed) in changed.items() if not (ROOT / rel).exists()}
    assert new == set(toykind.MODULES.values())  # five modules of its own...
    edited = {rel: counts for rel, counts in changed.items() if rel not in new}
    assert edited == dict.fromkeys(toykind.TABLES, (2, 0))  # ...and an import and a line in each of five tables
    assert len(changed) == 10

    (repo / "echo.yaml").write_text(TOY_SPEC)
    (repo / "bad.yaml").write_text(TOY_SPEC.replace("experiment: toy-experiment", "experiment: not_a_name!"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMP_", "AWS_"))}
    env |= {"PYTHONPATH": str(repo), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    (repo / "drive.py").write_text(TOY_DRIVER)
    done = subprocess.run([sys.executable, "drive.py"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    said = json.loads(done.stdout.splitlines()[-1])

    assert said["validate"]["code"] == 0, said["validate"]["err"]
    refused = said["refused"]
    assert refused["code"] == 2 and "CreateExperiment" in refused["err"], refused
    assert "bad.yaml:8:5: steps[0].experiment" in refused["err"], refused  # at the line that set it
    assert said["first"]["code"] == 0 and said["second"]["code"] == 0, said["first"]["err"] + said["second"]["err"]
    assert "say: echoed 'hello' under toy-experiment" in said["first"]["out"]
    assert "say: echoed 'again' under toy-experiment" in said["describe"]["out"]
    assert "say: echoed &#x27;again&#x27; under toy-experiment" in said["report"]
    assert said["gc"]["code"] == 0 and "1 execution(s), 1 output(s)" in said["gc"]["out"], said["gc"]
    assert said["after_gc"] == [False, True]  # the removed execution's output went; the kept one's stayed
    assert "say: echoed 'hello' under toy-experiment" in said["remote"]
