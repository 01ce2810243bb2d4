"""The local engine: the quickstart end to end, the gate's Fail branch, failures, caching, retries,
parallelism, Ctrl-C, and the records later processes read."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.local.cache import parse_duration
from pipelines.local.engine import DefinitionError, Execution
from pipelines.local.expressions import ExpressionError, Resolver
from pipelines.local.store import ObjectStore
from tests.tools.datasets import write_digits
from tests.tools.endpoints import message as message_of
from tests.tools.engine import AGENT_KILL, SELF_KILL, engine_with, group_members, processing_step, runs

ROOT = Path(__file__).resolve().parents[1]


DEPLOYED = {
    "register-RegisterModel": "Succeeded",
    "deploy-if-approved": "Succeeded",
    "deploy-model-CreateModel": "Succeeded",
    "deploy-config": "Succeeded",
    "deploy": "Succeeded",
}


@pytest.fixture(scope="module")
def local_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    from pipelines.local.serving import stop_all

    data = tmp_path_factory.mktemp("data")
    write_digits(data / "digits")
    root = tmp_path_factory.mktemp("runs")
    yield {"root": root, "data": data}
    stop_all(root)  # the quickstart deploys: every endpoint it started is stopped


def run_local(env: dict[str, Path], *extra: str) -> int:
    return main(
        [
            "local",
            "run",
            "config/digits.yaml",
            "--root",
            str(env["root"]),
            "--mount",
            f"sm-pipelines-data={env['data']}",
            *extra,
        ]
    )


def latest(root: Path) -> dict:
    records = sorted((root / "executions").glob("*/execution.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(records[-1].read_text())


@pytest.fixture(scope="module")
def first_run(local_root: dict[str, Path]) -> dict:
    assert run_local(local_root, "Epochs=2", "--nproc", "2") == 0
    return latest(local_root["root"])


def test_quickstart_tunes_with_ddp_trials_and_evaluates_the_best_trials_model(
    first_run: dict, local_root: dict
) -> None:
    steps = first_run["steps"]
    assert first_run["status"] == "Succeeded"
    assert {n: s["status"] for n, s in steps.items()} == {
        "preprocess": "Succeeded",
        "tune": "Succeeded",
        "evaluate": "Succeeded",
        "quality-gate": "Succeeded",
        "quality-gate-failed": "Skipped",
        **DEPLOYED,
    }
    run_dir = local_root["root"] / "executions" / first_run["id"]
    result = json.loads((run_dir / "steps" / "tune" / "result.json").read_text())
    summaries = result["TrainingJobSummaries"]
    assert len(summaries) == 4 and result["TrainingJobStatusCounters"]["Completed"] == 4
    values = [s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for s in summaries]
    assert values == sorted(values, reverse=True)  # best first, as SageMaker lists them
    assert result["BestTrainingJob"]["TrainingJobName"] == summaries[0]["TrainingJobName"]
    for summary in summaries:  # each trial is a training job run as torch_distributed: two gloo ranks
        log = (run_dir / "steps" / "tune" / "trials" / summary["TrainingJobName"] / "log.txt").read_text()
        # one node, its rendezvous on the loopback interface (not --standalone's host name)
        assert re.search(r"-m torch\.distributed\.run --nnodes 1 --rdzv-backend c10d --rdzv-endpoint 127\.0\.0\.1:\d+ "
                         r"--local-addr 127\.0\.0\.1 --nproc_per_node 2", log)  # fmt: skip
        digests = re.findall(r"rank=\d weights_sha256=([0-9a-f]{64})", log)
        assert len(digests) == 2 and len(set(digests)) == 1
        lr = float(summary["TunedHyperParameters"]["lr"])
        assert 0.0005 <= lr <= 0.03 and f"--lr {lr}" in log
    trials = json.loads((run_dir / "steps" / "tune" / "children.json").read_text())
    assert {t["Status"] for t in trials} == {"Completed"}
    for t in trials:  # a value per epoch: the anchored regex does not read train.py's closing best_... line
        curve = t["Curves"]["val_weighted_recall"]  # the objective is the last value printed, as on SageMaker
        assert len(curve) == 2 and curve[-1] == t["Value"]

    # the evaluation read exactly the best trial's artifact
    best = summaries[0]["TrainingJobName"]
    store = ObjectStore(local_root["root"] / "s3")
    best_uri = f"s3://sm-pipelines-unset-bucket/digits-quickstart/tune/{best}/output/model.tar.gz"
    evaluation = json.loads((run_dir / "steps" / "evaluate" / "result.json").read_text())
    model_input = next(i for i in evaluation["ProcessingInputs"] if i["InputName"] == "model")
    assert model_input["S3Input"]["S3Uri"] == best_uri
    staged = run_dir / "steps" / "evaluate" / "sandbox" / "opt" / "ml" / "processing" / "input" / "model"
    assert (staged / "model.tar.gz").read_bytes() == store.path(best_uri).read_bytes()
    report = evaluation["PropertyFiles"]["evaluate-report"]
    assert report["metrics"]["weighted_recall"]["value"] > 0.8
    gate = json.loads((run_dir / "steps" / "quality-gate" / "result.json").read_text())
    assert gate["Outcome"] == "True"
    [check] = gate["Evaluations"]  # both sides of the comparison, for the summary and the report
    assert check["LeftValue"] == report["metrics"]["weighted_recall"]["value"] and check["RightValue"] == 0.8
    assert json.loads((run_dir / "parameters.json").read_text())["Epochs"] == 2
    assert json.loads((run_dir / "definition.json").read_text())["Version"] == "2020-12-01"


def test_a_threshold_it_cannot_meet_ends_at_the_fail_step_registering_and_deploying_nothing(
    first_run: dict, local_root: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.local.registry import LocalRegistry
    from pipelines.local.serving import find

    versions = len(LocalRegistry(local_root["root"]).list("digits-quickstart"))
    serving = find(local_root["root"], "digits-quickstart")["endpoint_config"]
    assert run_local(local_root, "Epochs=2", "AccuracyThreshold=1.01") == 1
    record = latest(local_root["root"])
    assert record["status"] == "Failed"
    assert record["steps"]["quality-gate-failed"]["status"] == "Failed"
    assert {record["steps"][name]["status"] for name in DEPLOYED} == {"Skipped"}
    assert len(LocalRegistry(local_root["root"]).list("digits-quickstart")) == versions
    assert find(local_root["root"], "digits-quickstart")["endpoint_config"] == serving
    reason = record["failure"]["reason"]
    assert reason.startswith("evaluate.weighted_recall = 0.") and "does not pass the gate (>= 1.01 )" in reason
    assert "step 'quality-gate-failed' failed: evaluate.weighted_recall = 0." in capsys.readouterr().err


def test_an_identical_run_hits_the_cache_for_every_cacheable_step(first_run: dict, local_root: dict) -> None:
    assert run_local(local_root, "Epochs=2") == 0
    record = latest(local_root["root"])
    hits = {n: s["cache_hit"] for n, s in record["steps"].items()}
    assert hits == {
        "preprocess": True,
        "tune": True,
        "evaluate": True,
        "quality-gate": False,
        "quality-gate-failed": False,
        **dict.fromkeys(DEPLOYED, False),  # registering and deploying are never cached
    }


def test_a_changed_parameter_reruns_exactly_the_steps_it_reaches_and_reaches_the_script(
    first_run: dict, local_root: dict
) -> None:
    assert run_local(local_root, "Epochs=1", "TuningJobs=2", "AccuracyThreshold=0.5") == 0
    record = latest(local_root["root"])
    assert {n: s["cache_hit"] for n, s in record["steps"].items() if s["status"] == "Succeeded"} == {
        "preprocess": True,
        "tune": False,
        "evaluate": False,
        "quality-gate": False,
        **dict.fromkeys(DEPLOYED, False),
    }
    trials = sorted((local_root["root"] / "executions" / record["id"] / "steps" / "tune" / "trials").iterdir())
    assert len(trials) == 2
    log = (trials[0] / "log.txt").read_text()
    assert "--epochs 1" in log and "epoch=1 " in log and "epoch=2 " not in log


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m pipelines ...` in a fresh process, as a later shell session would run it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pipelines", *args], capture_output=True, text=True, env=env, cwd=ROOT)


def test_records_are_read_by_later_processes(first_run: dict, local_root: dict) -> None:
    root = str(local_root["root"])
    listing = cli("local", "list", "--root", root)
    assert listing.returncode == 0 and first_run["id"] in listing.stdout
    described = cli("local", "describe", first_run["id"], "--root", root)
    assert described.returncode == 0
    assert "tune" in described.stdout and "Succeeded" in described.stdout and '"Epochs": 2' in described.stdout
    best = first_run_best(first_run, local_root)
    assert best in described.stdout  # the trials table
    logs = cli("local", "logs", first_run["id"], "tune", "--root", root)
    assert logs.returncode == 0 and f"trial {best} Completed" in logs.stdout
    trial_log = cli("local", "logs", first_run["id"], "tune", "--trial", best, "--root", root)
    assert trial_log.returncode == 0 and "best_epoch=" in trial_log.stdout
    by_number = cli("local", "logs", first_run["id"], "tune", "--trial", "1", "--root", root)
    assert by_number.returncode == 0 and "-001-" in by_number.stdout
    missing = cli("local", "logs", first_run["id"], "tnue", "--root", root)
    assert missing.returncode == 2 and "did you mean 'tune'?" in missing.stderr


def first_run_best(first_run: dict, local_root: dict) -> str:
    run_dir = local_root["root"] / "executions" / first_run["id"]
    return json.loads((run_dir / "steps" / "tune" / "result.json").read_text())["BestTrainingJob"]["TrainingJobName"]


def test_a_failing_script_fails_the_execution_shows_its_log_and_starts_nothing_downstream(
    local_root: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    (bad / "x").mkdir(parents=True)
    (bad / "x" / "broken.parquet").write_bytes(b"not parquet")
    code = main(
        [
            "local",
            "run",
            "config/digits.yaml",
            "--root",
            str(tmp_path / "runs"),
            "--mount",
            f"bad-data={bad}",
            "InputData=s3://bad-data/x/",
        ]
    )
    assert code == 1
    captured = capsys.readouterr()
    err = captured.err
    # the reason holds the script's own error line, not only its exit status
    assert "step 'preprocess' failed: AlgorithmError: preprocess: error: " in err
    # named as the object it came from, not as its copy in the job's sandbox
    assert "s3://bad-data/x/broken.parquet: not a readable parquet file" in err.splitlines()[0]
    assert err.splitlines()[0].endswith("(preprocess.py exited with status 2)")
    record = latest(tmp_path / "runs")
    # a failed run still gets its summary and report, leading with the failure
    report = tmp_path / "runs" / "executions" / record["id"] / "report.html"
    assert f"report: {report}" in captured.out
    assert "step &#x27;preprocess&#x27; failed: AlgorithmError" in report.read_text()
    assert record["status"] == "Failed"
    assert {n: s["status"] for n, s in record["steps"].items()} == {
        "preprocess": "Failed",
        "tune": "NotRun",
        "evaluate": "NotRun",
        "quality-gate": "NotRun",
        "quality-gate-failed": "NotRun",
        **dict.fromkeys(DEPLOYED, "NotRun"),
    }
    assert not (tmp_path / "runs" / "executions" / record["id"] / "steps" / "tune").exists()


def test_a_definition_with_a_step_type_it_cannot_run_is_refused_before_anything_runs(tmp_path: Path) -> None:
    lambda_step = {"Name": "notify", "Type": "Lambda", "Arguments": {}, "DependsOn": ["a"]}
    with pytest.raises(DefinitionError, match="step 'notify' has type Lambda, which the local engine cannot run"):
        engine_with(tmp_path, {"ok.py": "print('ok')"}, [processing_step("a", "ok.py"), lambda_step])
    assert not (tmp_path / "executions").exists()


def test_overrides_are_checked_against_the_definitions_parameters(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["local", "run", "config/digits.yaml", "--root", str(tmp_path), "Epoch=2"]) == 2
    assert "unknown parameter 'Epoch'; did you mean 'Epochs'?" in capsys.readouterr().err
    assert main(["local", "run", "config/digits.yaml", "--root", str(tmp_path), "Epochs=two"]) == 2


# ----------------------------------------------------------------------------- definition-level tests


def test_retry_policies_retry_a_lost_node_with_backoff_and_record_attempts(tmp_path: Path) -> None:
    """A torchrun agent killed is the node gone (InternalServerError on SageMaker): retried as
    SageMaker.JOB_INTERNAL_ERROR, after the policy's interval."""
    from pipelines.local.engine import Execution, LocalOptions
    from tests.test_toolkit import training_step
    from tests.tools.archives import put_source_archive

    slept: list[float] = []
    policy = {"ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"], "IntervalSeconds": 3, "BackoffRate": 2.0,
              "MaxAttempts": 3}  # fmt: skip
    store = ObjectStore(tmp_path / "s3")
    put_source_archive(store, "s3://b/code/sourcedir.tar.gz", "agent_kill.py", AGENT_KILL)
    step = training_step("agent_kill.py", {"sagemaker_torch_distributed_enabled": "true",
                                           "marker": json.dumps(str(tmp_path / "marker"))}, channels=False)
    step["Arguments"]["ResourceConfig"]["InstanceType"] = "ml.g5.xlarge"
    step["RetryPolicies"] = [policy]
    execution = Execution(tmp_path, {"Version": "2020-12-01", "Parameters": [], "Steps": [step]}, {}, store,
                          LocalOptions(sleep=slept.append, nproc=1))  # fmt: skip
    assert execution.run() == "Succeeded", execution.failure
    attempts = execution.states["train"].attempts
    assert [a["status"] for a in attempts] == ["Failed", "Succeeded"]
    assert attempts[0]["cause"] == "SageMaker.JOB_INTERNAL_ERROR"
    assert attempts[0]["reason"].startswith("InternalServerError: the node's torchrun agent was killed by SIGKILL")
    assert slept == [3.0]


