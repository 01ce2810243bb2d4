"""steps/train.py under the training-job contract: SM_* variables, hyperparameters as arguments,
torchrun for DDP; plus its building blocks in-process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import STEPS, run_step, training_env
from tests.tools.datasets import write_bengali

METRIC_LINE = re.compile(r"^epoch=(\d+) train_loss=([0-9.eE+-]+) .*val_weighted_recall=([0-9.eE+-]+)", re.M)


def test_training_job_writes_a_servable_model_and_parseable_metrics(digits_model: Path) -> None:
    stdout = (digits_model / "stdout.txt").read_text()
    epochs = [int(m.group(1)) for m in METRIC_LINE.finditer(stdout)]
    assert epochs == [1, 2, 3]
    model_dir = digits_model / "model"
    assert sorted(p.name for p in model_dir.iterdir()) == ["code", "model.pth", "model_config.json"]
    assert sorted(p.name for p in (model_dir / "code").iterdir()) == ["inference.py", "models.py"]
    state = torch.load(model_dir / "model.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    config = json.loads((model_dir / "model_config.json").read_text())
    assert config["architecture"] == "cnn" and config["heads"][0]["name"] == "label"
    assert config["input"]["channels"] == 1 and (config["input"]["height"], config["input"]["width"]) == (16, 16)
    history = json.loads((digits_model / "output" / "metrics.json").read_text())
    assert [h["epoch"] for h in history["history"]] == [1, 2, 3]
    # the saved weights are the best epoch's
    best = max(history["history"], key=lambda h: h["val_weighted_recall"])
    assert config["best_epoch"] == best["epoch"]
    assert best["val_acc_label"] > 0.8  # digits are easy


def test_the_metric_lines_train_py_declares_are_the_ones_it_prints(digits_model: Path) -> None:
    """``METRIC_LINES`` (what validate checks metric regexes against) holds the shape of every line of name=value
    pairs the script printed, ``<head>`` for a head's name."""
    from pipelines.spec.scripts import declared

    shapes = {tuple(sorted(pair.split("=")[0] for pair in line.split())) for line in
              declared(STEPS / "train.py", "METRIC_LINES") or ()}  # fmt: skip
    assert len(shapes) == 3
    optional = {"mfu"}  # printed only where the device's peak is known
    shapes = {tuple(k for k in shape if k not in optional) for shape in shapes}
    printed = [line for line in (digits_model / "stdout.txt").read_text().splitlines()
               if line and all(re.fullmatch(r"[a-z_0-9]+=\S+", pair) for pair in line.split())]  # fmt: skip
    assert len(printed) >= 4  # 3 epochs and the closing line
    for line in printed:
        keys = tuple(sorted(re.sub(r"^(val_(?:acc|recall))_label$", r"\1_<head>", pair.split("=")[0])
                            for pair in line.split() if pair.split("=")[0] not in optional))  # fmt: skip
        assert keys in shapes, line


def test_best_weights_are_the_ones_saved(digits_shards: Path, tmp_path: Path) -> None:
    train = pytest.importorskip("train")
    env = training_env(tmp_path, digits_shards / "train", digits_shards / "validation")
    result = run_step("train.py", "--epochs", "2", "--lr", "0.003", "--batch-size", "64", env=env)
    assert result.returncode == 0, result.stderr
    ckpt = torch.load(tmp_path / "checkpoints" / "checkpoint.pt", weights_only=True)
    saved = torch.load(tmp_path / "model" / "model.pth", weights_only=True)
    assert train.state_digest(saved) == train.state_digest(ckpt["best_state"])


def test_torchrun_two_processes_train_identical_weights(digits_shards: Path, tmp_path: Path) -> None:
    env = training_env(tmp_path, digits_shards / "train", digits_shards / "validation")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = run_step("train.py", "--epochs", "2", "--batch-size", "32", env=env, launcher=launcher)
    assert result.returncode == 0, result.stderr + result.stdout
    digests = dict(re.findall(r"rank=(\d) weights_sha256=([0-9a-f]{64})", result.stdout))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"]
    # rank 0 alone logs and saves
    assert len(METRIC_LINE.findall(result.stdout)) == 2
    models = pytest.importorskip("models")
    model = models.build_model(json.loads((tmp_path / "model" / "model_config.json").read_text()))
    model.load_state_dict(torch.load(tmp_path / "model" / "model.pth", weights_only=True))


