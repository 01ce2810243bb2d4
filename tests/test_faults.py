"""The fault corpus: each case injects one fault and checks that it gets a clear message (never a
traceback), the right exit status or step status, and that nothing already produced is lost.

To add a case, write a function taking a `Case` and decorate it with ``@fault(id, what it gets)``; the
README's reliability section lists the cases from `FAULTS`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.local.records import ENGINE_DIED, list_executions
from pipelines.local.store import ObjectStore
from tests.conftest import run_step, training_env
from tests.tools.datasets import write_digits
from tests.tools.engine import SELF_KILL, engine_with, group_members, processing_step
from tests.tools.quickstart import quickstart_command

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Case:
    tmp: Path
    request: pytest.FixtureRequest
    capsys: pytest.CaptureFixture[str]

    def fixture(self, name: str) -> Path:
        return Path(self.request.getfixturevalue(name))

    def cli(self, *argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = self.capsys.readouterr()
        return code, out.out, out.err


@dataclass(frozen=True)
class Fault:
    id: str
    gets: str
    run: Callable[[Case], None]


FAULTS: list[Fault] = []


def fault(id: str, gets: str) -> Callable[[Callable[[Case], None]], Callable[[Case], None]]:
    def register(run: Callable[[Case], None]) -> Callable[[Case], None]:
        FAULTS.append(Fault(id, gets, run))
        return run

    return register


@pytest.mark.parametrize("case", FAULTS, ids=lambda f: f.id)
def test_fault(case: Fault, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    case.run(Case(tmp_path, request, capsys))


def test_the_corpus_is_large_and_the_readme_lists_every_case() -> None:
    assert len(FAULTS) >= 20 and len({f.id for f in FAULTS}) == len(FAULTS)
    readme = (ROOT / "README.md").read_text()
    for f in FAULTS:
        assert f"`{f.id}`" in readme, f"README's reliability section misses {f.id}"


# --------------------------------------------------------------------------- bad data (steps/preprocess.py)


def _preprocess_fails(case: Case, args: list[str], message: str) -> None:
    out = case.tmp / "out"
    result = run_step("preprocess.py", *args, "--output", str(out))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("preprocess: error: ")
    assert re.search(message, result.stderr), result.stderr
    assert not out.exists() or not any(out.rglob("*")), "partial output left behind"


def _digits_copy(case: Case) -> Path:
    src = case.tmp / "src"
    src.mkdir()
    shutil.copy(case.fixture("digits_raw") / "digits.parquet", src / "digits.parquet")
    return src


@fault("truncated-parquet", "exit 2: the file is not a readable parquet file; no output")
def _truncated(case: Case) -> None:
    src = _digits_copy(case)
    data = (src / "digits.parquet").read_bytes()
    (src / "digits.parquet").write_bytes(data[: len(data) // 2])
    _preprocess_fails(case, ["--input", str(src)], r"digits\.parquet: not a readable parquet file")


@fault(
    "corrupt-parquet-page",
    "exit 2: the file and the row group (or columns) that cannot be read, with the reader's error",
)
def _corrupt_page(case: Case) -> None:
    src = _digits_copy(case)
    data = bytearray((src / "digits.parquet").read_bytes())
    middle = len(data) // 3
    data[middle : middle + 4096] = bytes(range(256)) * 16  # the footer survives, a data page does not
    (src / "digits.parquet").write_bytes(bytes(data))
    _preprocess_fails(
        case,
        ["--input", str(src), "--size", "16", "16"],
        r"digits\.parquet: (row group \d+ is|columns .* are) unreadable",
    )


@fault("undecodable-first-image", "exit 2: the file, row 0 and 'cannot decode the image' (no PIL traceback)")
def _undecodable(case: Case) -> None:
    src = case.tmp / "src"
    src.mkdir()
    pq.write_table(pa.table({"image": [b"not an image", b"nor this"], "label": [0, 1]}), src / "a.parquet")
    _preprocess_fails(case, ["--input", str(src)], r"a\.parquet: row 0: cannot decode the image")


def _wide(case: Case, pixels: pa.Array) -> list[str]:
    src = case.tmp / "src"
    src.mkdir()
    columns = {"image_id": [f"Train_{i}" for i in range(len(pixels))]} | {str(i): pixels for i in range(12)}
    pq.write_table(pa.table(columns), src / "a.parquet")
    (src / "train.csv").write_text("image_id,label\n" + "".join(f"Train_{i},{i % 2}\n" for i in range(len(pixels))))
    return ["--input", str(src), "--height", "3", "--width", "4", "--val-fraction", "0"]


@fault("wrong-pixel-dtype", "exit 2: the column, its type and the type expected")
def _float_pixels(case: Case) -> None:
    args = _wide(case, pa.array([0.5, 1.5, 2.5], type=pa.float64()))
    _preprocess_fails(case, args, r"pixel column '0' has type double, expected uint8")


@fault("pixel-values-out-of-range", "exit 2: the column and the range found (no silent wrap-around to uint8)")
def _wide_values(case: Case) -> None:
    args = _wide(case, pa.array([0, 300, 2], type=pa.int32()))
    _preprocess_fails(case, args, r"pixel column '0' .*values from 0 to 300, outside 0\.\.255")


@fault("wrong-image-size", "exit 2: pixel columns found and expected, and --height/--width to fix it")
def _wrong_size(case: Case) -> None:
    args = _wide(case, pa.array([1, 2, 3], type=pa.uint8()))
    args[args.index("--width") + 1] = "5"
    _preprocess_fails(case, args, r"12 pixel columns, expected 3x5=15; set --height/--width")


@fault("missing-label-column", "exit 2: no integer label columns, and --label-columns to name them")
def _no_labels(case: Case) -> None:
    src = case.tmp / "src"
    src.mkdir()
    image = (case.fixture("digits_raw") / "digits.parquet").as_posix()
    images = pq.read_table(image).column("image").slice(0, 4)
    pq.write_table(pa.table({"image": images}), src / "a.parquet")
    _preprocess_fails(case, ["--input", str(src)], r"no integer label columns found; name them with --label-columns")


@fault("labels-outside-class-count", "exit 2: the head, the label found and the class count declared")
def _labels_out_of_range(case: Case) -> None:
    src = _digits_copy(case)
    _preprocess_fails(
        case, ["--input", str(src), "--num-classes", "label=5"], r"label 'label' = \d at row \d+ is outside 0\.\.4"
    )


@fault("empty-train-split", "exit 2: the train split is empty, and what to change")
def _empty_split(case: Case) -> None:
    src = case.tmp / "src"
    src.mkdir()
    images = pq.read_table(case.fixture("digits_raw") / "digits.parquet").slice(0, 1)
    pq.write_table(images, src / "a.parquet")
    _preprocess_fails(
        case, ["--input", str(src), "--val-fraction", "0.7", "--test-fraction", "0.29"], r"the train split is empty"
    )


@fault("unreadable-input", "exit 2: the missing file named (a link to nowhere), no traceback")
def _dangling(case: Case) -> None:
    src = case.tmp / "src"
    src.mkdir()
    (src / "a.parquet").symlink_to(case.tmp / "gone.parquet")
    _preprocess_fails(case, ["--input", str(src / "a.parquet")], r"a\.parquet: no such file or directory")


# --------------------------------------------------------------------------- bad hyperparameters and checkpoints


def _train(case: Case, *args: str) -> subprocess.CompletedProcess[str]:
    shards = case.fixture("digits_shards")
    env = training_env(case.tmp, shards / "train", shards / "validation")
    return run_step("train.py", "--epochs", "1", "--cnn-width", "8", *args, env=env)


@fault("impossible-hyperparameter", "exit 2 from the script: the option, the rule and the value; no model saved")
def _epochs(case: Case) -> None:
    result = _train(case, "--epochs", "-1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train.py: error: argument --epochs: must be an integer >= 1, got -1" in result.stderr
    assert not (case.tmp / "model").exists()


@fault(
    "checkpoint-from-another-model", "exit 1: the checkpoint names another configuration; --restart to start over; kept"
)
def _foreign_checkpoint(case: Case) -> None:
    assert _train(case).returncode == 0  # leaves a checkpoint of a width-8 model
    checkpoint = case.tmp / "checkpoints" / "checkpoint.pt"
    before = checkpoint.read_bytes()
    result = _train(case, "--cnn-width", "16")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "written by a different model configuration; pass --restart true to start over" in result.stderr
    assert checkpoint.read_bytes() == before


@fault("corrupt-checkpoint", "exit 1: the checkpoint is unreadable, --restart to start over; with --restart it trains")
def _corrupt_checkpoint(case: Case) -> None:
    checkpoint = case.tmp / "checkpoints" / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"PK\x03\x04 half a zip file")
    result = _train(case)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.search(r"the checkpoint .*checkpoint\.pt is unreadable \(.*\); pass --restart true", result.stderr)
    assert checkpoint.read_bytes() == b"PK\x03\x04 half a zip file"
    started_over = _train(case, "--restart", "true")
    assert started_over.returncode == 0 and "--restart: ignoring the checkpoint" in started_over.stdout


# --------------------------------------------------------------------------- the engine


@fault("job-killed-by-a-signal", "an AlgorithmError naming the signal (OutOfMemory for SIGKILL), as the training "
       "toolkit reports it: not retried, whatever the policy")  # fmt: skip
def _killed_job(case: Case) -> None:
    policy = {"ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"], "IntervalSeconds": 1, "MaxAttempts": 2}
    step = processing_step("oom", "kill.py", str(case.tmp / "marker"), RetryPolicies=[policy])
    execution = engine_with(case.tmp, {"kill.py": SELF_KILL}, [step], sleep=lambda _: None)
    assert execution.run() == "Failed"
    [attempt] = execution.states["oom"].attempts
    assert attempt["cause"] == "AlgorithmError" and "killed by SIGKILL" in attempt["reason"]
    assert "OutOfMemory" in attempt["reason"]


WRITE_HERE = """
    import pathlib
    out = pathlib.Path("opt/ml/processing/output/result")
    for i in range(3):
        (out / f"part-{i}").write_text("x" * 1000)