def test_a_script_killed_by_a_signal_is_an_algorithm_error_never_retried(tmp_path: Path) -> None:
    """As the training toolkit reports it (ExecuteUserScriptError), whatever the policy says."""
    policy = {"ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"], "IntervalSeconds": 1, "MaxAttempts": 3}
    step = processing_step("oom", "kill.py", str(tmp_path / "marker"), RetryPolicies=[policy])
    execution = engine_with(tmp_path, {"kill.py": SELF_KILL}, [step], sleep=lambda _: None)
    assert execution.run() == "Failed"
    [attempt] = execution.states["oom"].attempts
    assert attempt["reason"] == ("AlgorithmError: ExecuteUserScriptError: kill.py was killed by SIGKILL (ExitCode -9); "
                                 "OutOfMemory: Process killed by SIGKILL (signal 9)")  # fmt: skip


def test_max_attempts_counts_retries_and_expire_after_min_ends_them() -> None:
    policy = {"ExceptionType": ["Step.SERVICE_FAULT"], "IntervalSeconds": 2, "BackoffRate": 3.0, "MaxAttempts": 2}
    delays = [Execution._retry_delay([policy], "Step.SERVICE_FAULT", attempt, 0.0) for attempt in (1, 2, 3)]
    assert delays == [2.0, 6.0, None]  # two retries after the first attempt, as SageMaker documents MaxAttempts
    expiring = {"ExceptionType": ["Step.SERVICE_FAULT"], "IntervalSeconds": 1, "ExpireAfterMin": 1}
    assert Execution._retry_delay([expiring], "Step.SERVICE_FAULT", 5, 59.0) == 1.0 * 2.0**4
    assert Execution._retry_delay([expiring], "Step.SERVICE_FAULT", 2, 60.0) is None
    assert Execution._retry_delay([policy], "SageMaker.CAPACITY_ERROR", 1, 0.0) is None  # not its causes