def test_job_killed_after_an_epoch_resumes_and_ends_like_an_uninterrupted_one(
    digits_shards: Path, tmp_path: Path
) -> None:
    args = ["--epochs", "4", "--batch-size", "32", "--dropout", "0.2"]
    straight = tmp_path / "straight"
    result = run_step(
        "train.py", *args, env=training_env(straight, digits_shards / "train", digits_shards / "validation")
    )
    assert result.returncode == 0, result.stderr

    killed = tmp_path / "killed"
    env = training_env(killed, digits_shards / "train", digits_shards / "validation")
    import os

    proc = subprocess.Popen(
        [sys.executable, str(STEPS / "train.py"), *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("epoch=1 "):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "model" / "model.pth").exists()

    result = run_step("train.py", *args, env=env)
    assert result.returncode == 0, result.stderr
    match = re.search(r"resumed from .* after epoch (\d+)", result.stdout)
    assert match and int(match.group(1)) >= 1
    assert "best_epoch=" in result.stdout and "epochs=4" in result.stdout
    history = json.loads((killed / "output" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    train = pytest.importorskip("train")
    a = torch.load(straight / "checkpoints" / "checkpoint.pt", weights_only=True)
    b = torch.load(killed / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert train.state_digest(a["model"]) == train.state_digest(b["model"]), "resumed run diverged"


@pytest.fixture(scope="module")
def bengali_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("bengali_learn_raw")
    write_bengali(raw, n_images=2000, n_files=1, rows_per_group=2000, seed=3)
    out = tmp_path_factory.mktemp("bengali_learn")
    result = run_step(
        "preprocess.py",
        "--input",
        str(raw),
        "--output",
        str(out),
        "--size",
        "32",
        "56",
        "--invert",
        "--val-fraction",
        "0.2",
    )
    assert result.returncode == 0, result.stderr
    return out


def test_short_run_on_generated_bengali_data_learns_every_head(bengali_shards: Path, tmp_path: Path) -> None:
    env = training_env(tmp_path, bengali_shards / "train", bengali_shards / "validation")
    result = run_step(
        "train.py",
        "--epochs",
        "5",
        "--batch-size",
        "32",
        "--lr",
        "0.003",
        "--cnn-width",
        "16",
        "--head-weights",
        "2,1,1",
        "--cutmix-prob",
        "0.0",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    last = json.loads((tmp_path / "output" / "metrics.json").read_text())["history"][-1]
    for head, classes in {"grapheme_root": 168, "vowel_diacritic": 11, "consonant_diacritic": 7}.items():
        assert last[f"val_acc_{head}"] >= 3 / classes, (head, last)
    config = json.loads((tmp_path / "model" / "model_config.json").read_text())
    assert config["head_weights"] == {"grapheme_root": 0.5, "vowel_diacritic": 0.25, "consonant_diacritic": 0.25}


# ----------------------------------------------------------------------------- building blocks, in-process


def test_cutmix_lambda_is_the_share_of_the_image_not_pasted_over() -> None:
    train = pytest.importorskip("train")
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        x = torch.zeros(4, 1, 20, 30)
        x[:2] = 1.0  # the permutation mixes ones and zeros
        mixed, perm, lam = train.cutmix(x, gen, alpha=1.0, host=gen)
        changed = (mixed != x).any(dim=1)  # pixels taken from another image
        for i in range(4):
            if x[i].mean() != x[perm[i]].mean():
                assert changed[i].float().mean().item() == pytest.approx(1 - lam)


def test_weighted_loss_uses_each_heads_own_logits() -> None:
    train = pytest.importorskip("train")
    logits = {"a": torch.tensor([[10.0, -10.0]]), "b": torch.tensor([[-10.0, 10.0, 0.0]])}
    targets = torch.tensor([[0, 1]])
    assert train.weighted_loss(logits, targets, ["a", "b"], torch.tensor([0.5, 0.5])).item() < 1e-3
    wrong = torch.tensor([[1, 0]])
    loss = train.weighted_loss(logits, wrong, ["a", "b"], torch.tensor([0.75, 0.25])).item()
    assert loss == pytest.approx(0.75 * 20 + 0.25 * 20, rel=1e-3)


def test_head_weights_are_normalised_and_checked() -> None:
    train = pytest.importorskip("train")
    heads = ["grapheme_root", "vowel_diacritic", "consonant_diacritic"]
    assert train.parse_head_weights("2,1,1", heads).tolist() == [0.5, 0.25, 0.25]
    assert train.parse_head_weights("grapheme_root=2", heads).tolist() == [0.5, 0.25, 0.25]
    with pytest.raises(SystemExit, match="unknown heads"):
        train.parse_head_weights("root=2", heads)
    with pytest.raises(SystemExit, match="2 values for 3 heads"):
        train.parse_head_weights("2,1", heads)


def test_scheduler_is_stepped_every_batch(digits_shards: Path, tmp_path: Path) -> None:
    history = None
    env = training_env(tmp_path, digits_shards / "train", None)
    result = run_step("train.py", "--epochs", "2", "--scheduler", "onecycle", "--lr", "0.01", env=env)
    assert result.returncode == 0, result.stderr
    history = json.loads((tmp_path / "output" / "metrics.json").read_text())["history"]
    assert history[0]["lr"] != history[1]["lr"] and history[1]["lr"] < 1e-4  # annealed to ~0 at the end
    assert "val_loss" not in history[0]  # no validation channel, no validation metrics


@pytest.mark.parametrize(
    "arch", ["resnet18", "resnet34", "resnet50", "squeezenet1_1", "mobilenet_v3_small", "efficientnet_b0"]
)
def test_torchvision_backbones_take_any_channel_count_and_give_one_head_each(arch: str) -> None:
    models = pytest.importorskip("models")
    model = models.MultiHeadNet(arch, in_channels=1, heads={"a": 5, "b": 3}).eval()
    out = model(torch.rand(2, 1, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"a": (2, 5), "b": (2, 3)}


def test_pretrained_weights_load_from_a_file_and_feature_extract_freezes_the_backbone(tmp_path: Path) -> None:
    models = pytest.importorskip("models")
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = models.MultiHeadNet(
        "resnet18", 1, {"a": 4}, pretrained_weights=tmp_path / "resnet18.pth", feature_extract=True
    )
    # one grey channel = the RGB filters summed, so grey input replicated to RGB gives the same response
    expected = reference.conv1.weight.sum(dim=1, keepdim=True)
    assert torch.allclose(model.backbone.conv1.weight, expected, atol=1e-6)
    assert torch.equal(model.backbone.layer4[0].conv1.weight, reference.layer4[0].conv1.weight)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"heads.a.weight", "heads.a.bias"}
    model.train()
    assert not model.backbone.training and model.heads.training
    # a directory holding one weights file works too (a SageMaker channel)
    models.MultiHeadNet("resnet18", 3, {"a": 4}, pretrained_weights=tmp_path)


def test_pretrained_weights_that_match_nothing_are_refused(tmp_path: Path) -> None:
    models = pytest.importorskip("models")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "w.pt")
    with pytest.raises(ValueError, match="no key matches a resnet18 state dict"):
        models.MultiHeadNet("resnet18", 1, {"a": 4}, pretrained_weights=tmp_path / "w.pt")


def test_shard_dataset_gathers_across_shards_in_one_call(digits_shards: Path) -> None:
    shards = pytest.importorskip("shards")
    ds = shards.ShardDataset(digits_shards / "train")
    assert len(ds.shards) >= 2
    images, labels = ds.__getitems__([len(ds) - 1, 0, 499, 500])
    full = np.concatenate([np.asarray(s) for s in ds.shards])
    assert torch.equal(images, torch.from_numpy(full[[0, 499, 500, len(ds) - 1]]))
    assert torch.equal(labels, torch.from_numpy(ds.labels[[0, 499, 500, len(ds) - 1]]))


def test_early_stopping_stops_after_patience_epochs_without_improvement(digits_shards: Path, tmp_path: Path) -> None:
    env = training_env(tmp_path, digits_shards / "train", digits_shards / "validation")
    # lr 1e-30 (below float32 resolution: no weight moves) and a frozen backbone: it can never improve after epoch 1
    result = run_step(
        "train.py", "--epochs", "6", "--lr", "1e-30", "--patience", "2", "--feature-extract", "true", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "early stop: no val_weighted_recall improvement in 2 epochs" in result.stdout
    history = json.loads((tmp_path / "output" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert json.loads((tmp_path / "model" / "model_config.json").read_text())["best_epoch"] == 1


def test_a_tuning_jobs_training_job_checkpoints_under_its_own_name(digits_shards: Path, tmp_path: Path) -> None:
    """SageMaker gives every training job of a tuning job one checkpoint URI; each keeps to its own prefix."""
    env = training_env(tmp_path, digits_shards / "train", digits_shards / "validation")
    config = tmp_path / "config"
    config.mkdir()
    (config / "hyperparameters.json").write_text(json.dumps({"_tuning_objective_metric": "val_weighted_recall"}))
    env |= {"SM_INPUT_CONFIG_DIR": str(config), "TRAINING_JOB_NAME": "tune-abc-002-1234abcd"}
    # another configuration's checkpoint at the shared prefix must not be resumed from
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "checkpoint.pt").write_bytes(b"another trial's checkpoint")
    result = run_step("train.py", "--epochs", "1", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "checkpoints" / "tune-abc-002-1234abcd" / "checkpoint.pt").is_file()
    assert "tuning trial tune-abc-002-1234abcd: checkpoints in" in result.stdout
    # a plain training job (no tuning objective) keeps the directory it is given
    plain = training_env(tmp_path / "plain", digits_shards / "train", digits_shards / "validation")
    plain["TRAINING_JOB_NAME"] = "train-job"
    assert run_step("train.py", "--epochs", "1", env=plain).returncode == 0
    assert (tmp_path / "plain" / "checkpoints" / "checkpoint.pt").is_file()


def test_macro_recall_equals_scikit_learns_on_random_confusion_matrices() -> None:
    from sklearn.metrics import recall_score

    metrics = pytest.importorskip("metrics")
    rng = np.random.default_rng(0)
    for _ in range(300):
        classes, n = int(rng.integers(2, 12)), int(rng.integers(1, 60))
        y_true = rng.integers(0, classes, n)
        # often right, sometimes a class that never occurs in the targets
        y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, classes, n))
        confusion = torch.zeros(classes, classes, dtype=torch.long)
        for t, p in zip(y_true, y_pred, strict=True):
            confusion[t, p] += 1
        expected = recall_score(y_true, y_pred, average="macro", zero_division=0)
        assert metrics.macro_recall(confusion) == pytest.approx(expected, abs=1e-12)
    # the example: a class predicted but never true counts as 0, as scikit-learn counts it
    confusion = torch.tensor([[1, 0, 1], [0, 2, 0], [0, 0, 0]])
    assert metrics.macro_recall(confusion) == pytest.approx(0.5)


def test_a_checkpoint_resumed_with_another_schedule_length_is_refused_with_the_fix(
    digits_shards: Path, tmp_path: Path
) -> None:
    """Found on a GPU run: resuming a 3-epoch onecycle run with --epochs 4 stepped past the schedule's end."""
    env = training_env(tmp_path, digits_shards / "train", digits_shards / "validation")
    first = run_step("train.py", "--epochs", "1", "--scheduler", "onecycle", env=env)
    assert first.returncode == 0, first.stderr
    longer = run_step("train.py", "--epochs", "2", "--scheduler", "onecycle", env=env)
    assert longer.returncode != 0
    assert "belongs to a onecycle schedule of" in longer.stderr and "--restart true" in longer.stderr
    assert "Traceback" not in longer.stderr
    same = run_step("train.py", "--epochs", "1", "--scheduler", "onecycle", env=env)
    assert same.returncode == 0 and "resumed from" in same.stdout
