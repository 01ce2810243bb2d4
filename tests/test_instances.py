"""Jobs of several instances run locally as SageMaker runs them: a processing job's instances each get their
share of a ShardedByS3Key input, all of a FullyReplicated one and their own resource config, and their outputs
meet under one S3 prefix."""

from __future__ import annotations

import json
from pathlib import Path

from tests.tools.engine import engine_with, processing_step

REPORT = """
    import json, os, pathlib, sys
    where = sys.argv[1].replace("processing/input/data", "config/resourceconfig.json")
    config = json.loads(pathlib.Path(where).read_text())
    host = config["current_host"]
    if os.environ.get("FAIL_ON") == host:
        sys.exit(f"{host} fails on purpose")
    received = sorted(p.name for p in pathlib.Path(sys.argv[1]).iterdir())
    replicated = sorted(p.name for p in pathlib.Path(sys.argv[2]).iterdir())
    out = pathlib.Path(sys.argv[3])
    (out / f"{host}.json").write_text(json.dumps({"hosts": config["hosts"], "data": received, "labels": replicated}))
    (out / "same-name.txt").write_text(host)
    print("1/1 files")
"""


def _step(count: int, **extra: object) -> dict:
    step = processing_step(
        "prep", "report.py", "/opt/ml/processing/input/data", "/opt/ml/processing/input/labels",
        "/opt/ml/processing/output/out", outputs=("out",), **extra,
    )  # fmt: skip
    args = step["Arguments"]
    args["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = count
    for name, uri, distribution in (("data", "s3://b/data/", "ShardedByS3Key"), ("labels", "s3://b/labels/", None)):
        s3 = {"S3Uri": uri, "LocalPath": f"/opt/ml/processing/input/{name}", "S3DataType": "S3Prefix",
              "S3InputMode": "File", "S3DataDistributionType": distribution or "FullyReplicated"}  # fmt: skip
        args["ProcessingInputs"].append({"InputName": name, "S3Input": s3})
    return step


def _run(tmp_path: Path, count: int, objects: int, environment: dict[str, str] | None = None) -> tuple:
    step = _step(count)
    if environment:
        step["Arguments"]["Environment"] = environment
    execution = engine_with(tmp_path, {"report.py": REPORT}, [step])
    for k in range(objects):
        execution.store.put_bytes(f"s3://b/data/part-{k:02d}.parquet", b"x")
    execution.store.put_bytes("s3://b/labels/train.csv", b"id,label")
    status = execution.run()
    out = execution.store.path(f"s3://b/out/{execution.id}/prep/out")
    return execution, status, out


def test_each_instance_gets_its_share_of_a_sharded_input_and_all_of_a_replicated_one(tmp_path: Path) -> None:
    execution, status, out = _run(tmp_path, 3, 7)
    assert status == "Succeeded", execution.failure
    reports = {p.stem: json.loads(p.read_text()) for p in out.glob("algo-*.json")}
    assert sorted(reports) == ["algo-1", "algo-2", "algo-3"]
    shares = [reports[h]["data"] for h in sorted(reports)]
    assert sorted(sum(shares, [])) == [f"part-{k:02d}.parquet" for k in range(7)]  # each object once
    assert [len(s) for s in shares] == [3, 2, 2]
    assert all(r["labels"] == ["train.csv"] and r["hosts"] == ["algo-1", "algo-2", "algo-3"] for r in reports.values())
    log = (execution.step_dir("prep") / "log.txt").read_text()
    assert "[algo-2] " in log and "replaced 1 object(s)" in log  # same-name.txt: the last upload wins, with a warning
    assert (out / "same-name.txt").read_text() == "algo-3"


def test_more_instances_than_objects_leaves_some_without_data_and_the_job_succeeds(tmp_path: Path) -> None:
    execution, status, out = _run(tmp_path, 3, 2)
    assert status == "Succeeded", execution.failure
    reports = {p.stem: json.loads(p.read_text()) for p in out.glob("algo-*.json")}
    assert [len(reports[h]["data"]) for h in sorted(reports)] == [1, 1, 0]


def test_one_failing_instance_fails_the_job_naming_its_host(tmp_path: Path) -> None:
    execution, status, _ = _run(tmp_path, 2, 4, {"FAIL_ON": "algo-2"})
    assert status == "Failed"
    assert execution.failure["step"] == "prep"
    assert execution.failure["reason"].endswith("exited with status 1 (on algo-2)")
    assert "[algo-2] algo-2 fails on purpose" in (execution.step_dir("prep") / "log.txt").read_text()


# --------------------------------------------------------------------------- training on several nodes

NODE_DUMP = """
    import json, os, pathlib
    host = os.environ["SM_CURRENT_HOST"]
    config = json.loads((pathlib.Path(os.environ["SM_INPUT_CONFIG_DIR"]) / "resourceconfig.json").read_text())
    seen = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "GROUP_RANK", "LOCAL_RANK", "MASTER_ADDR")}
    line = "NODE " + json.dumps({"host": host, "hosts": json.loads(os.environ["SM_HOSTS"]), "config": config,
                                 "torchrun": seen, "channel": sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"]))})
    os.write(1, (line + "\\n").encode())  # one write: the node's processes share its output
    pathlib.Path(os.environ["SM_MODEL_DIR"], f"{host}-rank{seen['RANK']}.txt").write_text(host)
"""


def _source(store: object, files: dict[str, str]) -> None:
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    store.put_bytes("s3://b/code/sourcedir.tar.gz", raw.getvalue())  # type: ignore[attr-defined]


def _training(count: int, distributed: bool, hyperparameters: dict[str, str], program: str) -> dict:
    from tests.test_toolkit import training_step

    step = training_step(program, hyperparameters, channels=True)
    args = step["Arguments"]
    args["ResourceConfig"]["InstanceCount"] = count
    if distributed:
        args["HyperParameters"]["sagemaker_torch_distributed_enabled"] = "true"
    return step


def test_a_distributed_job_of_two_nodes_runs_torchrun_per_node_with_the_toolkits_hosts(tmp_path: Path) -> None:
    import textwrap

    from pipelines.local.engine import Execution, LocalOptions
    from pipelines.local.store import ObjectStore

    store = ObjectStore(tmp_path / "s3")
    _source(store, {"dump.py": textwrap.dedent(NODE_DUMP)})
    store.put_bytes("s3://b/data/train/x.npy", b"data")
    step = _training(2, True, {}, "dump.py")
    execution = Execution(tmp_path, {"Version": "2020-12-01", "Parameters": [], "Steps": [step]}, {}, store,
                          LocalOptions(nproc=2))  # fmt: skip
    assert execution.run() == "Succeeded", execution.failure
    log = (execution.step_dir("train") / "log.txt").read_text()
    nodes = [json.loads(line.split("NODE ", 1)[1]) for line in log.splitlines() if "NODE " in line]
    assert sorted((n["host"], n["torchrun"]["RANK"]) for n in nodes) == [
        ("algo-1", "0"), ("algo-1", "1"), ("algo-2", "2"), ("algo-2", "3"),
    ]  # 2 nodes x 2 processes: global ranks by node  # fmt: skip
    for n in nodes:
        assert n["hosts"] == ["algo-1", "algo-2"] and n["config"]["current_host"] == n["host"]
        assert n["torchrun"]["WORLD_SIZE"] == "4" and n["torchrun"]["MASTER_ADDR"] == "127.0.0.1"
        assert n["torchrun"]["GROUP_RANK"] == {"algo-1": "0", "algo-2": "1"}[n["host"]]
        assert n["channel"] == ["x.npy"]  # FullyReplicated: every node gets the channel
    # the model archive aggregates every node's /opt/ml/model
    import tarfile

    archive = execution.store.path(execution.states["train"].result["ModelArtifacts"]["S3ModelArtifacts"])
    with tarfile.open(archive) as tar:
        names = sorted(tar.getnames())
    assert names == ["algo-1-rank0.txt", "algo-1-rank1.txt", "algo-2-rank2.txt", "algo-2-rank3.txt"]


SHARE_DUMP = """
    import json, os
    names = json.loads(os.environ["SM_CHANNELS"])
    channels = {c: sorted(os.listdir(os.environ[f"SM_CHANNEL_{c.upper()}"])) for c in names}
    print("SHARE " + json.dumps({"host": os.environ["SM_CURRENT_HOST"], "channels": channels}))
"""


def test_a_sharded_training_channel_gives_each_node_its_share_and_a_replicated_one_all(tmp_path: Path) -> None:
    """``S3DataDistributionType: ShardedByS3Key`` on a training channel, over 2 instances: each object reaches one
    node; the FullyReplicated channel reaches both."""
    import textwrap

    from pipelines.local.engine import Execution, LocalOptions
    from pipelines.local.store import ObjectStore

    store = ObjectStore(tmp_path / "s3")
    _source(store, {"share.py": textwrap.dedent(SHARE_DUMP)})
    for k in range(5):
        store.put_bytes(f"s3://b/data/train/part-{k}.npy", b"data")
    store.put_bytes("s3://b/data/labels/labels.csv", b"id,label")
    step = _training(2, False, {}, "share.py")
    channels = step["Arguments"]["InputDataConfig"]
    channels[0]["DataSource"]["S3DataSource"]["S3DataDistributionType"] = "ShardedByS3Key"
    channels.append({"ChannelName": "labels", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": "s3://b/data/labels/", "S3DataDistributionType": "FullyReplicated"}}})
    execution = Execution(tmp_path, {"Version": "2020-12-01", "Parameters": [], "Steps": [step]}, {}, store,
                          LocalOptions())  # fmt: skip
    assert execution.run() == "Succeeded", execution.failure
    log = (execution.step_dir("train") / "log.txt").read_text()
    nodes = {n["host"]: n["channels"] for n in (json.loads(line.split("SHARE ", 1)[1]) for line in log.splitlines()
                                                if "SHARE " in line)}  # fmt: skip
    shares = [nodes[h]["train"] for h in ("algo-1", "algo-2")]
    assert sorted(sum(shares, [])) == [f"part-{k}.npy" for k in range(5)] and [len(x) for x in shares] == [3, 2]
    assert nodes["algo-1"]["labels"] == nodes["algo-2"]["labels"] == ["labels.csv"]


def _tree(pid: int) -> list[int]:
    """A process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def test_a_node_killed_mid_training_is_retried_and_every_node_resumes_from_the_checkpoint(
    tmp_path: Path, digits_shards: Path
) -> None:
    import os
    import signal
    import threading
    import time

    from pipelines.local.engine import Execution, LocalOptions
    from pipelines.local.store import ObjectStore

    store = ObjectStore(tmp_path / "s3")
    from pipelines import layout

    # every step script and its sibling modules, as the code archive carries them
    _source(store, {name: path.read_text() for name, path in layout.code_files().items() if name.endswith(".py")})
    for split in ("train", "validation"):
        store.upload(digits_shards / split, f"s3://b/data/{split}/")
    step = _training(2, True, {"epochs": "3", "batch-size": "8", "scheduler": '"none"'}, "train.py")
    args = step["Arguments"]
    args["InputDataConfig"].append({"ChannelName": "validation", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": "s3://b/data/validation/", "S3DistributionType": "FullyReplicated"}}})
    args["CheckpointConfig"] = {"S3Uri": "s3://b/checkpoints/", "LocalPath": "/opt/ml/checkpoints"}
    args["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "epoch", "Regex": "^epoch=([0-9]+)"}]
    step["RetryPolicies"] = [{"ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"], "IntervalSeconds": 1,
                              "BackoffRate": 1.0, "MaxAttempts": 1}]  # fmt: skip
    execution = Execution(tmp_path, {"Version": "2020-12-01", "Parameters": [], "Steps": [step]}, {}, store,
                          LocalOptions(nproc=1))  # fmt: skip
    outcome: list[str] = []
    runner = threading.Thread(target=lambda: outcome.append(execution.run()))
    runner.start()
    log = execution.step_dir("train") / "log.txt"
    killed = False
    deadline = time.time() + 240
    while time.time() < deadline and not killed:
        time.sleep(0.05)
        if log.exists() and "epoch=1 " in log.read_text():  # epoch 1's checkpoint is on disk: now kill node 2
            for proc in list(execution.processes):
                if "--node-rank" in proc.args and proc.args[proc.args.index("--node-rank") + 1] == "1":
                    for pid in _tree(proc.pid):  # the node disappears, as a reclaimed spot instance does: its
                        os.kill(pid, signal.SIGKILL)  # torchrun agent and its workers (their own sessions)
                    killed = True
    runner.join(timeout=300)
    assert killed and outcome == ["Succeeded"], execution.failure
    state = execution.states["train"]
    assert len(state.attempts) == 2 and "(on algo-2)" in state.attempts[0]["reason"]
    text = log.read_text()
    second = text[text.rindex("restored checkpoints"):]
    # every node restored the checkpoint; rank 0 says where it resumed; the retried job ends at epoch 3
    assert text.count("restored checkpoints from s3://b/checkpoints/") == 2
    resumed = int(__import__("re").search(r"resumed from .* after epoch (\d+)", second).group(1))
    assert resumed in (1, 2) and "\nepoch=3 " in second.replace("[algo-1] ", "") and f"epoch={resumed} " not in second
    digests = __import__("re").findall(r"rank=(\d) weights_sha256=([0-9a-f]{64})", second)
    assert len(digests) == 2 and digests[0][1] == digests[1][1]  # both nodes end with the same weights


SLEEPER = """
    import os, pathlib, time
    pathlib.Path(os.environ["PIDS"], os.environ["RANK"]).write_text(str(os.getpid()))
    time.sleep(120)
"""


def test_workers_of_a_torchrun_agent_killed_outright_do_not_outlive_it(tmp_path: Path) -> None:
    """torchrun puts each worker in its own session: killing the agent's process group alone (SIGKILL, as the
    engine's last resort or a dead engine's reaper does) would leave them running."""
    import os
    import signal
    import textwrap
    import threading
    import time

    from pipelines.local.engine import Execution, LocalOptions
    from pipelines.local.store import ObjectStore

    store = ObjectStore(tmp_path / "s3")
    _source(store, {"sleeper.py": textwrap.dedent(SLEEPER)})
    store.put_bytes("s3://b/data/train/x.npy", b"data")
    step = _training(1, True, {}, "sleeper.py")
    pids = tmp_path / "pids"
    pids.mkdir()
    step["Arguments"]["Environment"] = {"PIDS": str(pids)}
    execution = Execution(tmp_path, {"Version": "2020-12-01", "Parameters": [], "Steps": [step]}, {}, store,
                          LocalOptions(nproc=2))  # fmt: skip
    runner = threading.Thread(target=execution.run)
    runner.start()
    deadline = time.time() + 60
    while len(list(pids.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.1)
    workers = [int(p.read_text()) for p in pids.iterdir()]
    assert len(workers) == 2
    for proc in list(execution.processes):
        os.killpg(proc.pid, signal.SIGKILL)  # the agent's group: not its workers' sessions
    runner.join(timeout=60)
    time.sleep(0.5)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert alive == [], f"workers {alive} outlived their agent"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
