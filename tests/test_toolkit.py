"""The environment a local job gets, key by key against what SageMaker's training toolkit
(ENVIRONMENT_VARIABLES.md of aws/sagemaker-training-toolkit) and the processing documentation specify."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.local.engine import Execution, LocalOptions
from pipelines.local.store import ObjectStore
from tests.tools.archives import put_source_archive
from tests.tools.engine import engine_with, processing_step

# every variable the training toolkit documents (SM_CHANNEL_<name> and SM_HP_<name> per channel and
# hyperparameter), and the keys of SM_TRAINING_ENV it documents
TOOLKIT_VARIABLES = {
    "SM_MODEL_DIR",
    "SM_CHANNELS",
    "SM_HPS",
    "SM_CURRENT_HOST",
    "SM_HOSTS",
    "SM_NUM_GPUS",
    "SM_NUM_CPUS",
    "SM_LOG_LEVEL",
    "SM_NETWORK_INTERFACE_NAME",
    "SM_USER_ARGS",
    "SM_INPUT_DIR",
    "SM_INPUT_CONFIG_DIR",
    "SM_RESOURCE_CONFIG",
    "SM_INPUT_DATA_CONFIG",
    "SM_TRAINING_ENV",
    "SM_OUTPUT_DATA_DIR",
    "SM_OUTPUT_DIR",
    "SM_MODULE_DIR",
    "SM_MODULE_NAME",
    "SM_USER_ENTRY_POINT",
    "SM_CURRENT_INSTANCE_TYPE",
    "SM_OUTPUT_INTERMEDIATE_DIR",
}
TRAINING_ENV_KEYS = {
    "channel_input_dirs",
    "current_host",
    "hosts",
    "hyperparameters",
    "input_config_dir",
    "input_data_config",
    "input_dir",
    "job_name",
    "log_level",
    "model_dir",
    "module_dir",
    "module_name",
    "network_interface_name",
    "num_cpus",
    "num_gpus",
    "output_data_dir",
    "output_dir",
    "resource_config",
}

DUMP = """
    import json, os, pathlib
    config = pathlib.Path(os.environ["SM_INPUT_CONFIG_DIR"])
    print("DUMP " + json.dumps({
        "env": {k: v for k, v in os.environ.items() if k.startswith("SM_")},
        "files": {p.name: json.loads(p.read_text()) for p in config.glob("*.json")},
    }))
"""


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
        source = {"S3DataType": "S3Prefix", "S3Uri": "s3://b/data/train/", "S3DistributionType": "FullyReplicated"}
        arguments["InputDataConfig"] = [{"ChannelName": "train", "DataSource": {"S3DataSource": source}}]
    return {"Name": "train", "Type": "Training", "Arguments": arguments}


def _dump(log: Path) -> dict:
    line = next(x for x in log.read_text().splitlines() if x.startswith("DUMP "))
    return json.loads(line[5:])


def test_a_training_job_sees_what_the_training_toolkit_documents(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s3")
    put_source_archive(store, "s3://b/code/sourcedir.tar.gz", "dump.py", DUMP)
    store.put_bytes("s3://b/data/train/x.npy", b"data")
    step = training_step("dump.py", {"epochs": "3", "model": '"cnn"'}, channels=True)
    definition = {"Version": "2020-12-01", "Parameters": [], "Steps": [step]}
    execution = Execution(tmp_path, definition, {}, store, LocalOptions())
    assert execution.run() == "Succeeded"
    dump = _dump(execution.step_dir("train") / "log.txt")
    env, files = dump["env"], dump["files"]
    assert set(env) >= TOOLKIT_VARIABLES, sorted(TOOLKIT_VARIABLES - set(env))
    assert env["SM_CHANNEL_TRAIN"].endswith("/opt/ml/input/data/train") and json.loads(env["SM_CHANNELS"]) == ["train"]
    assert env["SM_HP_EPOCHS"] == "3" and env["SM_HP_MODEL"] == "cnn"  # JSON-decoded, as the toolkit passes them
    assert json.loads(env["SM_USER_ARGS"]) == ["--epochs", "3", "--model", "cnn"]
    assert env["SM_NUM_GPUS"] == "4" and env["SM_CURRENT_INSTANCE_TYPE"] == "ml.g5.12xlarge"  # a g5.12xlarge has 4
    assert env["SM_MODULE_NAME"] == "dump" and env["SM_USER_ENTRY_POINT"] == "dump.py"
    training_env = json.loads(env["SM_TRAINING_ENV"])
    assert set(training_env) >= TRAINING_ENV_KEYS, sorted(TRAINING_ENV_KEYS - set(training_env))
    assert training_env["hyperparameters"] == {"epochs": 3, "model": "cnn"} and training_env["num_gpus"] == 4
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