def test_a_tuning_step_never_retries_a_job_internal_error(tmp_path: Path) -> None:
    from pipelines.local.runners import RUNNERS

    assert RUNNERS["Tuning"].never_retried == ("SageMaker.JOB_INTERNAL_ERROR",)
    assert RUNNERS["Training"].never_retried == () and RUNNERS["Processing"].never_retried == ()


def test_a_script_error_is_not_retried(tmp_path: Path) -> None:
    policy = {
        "ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"],
        "IntervalSeconds": 1,
        "BackoffRate": 2.0,
        "MaxAttempts": 3,
    }
    step = processing_step("bad", "bad.py", RetryPolicies=[policy])
    execution = engine_with(tmp_path, {"bad.py": "raise SystemExit(3)"}, [step], sleep=lambda _: None)
    assert execution.run() == "Failed"
    assert len(execution.states["bad"].attempts) == 1
    assert execution.failure and execution.failure["reason"] == "AlgorithmError: bad.py exited with status 3"


def test_independent_steps_run_in_parallel(tmp_path: Path) -> None:
    sleeper = "import time; time.sleep(1.5)"
    steps = [
        processing_step("a", "sleep.py"),
        processing_step("b", "sleep.py"),
        processing_step("c", "sleep.py", DependsOn=["a", "b"]),
    ]
    execution = engine_with(tmp_path, {"sleep.py": sleeper}, steps, max_parallel=2)
    assert execution.run() == "Succeeded"
    a, b, c = (execution.states[n] for n in "abc")
    assert b.started < a.ended and a.started < b.ended  # overlapped
    assert c.started >= max(a.ended, b.ended)  # waited for both


