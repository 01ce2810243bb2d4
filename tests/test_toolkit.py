"""The environment a local job gets, key by key against what SageMaker's training toolkit
(ENVIRONMENT_VARIABLES.md of aws/sagemaker-training-toolkit) and the processing documentation specify."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.local.engine import Execution, LocalOptions
from pipelines.local.store import ObjectStore
from tests.tools.archives import put_source_archive
from tests.tools.engine import engine_with, processing_step

DUMP = """
    import json, os, pathlib, sys
    config = pathlib.Path(os.environ["SM_INPUT_CONFIG_DIR"])
    ours = {k: v for k, v in os.environ.items() if k.startswith("SM_")}
    # the training toolkit itself (sagemaker-training, a dev dependency), reading this node's /opt/ml
    os.environ["SAGEMAKER_BASE_DIR"] = str(config.parent.parent)
    from sagemaker_training import environment
    toolkit = environment.Environment()
    print("DUMP " + json.dumps({
        "env": ours, "argv": sys.argv[1:],
        "toolkit": toolkit.to_env_vars(), "toolkit_argv": toolkit.to_cmd_args(),
        "files": {p.name: json.loads(p.read_text()) for p in config.glob("*.json")},
    }))
"""
# where the local job differs from the toolkit on purpose: the GPU count is the instance type's (the toolkit asks
# nvidia-smi of the machine it runs on), so SM_TRAINING_ENV's num_gpus too
INSTANCE_TYPE_COUNTS = {"SM_NUM_GPUS"}


def training_step(program: str, hyperparameters: dict[str, str], channels: bool) -> dict:
    """A Training step as the compiler writes one, running ``program`` from the test's source archive."""
    arguments = {
        "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
        "HyperParameters": {"sagemaker_program": f'"{program}"',
                            "sagemaker_submit_directory": '"s3://b/code/sourcedir.tar.gz"', **hyperparameters},
        "OutputDataConfig": {"S3OutputPath": "s3://b/models"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.g5.12xlarge" if channels else "ml.m5.large",
                           "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }  # fmt: skip
    if channels:
        source = {"S3DataType": "S3Prefix", "S3Uri": "s3://b/data/train/", "S3DataDistributionType": "FullyReplicated"}
        arguments["InputDataConfig"] = [{"ChannelName": "train", "DataSource": {"S3DataSource": source}}]
    return {"Name": "train", "Type": "Training", "Arguments": arguments}


def _dump(log: Path) -> dict:
    line = next(x for x in log.read_text().splitlines() if x.startswith("DUMP "))
    return json.loads(line[5:])


def _toolkit_dump(tmp_path: Path, hyperparameters: dict[str, str], count: int = 1) -> list[dict]:
    """Each node's SM_* variables and arguments, with the training toolkit's own for the same /opt/ml."""
    store = ObjectStore(tmp_path / "s3")
    put_source_archive(store, "s3://b/code/sourcedir.tar.gz", "dump.py", DUMP)
    store.put_bytes("s3://b/data/train/x.npy", b"data")
    step = training_step("dump.py", hyperparameters, channels=True)
    step["Arguments"]["ResourceConfig"]["InstanceCount"] = count
    definition = {"Version": "2020-12-01", "Parameters": [], "Steps": [step]}
    execution = Execution(tmp_path, definition, {}, store, LocalOptions(nproc=1))
    assert execution.run() == "Succeeded", execution.failure
    log = (execution.step_dir("train") / "log.txt").read_text()
    return [json.loads(line.split("DUMP ", 1)[1]) for line in log.splitlines() if "DUMP " in line]


HYPERPARAMETERS = {"epochs": "3", "model": '"cnn"', "b": "2", "weights": '{"root": 2, "vowel": 1}',
                   "sagemaker_torch_distributed_enabled": "true", "sagemaker_container_log_level": "20",
                   "_tuning_objective_metric": '"val_loss"'}  # fmt: skip


def test_a_training_job_gets_the_environment_the_training_toolkit_makes(tmp_path: Path) -> None:
    """Compared with sagemaker-training's own ``Environment().to_env_vars()`` and ``to_cmd_args()`` over the same
    /opt/ml, on each of two nodes: every variable it sets is set, to the same value."""
    dumps = _toolkit_dump(tmp_path, HYPERPARAMETERS, count=2)
    assert sorted(json.loads(d["env"]["SM_TRAINING_ENV"])["current_host"] for d in dumps) == ["algo-1", "algo-2"]
    for dump in dumps:
        env, toolkit = dump["env"], dump["toolkit"]
        assert set(toolkit) <= set(env), sorted(set(toolkit) - set(env))
        for name, value in toolkit.items():
            if name in INSTANCE_TYPE_COUNTS:
                continue
            if name == "SM_TRAINING_ENV":
                ours, theirs = json.loads(env[name]), json.loads(value)
                assert ours.pop("num_gpus") == 4 and theirs.pop("num_gpus") == 0  # instance type's, machine's
                theirs["is_smddprun_installed"] = theirs["is_smddpmprun_installed"] = False  # no smddp here
                assert ours == theirs
                continue
            assert env[name] == value, (name, env[name], value)
        assert dump["argv"] == dump["toolkit_argv"] == ["-b", "2", "--epochs", "3", "--model", "cnn", "--weights",
                                                        "root=2,vowel=1"]  # sorted; one letter: -b; a dict: k=v
        # the framework's parameters, not the script's; the toolkit's own (log level, tuning metric) in neither
        assert json.loads(env["SM_FRAMEWORK_PARAMS"]) == {"sagemaker_torch_distributed_enabled": True}
        assert "SM_HP_SAGEMAKER_CONTAINER_LOG_LEVEL" not in env and "SM_HP__TUNING_OBJECTIVE_METRIC" not in env
        assert env["SM_FRAMEWORK_MODULE"] == "sagemaker_pytorch_container.training:main"
        assert env["SM_NUM_GPUS"] == "4" and env["SM_CURRENT_INSTANCE_TYPE"] == "ml.g5.12xlarge"  # g5.12xlarge: 4


def test_a_training_job_sees_what_sagemaker_writes_into_its_config_directory(tmp_path: Path) -> None:
    [dump] = _toolkit_dump(tmp_path, {"epochs": "3", "model": '"cnn"'})
    env, files = dump["env"], dump["files"]
    assert env["SM_CHANNEL_TRAIN"].endswith("/opt/ml/input/data/train") and json.loads(env["SM_CHANNELS"]) == ["train"]
    assert env["SM_HP_EPOCHS"] == "3" and env["SM_HP_MODEL"] == "cnn"  # JSON-decoded, as the toolkit passes them
    training_env = json.loads(env["SM_TRAINING_ENV"])
    assert training_env["master_hostname"] == "algo-1" and training_env["is_master"] is True
    assert training_env["distribution_hosts"] == [] and json.loads(env["SM_DISTRIBUTION_INSTANCE_GROUPS"]) == []
    # the files SageMaker writes into /opt/ml/input/config, as its documentation describes them
    assert files["hyperparameters.json"]["epochs"] == "3"  # as the request holds them: strings
    assert files["resourceconfig.json"]["current_host"] == "algo-1" and files["resourceconfig.json"]["hosts"] == [
        "algo-1"
    ]
    assert files["resourceconfig.json"]["current_instance_type"] == "ml.g5.12xlarge"
    assert files["inputdataconfig.json"] == {
        "train": {"TrainingInputMode": "File", "RecordWrapperType": "None", "S3DistributionType": "FullyReplicated"}
    }
    assert json.loads(env["SM_RESOURCE_CONFIG"]) == files["resourceconfig.json"]


def test_a_training_job_whose_requirements_are_not_met_fails_saying_which(tmp_path: Path) -> None:
    import io
    import tarfile

    store = ObjectStore(tmp_path / "s3")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in (("t.py", "print('ran')"), ("requirements.txt", "numpy>=1\nno-such-package-xyz==1.0\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
    store.put_bytes("s3://b/code/sourcedir.tar.gz", raw.getvalue())
    step = training_step("t.py", {}, channels=False)
    execution = Execution(tmp_path, {"Version": "2020-12-01", "Parameters": [], "Steps": [step]}, {}, store)
    assert execution.run() == "Failed"
    reason = execution.failure["reason"]  # type: ignore[index]
    assert "no-such-package-xyz==1.0 (not installed)" in reason and "numpy" not in reason


def test_a_processing_job_gets_its_job_config_and_resource_config(tmp_path: Path) -> None:
    dump = """
        import json, pathlib
        config = pathlib.Path("opt/ml/config")
        files = {p.name: json.loads(p.read_text()) for p in config.glob("*.json")}
        print("DUMP " + json.dumps({"env": {}, "files": files}))
    """
    execution = engine_with(tmp_path, {"dump.py": dump}, [processing_step("process", "dump.py")])
    assert execution.run() == "Succeeded"
    files = _dump(execution.step_dir("process") / "log.txt")["files"]
    job = files["processingjobconfig.json"]
    assert job["ProcessingJobName"].startswith("pipelines-") and job["AppSpecification"]["ImageUri"] == "image"
    assert job["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m5.large"
    assert files["resourceconfig.json"] == {"current_host": "algo-1", "hosts": ["algo-1"]}