"""


@fault("disk-full-while-staging", "step Failed as Step.SERVICE_FAULT naming the input and the error; the input intact")
def _disk_full(case: Case) -> None:
    store = ObjectStore(case.tmp / "s3")
    store.put_bytes("s3://b/in/data.bin", b"precious")
    step = processing_step("stage", "noop.py")
    step["Arguments"]["ProcessingInputs"].append(
        {
            "InputName": "data",
            "S3Input": {
                "S3Uri": "s3://b/in/",
                "LocalPath": "/opt/ml/processing/input/data",
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
            },
        }
    )
    execution = engine_with(case.tmp, {"noop.py": "print('ok')"}, [step])
    real_copy = shutil.copyfile  # what staging copies with (an S3 download keeps no times or modes)

    def full(src: object, dst: object, **kw: object) -> object:
        if "in/data.bin" in str(src):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(src, dst, **kw)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shutil, "copyfile", full)
        assert execution.run() == "Failed"
    attempt = execution.states["stage"].attempts[-1]
    assert attempt["cause"] == "Step.SERVICE_FAULT"
    assert "cannot stage s3://b/in/" in attempt["reason"] and "No space left on device" in attempt["reason"]
    assert store.path("s3://b/in/data.bin").read_bytes() == b"precious"


@fault("interrupted-upload", "step Failed; no half-written object is ever visible and no cache entry names it")
def _interrupted_upload(case: Case) -> None:
    step = processing_step("write", "write.py", outputs=("result",), CacheConfig={"Enabled": True})
    execution = engine_with(case.tmp, {"write.py": WRITE_HERE}, [step])
    store = execution.store
    real_copy = shutil.copy2
    copies = []

    def crash_midway(src: object, dst: object, **kw: object) -> object:
        if "part-" in str(src):
            copies.append(dst)
            if len(copies) == 2:  # half of the second object written, then the process "dies"
                Path(str(dst)).write_text("x" * 10)
                raise OSError(errno.EIO, "Input/output error")
        return real_copy(src, dst, **kw)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shutil, "copy2", crash_midway)
        assert execution.run() == "Failed"
    prefix = f"s3://b/out/{execution.id}/write/result/"
    visible = dict(store.objects(prefix)) if store.path(prefix).exists() else {}
    assert set(visible) <= {"part-0"} and all(p.read_text() == "x" * 1000 for p in visible.values())
    assert not any((case.tmp / "cache").glob("*.json"))


def _stalled_quickstart(case: Case) -> tuple[subprocess.Popen[str], Path]:
    """`local run` of the quickstart in its own process, returned once its tuning jobs are running."""
    data, root = case.tmp / "data", case.tmp / "runs"
    write_digits(data / "digits")
    proc = subprocess.Popen(
        quickstart_command(root, data, "Epochs=30"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        records = list_executions(root)
        if records and records[0].get("processes") and records[0]["steps"]["tune"]["status"] == "Executing":
            return proc, root
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("the quickstart's tuning step never started")


def _gone(pgid: int) -> bool:
    return not group_members(pgid)


@fault("killed-engine", "the next command marks it Failed ('engine stopped unexpectedly'); no job of it left running")
def _killed_engine(case: Case) -> None:
    proc, root = _stalled_quickstart(case)
    jobs = list_executions(root)[0]["processes"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, out, _ = case.cli("local", "list", "--root", str(root), "--json")
    [record] = json.loads(out)
    assert code == 0 and record["status"] == "Failed" and record["failure"]["reason"] == ENGINE_DIED
    deadline = time.time() + 10
    while not all(_gone(p) for p in jobs) and time.time() < deadline:
        time.sleep(0.2)
    assert all(_gone(p) for p in jobs), "a job of the dead engine is still running"
    steps = list_executions(root)[0]["steps"]
    assert steps["preprocess"]["status"] == "Succeeded" and steps["tune"]["status"] == "Failed"


@fault("sigterm-to-engine", "handled like Ctrl-C: exit 143, the execution Stopped, its jobs stopped")
def _sigterm(case: Case) -> None:
    proc, root = _stalled_quickstart(case)
    jobs = list_executions(root)[0]["processes"]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Stopped (SIGTERM)" in err and "Traceback" not in err
    record = list_executions(root)[0]
    assert record["status"] == "Stopped" and record["steps"]["preprocess"]["status"] == "Succeeded"
    assert all(_gone(p) for p in jobs), {p: group_members(p) for p in jobs}


@fault("record-truncated-by-a-crash", "list skips it; describe exits 2 naming the file; other records unharmed")
def _truncated_record(case: Case) -> None:
    root = case.tmp / "runs"
    for execution_id, text in (
        ("20261101-000000-aaaaaa", '{"id": "20261101-00'),
        (
            "20261102-000000-bbbbbb",
            json.dumps(
                {
                    "id": "20261102-000000-bbbbbb",
                    "pipeline": "p",
                    "status": "Succeeded",
                    "started": None,
                    "ended": None,
                    "parameters": {},
                    "failure": None,
                    "steps": {},
                }
            ),
        ),
    ):
        (root / "executions" / execution_id).mkdir(parents=True)
        (root / "executions" / execution_id / "execution.json").write_text(text)
    code, out, _ = case.cli("local", "list", "--root", str(root), "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == ["20261102-000000-bbbbbb"]
    code, _, err = case.cli("local", "describe", "20261101-000000-aaaaaa", "--root", str(root))
    assert code == 2 and "execution.json is unreadable (truncated by a crash?)" in err


def _failed_execution(case: Case) -> tuple[Path, str]:
    """A two-step execution whose second step failed (its script exits 3 while a flag file exists)."""
    flag = case.tmp / "flag"
    flag.write_text("fail")
    first = processing_step("first", "ok.py", outputs=("out",))
    second = processing_step("second", "flaky.py", str(flag), DependsOn=["first"])
    flaky = "import pathlib, sys\nraise SystemExit(3 if pathlib.Path(sys.argv[1]).exists() else 0)"
    execution = engine_with(
        case.tmp,
        {"ok.py": WRITE_HERE.replace("result", "out"), "flaky.py": flaky},
        [first, second],
        sleep=lambda _: None,
    )
    assert execution.run() == "Failed"
    return case.tmp, execution.id


@fault("retry-after-a-failure", "local retry reruns only what did not succeed, in place; every attempt kept")
def _retry(case: Case) -> None:
    root, execution_id = _failed_execution(case)
    (case.tmp / "flag").unlink()
    code, out, err = case.cli("local", "retry", execution_id, "--root", str(root))
    assert code == 0, err
    [record] = list_executions(root)
    assert record["id"] == execution_id and record["status"] == "Succeeded"
    assert len(record["steps"]["first"]["attempts"]) == 1  # kept its result
    assert [a["status"] for a in record["steps"]["second"]["attempts"]] == ["Failed", "Succeeded"]
    assert [r["status"] for r in record["runs"]] == ["Failed"]
    code, _, err = case.cli("local", "retry", execution_id, "--root", str(root))
    assert code == 2 and "only a Failed or Stopped execution can be retried" in err


@fault("definition-edited-by-hand", "retry refuses it before running anything: exit 2 naming the file or the step")
def _edited_definition(case: Case) -> None:
    root, execution_id = _failed_execution(case)
    definition = root / "executions" / execution_id / "definition.json"
    original = json.loads(definition.read_text())
    definition.write_text(definition.read_text()[:-20])
    code, _, err = case.cli("local", "retry", execution_id, "--root", str(root))
    assert code == 2 and "definition.json is not valid JSON" in err
    original["Steps"][1]["Type"] = "Lambda"
    definition.write_text(json.dumps(original))
    code, _, err = case.cli("local", "retry", execution_id, "--root", str(root))
    assert code == 2 and "step 'second' has type Lambda, which the local engine cannot run" in err
    assert list_executions(root)[0]["status"] == "Failed"


@fault("override-of-the-wrong-type", "exit 2 before anything runs: the parameter, its type and the value")
def _wrong_type(case: Case) -> None:
    code, _, err = case.cli("local", "run", "config/digits.yaml", "--root", str(case.tmp), "Epochs=three")
    assert code == 2 and "parameter 'Epochs' is Integer; 'three' is not one" in err
    assert not (case.tmp / "executions").exists()


def _quickstart_edited(case: Case, old: str, new: str) -> Path:
    spec = case.tmp / "spec.yaml"
    text = (ROOT / "config" / "digits.yaml").read_text()
    assert old in text
    spec.write_text(text.replace(old, new))
    return spec


@fault("override-outside-its-bounds", "exit 2 before anything runs: the rule (min/max/choices) and the value")
def _out_of_bounds(case: Case) -> None:
    spec = _quickstart_edited(
        case,
        "    type: Integer\n    default: 4\n    description: Training epochs",
        "    type: Integer\n    default: 4\n    min: 1\n    max: 50\n    description: Training epochs",
    )
    code, _, err = case.cli("local", "run", str(spec), "--root", str(case.tmp), "Epochs=-1")
    assert code == 2 and "parameter 'Epochs': -1 is below the minimum 1" in err
    assert not (case.tmp / "executions").exists()


@fault("secret-in-a-spec", "exit 2 at validate: the variable, why, and how to pass a Secrets Manager ARN instead")
def _secret(case: Case) -> None:
    spec = _quickstart_edited(
        case,
        "    cache: {enabled: true, expire_after: P30D}",
        "    cache: {enabled: true, expire_after: P30D}\n    environment:\n      WANDB_API_KEY: 0123456789abcdef",
    )
    code, _, err = case.cli("validate", str(spec))
    assert code == 2 and "'WANDB_API_KEY' looks like a secret" in err and "arn:aws:secretsmanager" in err
    assert "0123456789abcdef" not in err


@fault("uri-leaving-its-bucket", "the step fails at staging: '..' is not allowed; nothing outside the bucket is read")
def _traversal(case: Case) -> None:
    data = case.tmp / "data"
    write_digits(data / "digits")
    code, _, err = case.cli(
        "local",
        "run",
        "config/digits.yaml",
        "--root",
        str(case.tmp / "runs"),
        "--mount",
        f"sm-pipelines-data={data}",
        "InputData=s3://sm-pipelines-data/../private/",
    )
    assert code == 1 and "'.' and '..' are not allowed in keys" in err


@fault(
    "bad-endpoint-requests",
    "empty, wrong-type and malformed bodies: 400/415/400 with the toolkit's message; an announced 6 MB+ body "
    "413 before it is read; it serves on",
)
def _bad_requests(case: Case) -> None:
    from pipelines.local.serving import deploy, stop
    from tests.tools.endpoints import post, refused_before_read

    root = case.tmp / "runs"
    state = deploy(root, "faults", case.fixture("digits_model") / "model.tar.gz", "faults-v1", log=lambda _: None)
    port = state["port"]
    try:
        assert post(port, b"", "application/x-npy")[0] == 400
        assert post(port, b"1,2,3", "text/csv")[:2] == (415, "content type 'text/csv' is not supported; use "
                                                       "application/x-npy, application/json, image/png or image/jpeg")
        assert post(port, b"{not json", "application/json")[0] == 400
        assert refused_before_read(port, 6 * 1024 * 1024 + 1)[0] == 413
        buffer = __import__("io").BytesIO()
        np.save(buffer, np.zeros((1, 16, 16), np.uint8))
        assert post(port, buffer.getvalue(), "application/x-npy")[0] == 200  # and it still serves
    finally:
        stop(root, "faults")


@fault("two-runs-at-once", "both succeed on one run root; the cache and the records stay whole")
def _concurrent(case: Case) -> None:
    data, root = case.tmp / "data", case.tmp / "runs"
    write_digits(data / "digits")
    argv = quickstart_command(root, data, "--until", "evaluate", "Epochs=1", "TuningJobs=1", "--parallel", "1")
    procs = [
        subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    records = list_executions(root)
    assert len(records) == 2 and {r["status"] for r in records} == {"Succeeded"}
    for entry in (root / "cache").glob("*.json"):
        assert json.loads(entry.read_text())["outputs"]  # every entry whole and pointing at outputs
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".pending-")]


def _digest(path: Path) -> str:
    import hashlib
    import tarfile

    import torch

    with tarfile.open(path) as tar:
        tar.extractall(path.parent / "x", filter="data")
    state = torch.load(path.parent / "x" / "model.pth", weights_only=True)
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(state[key].numpy().tobytes())
    return digest.hexdigest()


@fault(
    "training-node-lost-mid-epoch",
    "its torchrun agent killed (a lost instance: SageMaker.JOB_INTERNAL_ERROR), retried from its last checkpoint: "
    "same epochs and the same final weights as an uninterrupted run",
)
def _resume(case: Case) -> None:
    shards = case.fixture("digits_shards")
    store = ObjectStore(case.tmp / "s3")
    for split in ("train", "validation"):
        store.upload(shards / split, f"s3://b/data/{split}/")
    import io
    import tarfile

    code = io.BytesIO()
    with tarfile.open(fileobj=code, mode="w:gz") as tar:
        for script in sorted((ROOT / "steps").glob("*.py")):  # as the compiler packs the source directory
            tar.add(script, arcname=script.name)
    store.put_bytes("s3://b/code/sourcedir.tar.gz", code.getvalue())
    marker = case.tmp / "killed"

    def training(name: str, retry: bool) -> dict:
        return {
            "Name": name,
            "Type": "Training",
            "Arguments": {
                "AlgorithmSpecification": {
                    "TrainingImage": "image",
                    "TrainingInputMode": "File",
                    "MetricDefinitions": [{"Name": "val_loss", "Regex": "val_loss=([0-9.]+)"}],
                },
                "HyperParameters": {
                    "sagemaker_program": '"train.py"',
                    "sagemaker_submit_directory": '"s3://b/code/sourcedir.tar.gz"',
                    "epochs": "4",
                    "cnn-width": "8",
                    "batch-size": "64",
                    "augment": "false",
                    "sagemaker_torch_distributed_enabled": "true",
                },
                "InputDataConfig": [
                    {
                        "ChannelName": c,
                        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://b/data/{c}/"}},
                    }
                    for c in ("train", "validation")
                ],
                "OutputDataConfig": {"S3OutputPath": f"s3://b/models/{name}"},
                "CheckpointConfig": {"S3Uri": f"s3://b/checkpoints/{name}/", "LocalPath": "/opt/ml/checkpoints"},
                "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.g5.xlarge", "VolumeSizeInGB": 30},
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            },
            "RetryPolicies": [
                {
                    "ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"],
                    "MaxAttempts": 2,
                    "IntervalSeconds": 1,
                    "BackoffRate": 1.0,
                }
            ]
            if retry
            else [],
        }

    from pipelines.local.engine import Execution, LocalOptions

    definition = {
        "Version": "2020-12-01",
        "Parameters": [],
        "Steps": [training("steady", False), training("killed", True)],
    }
    execution = Execution(case.tmp, definition, {}, store, LocalOptions(max_parallel=1, sleep=lambda _: None))

    def killer() -> None:  # kill the second job's torchrun agent during its third epoch, once (its worker dies with it)
        log = execution.step_dir("killed") / "log.txt"
        while not marker.exists():
            text = log.read_text() if log.exists() else ""
            if "epoch=2 " in text and execution.processes:
                time.sleep(0.1)  # into the third epoch
                for proc in list(execution.processes):
                    os.killpg(proc.pid, signal.SIGKILL)
                marker.write_text("done")
            time.sleep(0.05)

    import threading

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    assert execution.run() == "Succeeded"
    attempts = execution.states["killed"].attempts
    assert [a["status"] for a in attempts] == ["Failed", "Succeeded"] and "SIGKILL" in attempts[0]["reason"]
    assert attempts[0]["cause"] == "SageMaker.JOB_INTERNAL_ERROR"
    log = (execution.step_dir("killed") / "log.txt").read_text()
    resumed = re.search(r"train: resumed from \S+checkpoint\.pt after epoch (\d)", log)
    assert resumed and int(resumed.group(1)) >= 2, log  # not from scratch: from the last checkpoint
    steady = store.path(execution.states["steady"].result["ModelArtifacts"]["S3ModelArtifacts"])  # type: ignore[index]
    killed = store.path(execution.states["killed"].result["ModelArtifacts"]["S3ModelArtifacts"])  # type: ignore[index]
    assert "epoch=4 " in log and "epochs=4" in log  # the same epoch count as the uninterrupted job
    assert _digest(steady) == _digest(killed)


@fault("two-deploys-of-one-endpoint", "they take turns (a file lock): one server starts, the other swaps its model in")
def _concurrent_deploys(case: Case) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from pipelines.local.serving import deploy, list_endpoints, stop

    root, archive = case.tmp / "runs", case.fixture("digits_model") / "model.tar.gz"
    with ThreadPoolExecutor(2) as pool:
        states = list(pool.map(lambda c: deploy(root, "twice", archive, c, log=lambda _: None), ["v1", "v2"]))
    try:
        assert states[0]["pid"] == states[1]["pid"] and states[0]["port"] == states[1]["port"]
        [endpoint] = list_endpoints(root)
        assert endpoint["status"] == "InService"
    finally:
        stop(root, "twice")


@fault(
    "caller-credentials",
    "a job never sees the caller's AWS keys, profile or SMP settings; the region and the spec's variables it does",
)
def _credentials(case: Case) -> None:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (("AWS_ACCESS_KEY_ID", "AKIA-secret"), ("AWS_SECRET_ACCESS_KEY", "secret"),
                            ("AWS_SESSION_TOKEN", "token"), ("AWS_PROFILE", "prod"), ("SMP_ROLE_ARN", "arn:r"),
                            ("AWS_REGION", "eu-west-1")):  # fmt: skip
            mp.setenv(name, value)
        step = processing_step("env", "env.py")
        step["Arguments"]["Environment"] = {"FROM_SPEC": "1"}
        names = "sorted(k for k in os.environ if k[:4] in ('AWS_', 'SMP_', 'FROM'))"
        dump = f"import json, os; print('ENV ' + json.dumps({names}))"
        execution = engine_with(case.tmp, {"env.py": dump}, [step])
        assert execution.run() == "Succeeded"
    line = next(x for x in (execution.step_dir("env") / "log.txt").read_text().splitlines() if x.startswith("ENV "))
    assert json.loads(line[4:]) == ["AWS_REGION", "FROM_SPEC"]


@fault(
    "ports-the-engine-opens", "torchrun's rendezvous, MASTER_ADDR and gloo's sockets, and local endpoints, on 127.0.0.1"
)
def _ports(case: Case) -> None:
    from pipelines.local.runners.base import Job
    from pipelines.local.runners.toolkit import LOOPBACK, loopback_rendezvous
    from pipelines.local.serving import HOST

    script = case.tmp / "rank.py"
    # one write per line: the ranks share the job's output
    line = "f\"RANK {os.environ['MASTER_ADDR']} {os.environ['GLOO_SOCKET_IFNAME']}\\n\""
    script.write_text(f"import os\nos.write(1, {line}.encode())\n")
    lines: list[str] = []
    job = Job("train", "job", case.tmp, ObjectStore(case.tmp / "s3"), None, lines.append)  # type: ignore[arg-type]
    rendezvous = loopback_rendezvous()
    assert rendezvous[rendezvous.index("--rdzv-endpoint") + 1].startswith("127.0.0.1:")
    cmd = [sys.executable, "-m", "torch.distributed.run", *rendezvous, "--nproc_per_node", "2", str(script)]
    job.run(cmd, dict(os.environ, **LOOPBACK), case.tmp)
    assert sorted(x for x in lines if x.startswith("RANK")) == ["RANK 127.0.0.1 lo"] * 2
    assert HOST == "127.0.0.1"