def test_outputs_property_files_and_conditions_resolve_like_sagemaker(tmp_path: Path) -> None:
    writer = """
        import json, pathlib, sys
        out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps({"metrics": {"score": {"value": 0.75}}}))
    """
    reader = """
        import pathlib, sys
        print("got", sorted(p.name for p in pathlib.Path(sys.argv[1]).iterdir()))
    """
    produce = processing_step(
        "produce",
        "writer.py",
        "/opt/ml/processing/output/report",
        outputs=("report",),
        PropertyFiles=[{"PropertyFileName": "r", "OutputName": "report", "FilePath": "report.json"}],
    )
    consume = processing_step("consume", "reader.py", "/opt/ml/processing/input/report")
    consume["Arguments"]["ProcessingInputs"].append(
        {
            "InputName": "report",
            "S3Input": {
                "S3Uri": {"Get": "Steps.produce.ProcessingOutputConfig.Outputs['report'].S3Output.S3Uri"},
                "LocalPath": "/opt/ml/processing/input/report",
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
            },
        }
    )
    score = {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.produce.PropertyFiles.r"}, "Path": "metrics.score.value"}}
    gate = {
        "Name": "gate",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [{"Type": "GreaterThanOrEqualTo", "LeftValue": score, "RightValue": 0.7}],
            "IfSteps": [consume],
            "ElseSteps": [{"Name": "nope", "Type": "Fail", "Arguments": {"ErrorMessage": "too low"}}],
        },
    }
    execution = engine_with(tmp_path, {"writer.py": writer, "reader.py": reader}, [produce, gate])
    assert execution.run() == "Succeeded"
    assert execution.states["nope"].status == "Skipped"
    log = (execution.step_dir("consume") / "log.txt").read_text()
    assert "got ['report.json']" in log
    uri = execution.states["produce"].result["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert uri == f"s3://b/out/{execution.id}/produce/report"


def test_ctrl_c_stops_the_running_jobs_and_marks_the_execution_stopped(tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
        from pathlib import Path
        from test_local import engine_with, processing_step
        step = processing_step("sleepy", "sleepy.py", {str(tmp_path / "pid")!r})
        body = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"
        execution = engine_with(Path({str(tmp_path)!r}), {{"sleepy.py": body}}, [step])
        print(execution.id, flush=True)
        try:
            execution.run()
        except KeyboardInterrupt:
            print("interrupted", execution.status, flush=True)
            sys.exit(130)
    """)
    )
    proc = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE, text=True)
    pid_file = tmp_path / "pid"
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    job_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted Stopped" in out
    execution_id = out.split()[0]
    record = json.loads((tmp_path / "executions" / execution_id / "execution.json").read_text())
    assert record["status"] == "Stopped" and record["steps"]["sleepy"]["status"] == "Stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(job_pid, 0)


# a job's main process that starts a helper (its output the job's) and exits without waiting for it
LEAVES_A_HELPER = """
    import pathlib, subprocess, sys
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    pathlib.Path(sys.argv[1]).write_text(str(helper.pid))
    print("main process done")
"""


def test_a_job_ends_with_its_main_process_and_so_do_the_processes_it_left(tmp_path: Path) -> None:
    # on SageMaker the entry point is the container's first process: when it exits, the kernel kills the rest
    step = processing_step("leaves", "leaves.py", str(tmp_path / "helper"))
    execution = engine_with(tmp_path, {"leaves.py": LEAVES_A_HELPER}, [step])
    started = time.monotonic()
    assert execution.run() == "Succeeded"
    assert time.monotonic() - started < 60, "the step waited for the helper (it sleeps 120 s)"
    assert not runs(int((tmp_path / "helper").read_text()))
    assert "main process done" in (execution.step_dir("leaves") / "log.txt").read_text()


def test_a_stop_returns_once_no_process_of_a_job_runs_even_one_its_main_process_left(tmp_path: Path) -> None:
    # the main process dies of SIGTERM at once; its helper ignores SIGTERM and holds the job's output open
    body = """
        import pathlib, subprocess, sys, time
        helper = subprocess.Popen([sys.executable, "-c", "import pathlib, signal, sys, time; "
                                   "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                   "pathlib.Path(sys.argv[1]).write_text('ready'); time.sleep(120)", sys.argv[2]])
        pathlib.Path(sys.argv[1]).write_text(str(helper.pid))
        time.sleep(120)
    """
    pid_file, ready = tmp_path / "helper", tmp_path / "ready"
    execution = engine_with(tmp_path, {"stubborn.py": body}, [processing_step("stubborn", "stubborn.py",
                            str(pid_file), str(ready))])  # fmt: skip
    runner = threading.Thread(target=execution.run)
    runner.start()
    deadline = time.time() + 60
    while not (ready.exists() and pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    [job] = list(execution.processes)
    execution.stop(grace=0.5)
    assert not runs(int(pid_file.read_text())) and group_members(job.pid) == [] and job.returncode is not None
    runner.join(timeout=30)
    assert not runner.is_alive() and execution.status == "Stopped"


def test_execution_job_name_variables_name_the_steps_own_job(tmp_path: Path) -> None:
    step = processing_step("named", "echo.py", {"Get": "Execution.ProcessingJobName"})  # type: ignore[arg-type]
    execution = engine_with(tmp_path, {"echo.py": "import sys; print('JOB', sys.argv[1])"}, [step])
    assert execution.run() == "Succeeded"
    log = (execution.step_dir("named") / "log.txt").read_text()
    assert f"JOB pipelines-{execution.id}-named" in log


def test_property_paths_index_lists_by_name_as_sagemaker_does() -> None:
    from pipelines.local.expressions import path_tokens, walk

    result = {
        "FinalMetricDataList": [{"MetricName": "val_loss", "Value": 0.3}, {"MetricName": "acc", "Value": 0.9}],
        "ProcessingInputs": [{"InputName": "code", "S3Input": {"S3Uri": "s3://b/code/"}}],
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/t/"}}}],
    }
    get = lambda path: walk(result, path_tokens(path), "test")  # noqa: E731
    assert get("FinalMetricDataList['val_loss'].Value") == 0.3
    assert get("ProcessingInputs['code'].S3Input.S3Uri") == "s3://b/code/"
    assert get("InputDataConfig['train'].DataSource.S3DataSource.S3Uri") == "s3://b/t/"
    with pytest.raises(ExpressionError, match="no element named 'f1'"):
        get("FinalMetricDataList['f1'].Value")


def test_expressions_and_conditions() -> None:
    results = {
        "s": {
            "ProcessingOutputConfig": {"Outputs": [{"OutputName": "a", "S3Output": {"S3Uri": "s3://x/a"}}]},
            "TrainingJobSummaries": [{"TrainingJobName": "best"}],
            "PropertyFiles": {"p": {"m": [{"v": 2}]}},
        }
    }
    r = Resolver(
        {"N": 3, "S": "abc", "F": 0.5}, {"PipelineExecutionId": "e1"}, results.__getitem__, lambda uri: {"k": 7}
    )
    assert r({"Get": "Steps.s.ProcessingOutputConfig.Outputs['a'].S3Output.S3Uri"}) == "s3://x/a"
    assert (
        r(
            {
                "Std:Join": {
                    "On": "/",
                    "Values": [
                        "s3:/",
                        {"Get": "Steps.s.TrainingJobSummaries[0].TrainingJobName"},
                        {"Get": "Execution.PipelineExecutionId"},
                        {"Get": "Parameters.N"},
                    ],
                }
            }
        )
        == "s3://best/e1/3"
    )
    assert r({"Std:JsonGet": {"PropertyFile": {"Get": "Steps.s.PropertyFiles.p"}, "Path": "m[0].v"}}) == 2
    assert r({"Std:JsonGet": {"S3Uri": "s3://x/y.json", "Path": "k"}}) == 7
    n, s = {"Get": "Parameters.N"}, {"Get": "Parameters.S"}
    assert r.condition({"Type": "Equals", "LeftValue": n, "RightValue": 3})
    assert r.condition({"Type": "GreaterThan", "LeftValue": n, "RightValue": 2.5})
    assert not r.condition({"Type": "LessThanOrEqualTo", "LeftValue": n, "RightValue": 2})
    assert r.condition({"Type": "In", "QueryValue": s, "Values": ["x", "abc"]})
    assert r.condition({"Type": "Not", "Condition": {"Type": "Equals", "LeftValue": s, "RightValue": "b"}})
    assert r.condition(
        {
            "Type": "Or",
            "Conditions": [
                {"Type": "Equals", "LeftValue": s, "RightValue": "b"},
                {"Type": "GreaterThanOrEqualTo", "LeftValue": {"Get": "Parameters.F"}, "RightValue": 0.5},
            ],
        }
    )
    with pytest.raises(ExpressionError, match="no element named 'b'"):
        r({"Get": "Steps.s.ProcessingOutputConfig.Outputs['b'].S3Output.S3Uri"})
    with pytest.raises(ExpressionError, match="unknown parameter 'Nope'"):
        r({"Get": "Parameters.Nope"})


def test_cache_entries_expire(tmp_path: Path) -> None:
    assert parse_duration("P30D").days == 30 and parse_duration("PT12H").total_seconds() == 12 * 3600
    step = processing_step("a", "ok.py", outputs=("o",), CacheConfig={"Enabled": True, "ExpireAfter": "PT1H"})
    first = engine_with(tmp_path, {"ok.py": "print('ok')"}, [step])
    assert first.run() == "Succeeded" and not first.states["a"].cache_hit
    second = engine_with(tmp_path, {}, [step])
    assert second.run() == "Succeeded" and second.states["a"].cache_hit
    for entry in (tmp_path / "cache").glob("*.json"):  # age the entry past its expiry
        data = json.loads(entry.read_text())
        data["created"] = "2020-01-01T00:00:00+00:00"
        entry.write_text(json.dumps(data))
    third = engine_with(tmp_path, {}, [step])
    assert third.run() == "Succeeded" and not third.states["a"].cache_hit


def test_unknown_step_types_and_parameters_are_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="step 'r' has type Lambda, which the local engine cannot run"):
        engine_with(tmp_path, {}, [{"Name": "r", "Type": "Lambda", "Arguments": {}}])
    store = ObjectStore(tmp_path / "s3")
    with pytest.raises(DefinitionError, match="unknown parameter"):
        Execution(tmp_path, {"Parameters": [], "Steps": []}, {"X": 1}, store)


def test_the_live_table_shows_status_elapsed_and_cache_hits(tmp_path: Path) -> None:
    from rich.console import Console

    from pipelines.local.progress import Progress as Display
    from pipelines.local.progress import step_table

    step = processing_step("a", "ok.py", CacheConfig={"Enabled": True, "ExpireAfter": "P1D"})
    engine_with(tmp_path, {"ok.py": "print('ok')"}, [step]).run()
    execution = engine_with(tmp_path, {}, [step])
    console = Console(record=True, width=120, force_terminal=True)
    display = Display(console, live=True)
    display.attach(execution)
    with display:
        execution.run()
    console.print(step_table(execution))
    text = console.export_text()
    assert "Succeeded" in text and "hit" in text and f"execution {execution.id}" in text


def test_transfer_learning_spec_runs_locally_with_weights_from_a_mounted_channel(
    local_root: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tarfile

    import torch
    import torchvision

    weights = tmp_path / "weights" / "mnv3"
    weights.mkdir(parents=True)
    reference = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    torch.save(reference, weights / "mobilenet_v3_small.pth")
    root = tmp_path / "runs"
    code = main(
        [
            "local",
            "run",
            "config/transfer.yaml",
            "--root",
            str(root),
            "--mount",
            f"sm-pipelines-data={local_root['data']}",
            "--mount",
            f"w={tmp_path}",
            "Backbone=mobilenet_v3_small",
            "PretrainedWeights=s3://w/weights/mnv3/",
            "FeatureExtract=true",
            "Epochs=1",
            "AccuracyThreshold=0.0",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    # live progress, one plain line per epoch (no terminal here) and per preprocessing row group
    assert re.search(r"\] train: Executing: epoch 1: val_weighted_recall=[0-9.]+ val_acc_label=", out), out
    assert "train: Executing: epoch 2" not in out  # Epochs=1: the closing best_... line is no epoch
    assert re.search(r"\] preprocess: Executing: (\d+)/\1 rows", out), out
    record = latest(root)
    run_dir = root / "executions" / record["id"]
    [curves] = json.loads((run_dir / "steps" / "train" / "curves.json").read_text()).values()
    assert len(curves["val_acc_label"]) == len(curves["val_weighted_recall"]) == 1  # one epoch, one point
    assert "--feature-extract True" in (run_dir / "steps" / "train" / "log.txt").read_text()
    model_uri = json.loads((run_dir / "steps" / "train" / "result.json").read_text())["ModelArtifacts"][
        "S3ModelArtifacts"
    ]
    with tarfile.open(ObjectStore(root / "s3").path(model_uri)) as tar:
        tar.extractall(tmp_path / "model", filter="data")
    trained = torch.load(tmp_path / "model" / "model.pth", weights_only=True)
    # the backbone came from the channel and stayed frozen; only the heads trained
    for key in ("features.0.0.weight", "features.12.0.weight", "features.3.block.0.1.running_mean"):
        assert torch.equal(trained[f"backbone.{key}"], reference[key])
    config = json.loads((tmp_path / "model" / "model_config.json").read_text())
    assert config["architecture"] == "mobilenet_v3_small" and config["feature_extract"] is True
    assert config["input"]["channels"] == 3


def test_the_run_record_keeps_its_shape(first_run: dict) -> None:
    """What `local describe`, scripts and later tools read: the keys stay as they are."""
    assert set(first_run) == {
        "id", "pipeline", "status", "started", "ended", "parameters", "failure", "steps",
        "until", "runs", "engine", "processes",  # what a retry and the dead-engine check read
    }  # fmt: skip
    assert first_run["runs"] == [] and first_run["processes"] == [] and first_run["engine"]["pid"] > 0
    summary_keys = {
        "type", "status", "cache_hit", "started", "ended", "elapsed_seconds", "attempts", "failure_reason",
        "depends_on", "cache_note",
    }  # fmt: skip
    assert all(set(step) == summary_keys for step in first_run["steps"].values())
    # the Fail step's message reads the evaluation report, so it waits for both
    assert first_run["steps"]["quality-gate-failed"]["depends_on"] == ["evaluate", "quality-gate"]


def golden_gets(names: tuple[str, ...] | None = None) -> list[tuple[str, str, str, str]]:
    """(golden file, step, its Type, property path) of every ``Get Steps.<step>.<path>`` in the goldens (those
    ``names`` names, else the image pipelines': tests/test_automl.py checks the tabular one against its run)."""
    found = []
    for golden in sorted((ROOT / "tests" / "golden").glob("*.json")):
        if golden.name not in (names or ("bengali.json", "digits.json", "transfer.json")):
            continue
        definition = json.loads(golden.read_text())
        types: dict[str, str] = {}
        stack: list[dict] = list(definition["Steps"])
        while stack:  # every step, conditions' branches included (RegisterModel has no runner to flatten it)
            step = stack.pop()
            types[step["Name"]] = step["Type"]
            for key in ("IfSteps", "ElseSteps"):
                stack += step.get("Arguments", {}).get(key, [])
        for reference in re.findall(r'"Get": "Steps\.([^".]+)\.([^"]+)"', golden.read_text()):
            found.append((golden.name, reference[0], types[reference[0]], reference[1].replace('\\"', '"')))
    return found


def test_every_property_path_in_the_goldens_resolves_against_a_local_result(first_run: dict, local_root: dict) -> None:
    from pipelines.local.expressions import path_tokens, walk
    from pipelines.local.runners import RUNNERS

    run_dir = local_root["root"] / "executions" / first_run["id"]
    # a step the quickstart has by name (preprocess, evaluate, ...), else one of the same Type
    by_name = {path.parent.name: json.loads(path.read_text()) for path in (run_dir / "steps").glob("*/result.json")}
    results = {first_run["steps"][name]["type"]: result for name, result in by_name.items()}
    best = first_run_best(first_run, local_root)
    results["Training"] = json.loads((run_dir / "steps" / "tune" / "trials" / best / "result.json").read_text())
    gets = golden_gets()
    assert {t for _, _, t, _ in gets} >= {"Processing", "Tuning", "Training", "RegisterModel", "Model"}
    unresolved = []
    for golden, step, step_type, path in gets:
        assert step_type in RUNNERS
        result = by_name.get(step, results[step_type])
        try:
            if path.startswith("PropertyFiles."):  # read by JsonGet: the file's parsed content, by its name
                assert path.split(".", 1)[1] in result["PropertyFiles"]
            else:
                walk(result, path_tokens(path), f"{golden}: Steps.{step}")
        except Exception as exc:
            unresolved.append(f"{golden}: Steps.{step}.{path}: {exc}")
    assert not unresolved, unresolved


def test_until_runs_the_named_steps_and_their_ancestors_and_refuses_only_what_would_run(tmp_path: Path) -> None:
    unsupported = {"Name": "register", "Type": "Lambda", "Arguments": {}}
    gate = {
        "Name": "gate",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [{"Type": "Equals", "LeftValue": {"Get": "Parameters.Mode"}, "RightValue": "x"}],
            "IfSteps": [unsupported],
            "ElseSteps": [],
        },
        "DependsOn": ["a"],
    }
    steps = [processing_step("a", "ok.py"), processing_step("b", "ok.py"), gate]
    with pytest.raises(DefinitionError, match="step 'register' has type Lambda.*--until can run the steps"):
        engine_with(tmp_path / "all", {"ok.py": "print('ok')"}, steps)
    execution = engine_with(tmp_path / "some", {"ok.py": "print('ok')"}, steps, until=["gate"])
    assert execution.run() == "Succeeded"
    assert {n: s.status for n, s in execution.states.items()} == {
        "a": "Succeeded", "b": "NotRun", "gate": "Succeeded", "register": "NotRun"
    }  # fmt: skip
    assert execution.states["b"].failure_reason == "not selected (--until)"
    with pytest.raises(DefinitionError, match="--until: no step 'gtae'; did you mean 'gate'"):
        engine_with(tmp_path / "typo", {}, steps, until=["gtae"])


# --------------------------------------------------------------------------- registry and endpoints


def _post(port: int, body: bytes, content_type: str, accept: str = "application/json") -> tuple[int, bytes, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=body, method="POST",
        headers={"Content-Type": content_type, "Accept": accept},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers.get("X-Serving", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), ""


def _npy(array: object) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return buffer.getvalue()


def test_quickstart_registers_a_version_and_its_endpoint_predicts_as_evaluate_does(
    first_run: dict, local_root: dict
) -> None:

    import numpy as np

    from pipelines.local.registry import LocalRegistry
    from pipelines.local.serving import find

    run_dir = local_root["root"] / "executions" / first_run["id"]
    package = json.loads((run_dir / "steps" / "register-RegisterModel" / "result.json").read_text())
    assert package["ModelApprovalStatus"] == "Approved" and package["ModelPackageGroupName"] == "digits-quickstart"
    stored = LocalRegistry(local_root["root"]).describe("digits-quickstart", package["ModelPackageVersion"])
    assert stored["Metrics"]["metrics"]["weighted_recall"]["value"] > 0.8  # the evaluation report, kept
    best = first_run_best(first_run, local_root)
    assert stored["InferenceSpecification"]["Containers"][0]["ModelDataUrl"].endswith(f"/{best}/output/model.tar.gz")

    # evaluate.py's predictions on the test split, by the model the endpoint serves now (later tests redeploy)
    evaluate = pytest.importorskip("evaluate")
    served = find(local_root["root"], "digits-quickstart")
    model_dir = Path(served["model_dir"])
    test_dir = run_dir / "steps" / "evaluate" / "sandbox" / "opt" / "ml" / "processing" / "input" / "test"
    data = evaluate.ShardDataset(test_dir)
    # the same batches both ways: a near tie may fall either way under another batch's float rounding
    expected = evaluate.predict_split(evaluate.model_fn(str(model_dir)), data, 200).predicted["label"]
    images = np.concatenate([np.load(p) for p in sorted(test_dir.glob("images_*.npy"))])
    port = served["port"]
    got = []
    for start in range(0, len(images), 200):
        status, body, _ = _post(port, _npy(images[start : start + 200]), "application/x-npy")
        assert status == 200, body
        got += [p["label"]["class"] for p in json.loads(body)["predictions"]]
    assert got == expected.tolist() and len(got) == len(images)


def test_pending_approval_registers_without_deploying_until_a_person_approves_and_deploys(
    first_run: dict, local_root: dict
) -> None:
    from pipelines.local.serving import find

    root = str(local_root["root"])
    before = find(local_root["root"], "digits-quickstart")["endpoint_config"]
    assert run_local(local_root, "Epochs=2", "ModelApprovalStatus=PendingManualApproval") == 0
    record = latest(local_root["root"])
    steps = record["steps"]
    assert steps["register-RegisterModel"]["status"] == "Succeeded"
    assert steps["deploy-if-approved"]["status"] == "Succeeded"  # evaluated: not approved
    assert {steps[n]["status"] for n in ("deploy-model-CreateModel", "deploy-config", "deploy")} == {"Skipped"}
    assert find(local_root["root"], "digits-quickstart")["endpoint_config"] == before
    package = json.loads(
        (
            local_root["root"] / "executions" / record["id"] / "steps" / "register-RegisterModel" / "result.json"
        ).read_text()
    )
    ref = f"digits-quickstart:{package['ModelPackageVersion']}"
    assert package["ModelApprovalStatus"] == "PendingManualApproval"

    refused = cli("deploy", ref, "--endpoint", "digits-quickstart", "--local", "--root", root)
    assert refused.returncode == 2 and "is PendingManualApproval, not Approved: approve it first" in refused.stderr
    listing = cli("registry", "list", "digits-quickstart", "--local", "--root", root, "--json")
    assert any(p["ModelPackageVersion"] == package["ModelPackageVersion"] for p in json.loads(listing.stdout))
    approved = cli("registry", "approve", ref, "--reason", "looked at the report", "--local", "--root", root)
    assert approved.returncode == 0 and "Approved" in approved.stdout
    described = cli("registry", "describe", ref, "--local", "--root", root, "--json")
    assert json.loads(described.stdout)["ApprovalDescription"] == "looked at the report"
    deployed = cli("deploy", ref, "--endpoint", "digits-quickstart", "--local", "--root", root, "--data-capture",
                   "100", "--capture-destination", "s3://captures/digits/")  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    assert (
        find(local_root["root"], "digits-quickstart")["endpoint_config"]
        == f"digits-quickstart-v{package['ModelPackageVersion']}"
    )
    with_image = local_root["root"] / "digit.png"
    import numpy as np

    from tests.tools.datasets import encode_png

    with_image.write_bytes(encode_png((np.eye(8) * 255).astype(np.uint8)))
    invoked = cli("invoke", "digits-quickstart", str(with_image), "--local", "--root", root)
    assert invoked.returncode == 0 and re.match(r"digit\.png: label=\d \(0\.\d{3}\)", invoked.stdout), invoked.stdout
    # data capture, switched on by deploy (Pipelines refuses it in a step): <destination>/<endpoint>/<variant>/<hour>/
    [captured] = (local_root["root"] / "s3" / "captures" / "digits" / "digits-quickstart" / "AllTraffic").glob(
        "*/*/*/*/*.jsonl"
    )
    event = json.loads(captured.read_text().splitlines()[-1])["captureData"]
    assert event["endpointInput"]["observedContentType"] == "image/png" and event["endpointOutput"]["data"]


def test_redeploying_swaps_the_model_without_a_failed_request(first_run: dict, local_root: dict) -> None:
    import threading

    import numpy as np

    from pipelines.local.registry import LocalRegistry
    from pipelines.local.serving import deploy, find

    root = local_root["root"]
    store = ObjectStore(root / "s3")
    versions = LocalRegistry(root).list("digits-quickstart")
    archive = store.path(versions[-1]["InferenceSpecification"]["Containers"][0]["ModelDataUrl"])
    port = find(root, "digits-quickstart")["port"]
    body, results, stop = _npy(np.zeros((16, 16), np.uint8)), [], threading.Event()

    def client() -> None:
        while not stop.is_set():
            status, _, serving = _post(port, body, "application/x-npy")
            results.append((status, serving))

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    deploy(root, "digits-quickstart", archive, "swap-a", log=lambda _: None)
    time.sleep(0.5)
    deploy(root, "digits-quickstart", archive, "swap-b", log=lambda _: None)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert results and all(status == 200 for status, _ in results), [r for r in results if r[0] != 200][:3]
    served = [label for _, label in results]
    assert "swap-a" in served and served[-1] == "swap-b" and find(root, "digits-quickstart")["port"] == port


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "message"),
    [
        (b"1,2", "text/csv", "application/json", 415, "content type 'text/csv' is not supported"),
        (b"[[1]]", "application/json", "text/csv", 406, "accept type 'text/csv' is not supported"),
        (b"{bad", "application/json", "application/json", 400, "invalid JSON"),
        (b"", "application/x-npy", "application/json", 400, "empty"),
        (None, "application/x-npy", "application/json", 413, "at most 256"),
    ],
)
def test_bad_requests_get_their_status_and_the_toolkits_message_and_the_server_lives_on(
    first_run: dict, local_root: dict, body: bytes | None, content_type: str, accept: str, status: int, message: str
) -> None:
    import numpy as np

    from pipelines.local.serving import find, ping

    port = find(local_root["root"], "digits-quickstart")["port"]
    payload = _npy(np.zeros((257, 16, 16), np.uint8)) if body is None else body
    got, answer, _ = _post(port, payload, content_type, accept)
    assert got == status and message in message_of(answer), answer
    assert ping(port) is not None


def test_the_endpoint_serves_concurrent_clients(first_run: dict, local_root: dict) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from pipelines.local.serving import find

    port = find(local_root["root"], "digits-quickstart")["port"]
    bodies = [_npy(np.full((16, 16), i * 16, np.uint8)) for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: _post(port, b, "application/x-npy"), bodies))
    assert [a[0] for a in answers] == [200] * 16


@pytest.mark.parametrize(
    "uri",
    [
        "s3://sm-pipelines-data/../data-private/digits/",
        "s3://../x",
        "s3://b/a/../../c",
        "s3://B/x",
        "s3://b/./x",
        "s3://b//etc/passwd",
        "s3://b/a//c",
    ],
)
def test_the_object_store_refuses_uris_that_would_leave_their_bucket(tmp_path: Path, uri: str) -> None:
    from pipelines.local.store import StoreError

    store = ObjectStore(tmp_path / "s3", {"sm-pipelines-data": tmp_path / "data"})
    with pytest.raises(StoreError):
        store.path(uri)


PDEATHSIG = """
import ctypes, signal
value = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(value))  # PR_GET_PDEATHSIG
print(value.value)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_job_dies_with_the_engine_and_is_started_without_python_between_fork_and_exec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's process carries SIGKILL as its parent-death signal, set by ``setpriv`` where it can (no
    ``preexec_fn``: the engine's fork stays a vfork, and runs no Python in a child of a threaded process), by a
    ``preexec_fn`` where it cannot; a program that is not there fails to start, as it always did."""
    import shutil

    from pipelines.local.runners import base

    found = base._setpriv()
    # util-linux 2.33 or later (Debian's, CI's) has --pdeathsig: the engine uses it there
    assert shutil.which("setpriv") is None or found is not None
    for setpriv in (found, None):
        monkeypatch.setattr(base, "_setpriv", lambda setpriv=setpriv: setpriv)
        launched, preexec = base._dying_with_parent([sys.executable, "-c", PDEATHSIG], os.environ.get("PATH"))
        if setpriv is not None:
            assert launched[:4] == [setpriv, "--pdeathsig", "KILL", "--"] and preexec is None
        else:
            assert launched[0] == sys.executable and preexec is base._die_with_parent
        done = subprocess.run(launched, preexec_fn=preexec, capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == str(int(signal.SIGKILL)), done.stderr
        missing, _ = base._dying_with_parent([str(tmp_path / "no-such-program")], os.environ.get("PATH"))
        assert missing == [str(tmp_path / "no-such-program")]


def test_warm_up_answers_what_a_runs_first_job_would_wait_for() -> None:
    """`local run` asks ahead, beside the compile, what the first job would: whether setpriv can set the
    parent-death signal, and what a requirements file asks that this environment lacks; the job then finds both
    answered."""
    from pipelines.local.runners import base

    base._setpriv.cache_clear()
    base._unmet.cache_clear()
    text = "pyarrow>=15\nno-such-distribution-here>=1\n"
    base.warm_up([text])
    assert base._setpriv.cache_info().currsize == 1
    hits = base._unmet.cache_info().hits
    assert base._unmet(text) == ("no-such-distribution-here>=1 (not installed)",)
    assert base._unmet.cache_info().hits == hits + 1
