"""Keeping the device fed, proven on a CPU: the training split held on the device trains the very same model
as the loader workers do; a training step reads no value back from the device (only host draws); a compiler
that fails falls back to eager once, saying so; the FLOP per sample and the utilisation are reported."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.conftest import run_step, training_env


def _train(digits_shards: Path, tmp: Path, *extra: str) -> tuple[str, str]:
    env = training_env(tmp, digits_shards / "train", digits_shards / "validation")
    done = run_step("train.py", "--epochs", "2", "--batch-size", "64", "--cutmix-prob", "0.5", "--mixup-prob", "0.2",
                    "--num-workers", "0", *extra, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    train = pytest.importorskip("train")
    digest = train.state_digest(torch.load(tmp / "model" / "model.pth", weights_only=True))
    return digest, done.stdout


def test_the_split_on_the_device_trains_the_same_model_as_the_loader_workers(
    digits_shards: Path, tmp_path: Path
) -> None:
    on, said_on = _train(digits_shards, tmp_path / "on", "--data-on-device", "on")
    off, said_off = _train(digits_shards, tmp_path / "off", "--data-on-device", "off")
    assert "train: data on the device:" in said_on and "MB uint8, batched there" in said_on
    assert "data on the device" not in said_off
    assert on == off  # the same samples in the same batches, the same draws: the same weights

    def recall(text: str) -> list[str]:
        return re.findall(r"val_weighted_recall=([0-9.]+)", text)

    assert recall(said_on) == recall(said_off)
    auto = _train(digits_shards, tmp_path / "auto")[1]  # on a CPU, auto keeps the loader workers, and says so
    assert "--data-on-device auto keeps it on a GPU only" in auto


def test_a_training_step_reads_nothing_back_from_the_device_but_host_draws(
    digits_shards: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every read of a tensor's value (item, float, int, bool, tolist) the step scripts make during an epoch's
    steps happens inside a host draw; on a GPU any other would make the step wait for the device. (The
    libraries' own reads, the sampler's host permutation and a CPU optimizer's step count, are theirs: on a GPU
    the optimizer is fused and keeps its count on the device, and bench/gpu_check.sh runs an epoch under CUDA's
    sync debug mode.)"""
    train = pytest.importorskip("train")
    from shards import DeviceBatches, ShardDataset

    rt = train.Runtime(torch.device("cpu"), 0, 0, 1, None, False)
    dataset = ShardDataset(digits_shards / "train")
    args = train.build_parser().parse_args(["--cutmix-prob", "0.5", "--mixup-prob", "0.3", "--epochs", "1"])
    heads, config = train.learned(args, dataset, rt)
    parts = train.build_trainables(args, config, rt, 5)
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
    loader = DeviceBatches(dataset, sampler, 64, True, rt.device)
    reads: list[str] = []

    def guarded(name: str) -> Any:
        real = getattr(torch.Tensor, name)

        def read(self: torch.Tensor, *a: Any, **k: Any) -> Any:
            caller = sys._getframe(1).f_code.co_filename
            if not train.HOST_DRAWS.active and Path(caller).parent.name == "steps":
                reads.append(f"{name} in {Path(caller).name}:{sys._getframe(1).f_lineno}")
            return real(self, *a, **k)

        return read

    gens = (torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
    with monkeypatch.context() as patch:
        for name in ("item", "__float__", "__int__", "__bool__", "tolist", "__index__"):
            patch.setattr(torch.Tensor, name, guarded(name))
        steps = iter(loader)
        # the loop of train_one_epoch, less its last line (the epoch's reduction, the one read allowed)
        parts.module.train()
        for images, targets in [next(steps), next(steps), next(steps)]:
            x = train.prepare(images, rt, heads)
            x, perm, lam = train.augment(x, args, *gens)
            logits = parts.module(x)
            loss = train.weighted_loss(logits, targets, heads.names, heads.weights)
            if perm is not None:
                loss = lam * loss + (1 - lam) * train.weighted_loss(logits, targets[perm], heads.names, heads.weights)
            parts.optimizer.zero_grad(set_to_none=True)
            parts.scaler.scale(loss).backward()
            parts.scaler.step(parts.optimizer)
            parts.scaler.update()
    assert reads == [], reads


class Boom(Exception):
    """What a compiler stack raises (its module is made torch._inductor's below)."""


Boom.__module__ = "torch._inductor.exc"


def test_a_failing_compiler_falls_back_to_eager_once_and_says_so() -> None:
    throughput = pytest.importorskip("throughput")
    said: list[str] = []
    model = nn.Linear(3, 2)
    calls = {"compiled": 0}

    def broken(module: nn.Module) -> Any:
        def run(*args: Any) -> Any:
            calls["compiled"] += 1
            raise Boom("no C++ compiler found")

        return run

    wrapped = throughput.CompiledOrEager(model, said.append, compiler=broken)
    x = torch.randn(4, 3)
    assert torch.equal(wrapped(x), model(x)) and torch.equal(wrapped(x), model(x))
    assert calls["compiled"] == 1  # tried once, then eager for good
    assert len(said) == 1 and said[0].startswith("train: torch.compile failed (Boom: no C++ compiler found)")

    def model_error(module: nn.Module) -> Any:
        return lambda *args: module(torch.randn(4, 5))  # the model's own error: raised, not hidden

    with pytest.raises(RuntimeError):
        throughput.CompiledOrEager(model, said.append, compiler=model_error)(x)


def test_flop_per_sample_and_the_utilisation_are_reported(digits_shards: Path, tmp_path: Path) -> None:
    throughput = pytest.importorskip("throughput")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    flops = throughput.flops_per_sample(model, torch.randn(2, 1, 8, 8), lambda out: out.sum())
    # forward 2·in·out; backward the weights' gradient, 2·in·out (the input needs none)
    assert flops == pytest.approx(2 * 2 * 64 * 10)
    assert model[1].weight.grad is None  # counted on a copy
    said = _train(digits_shards, tmp_path, "--peak-tflops", "1")[1]
    assert re.search(r"train: [0-9.]+ GFLOP per sample \(forward and backward\); 1\.0 TFLOP/s peak", said)
    epoch = next(line for line in said.splitlines() if line.startswith("epoch=1 "))
    assert re.search(r" tflops=[0-9.e-]+ mfu=[0-9.e-]+$", epoch), epoch
    assert throughput.peak_flops(torch.device("cpu")) is None
