"""Training checkpoints: where they go (one prefix per tuning trial), writing one atomically after each epoch,
and resuming from one, refusing a checkpoint of another model configuration or learning-rate schedule, or
one that cannot be read. Loads use ``weights_only=True``."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class Trainables:
    """What a training step changes: the model (and ``net``, what is called: it, or its DDP/compiled wrapper),
    the optimizer, the learning-rate schedule and the gradient scaler."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    net: nn.Module | None = None

    @property
    def module(self) -> nn.Module:
        return self.net if self.net is not None else self.model


@dataclass
class Progress:
    """Where training stands after an epoch: what a checkpoint keeps besides the trainables."""

    epoch: int = 0  # epochs finished
    best: float | None = None
    best_epoch: int = -1
    since_best: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def tuning_trial_name() -> str | None:
    """This job's name when a hyperparameter tuning job launched it, else None.

    SageMaker gives every training job of a tuning job the same checkpoint URI, and writes the tuning
    objective into the job's own hyperparameters.json (the toolkit keeps it from the script's arguments).
    """
    config = Path(os.environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config")) / "hyperparameters.json"
    try:
        trial = "_tuning_objective_metric" in json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    return os.environ.get("TRAINING_JOB_NAME") if trial else None


def checkpoint_path(directory: str, say: Callable[[str], None]) -> Path | None:
    """The checkpoint file under ``--checkpoint-dir`` (a tuning trial's own prefix under it), or None when
    the directory cannot be made (checkpoints off, said)."""
    path = Path(directory)
    trial = tuning_trial_name()
    if trial:
        # one prefix per trial: a trial must never resume from another configuration's checkpoint
        path = path / trial
        say(f"train: tuning trial {trial}: checkpoints in {path}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        say(f"train: checkpoints off: cannot create {path} ({exc}); set --checkpoint-dir")
        return None
    return path / CHECKPOINT_NAME


def check_schedule(saved: dict, fresh: dict, ckpt_path: Path, args: argparse.Namespace) -> None:
    """A checkpoint resumes the learning-rate schedule it was written with; one of another length (a run
    resumed with more --epochs, or another batch size or data size) would step past its end or jump."""
    for key in ("total_steps", "T_max"):  # OneCycleLR, CosineAnnealingLR
        if key in saved and saved.get(key) != fresh.get(key):
            raise SystemExit(
                f"train: error: the checkpoint {ckpt_path} belongs to a {args.scheduler} schedule of {saved[key]} "
                f"steps, and this run's is {fresh.get(key)} steps (--epochs, --batch-size or the data changed); "
                "run it with the settings it was written with, or pass --restart true to start over"
            )


def save(path: Path, parts: Trainables, progress: Progress, config: dict[str, Any], cuda: bool) -> None:
    """Everything a restarted job needs to end exactly as an uninterrupted one would, written atomically."""
    atomic_save(
        {
            "model": parts.model.state_dict(),
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict() if parts.scheduler is not None else None,
            "scaler": parts.scaler.state_dict(),
            "epoch": progress.epoch,
            "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if cuda else None},
            "best": progress.best,
            "best_epoch": progress.best_epoch,
            "since_best": progress.since_best,
            "best_state": progress.best_state,
            "history": json.dumps(progress.history),
            "config": json.dumps(config, sort_keys=True),
        },
        path,
    )


def restore(path: Path, parts: Trainables, config: dict[str, Any], device: torch.device,
            args: argparse.Namespace) -> Progress:  # fmt: skip
    """The trainables and progress a checkpoint holds; exits naming the checkpoint and ``--restart`` when it is
    unreadable or was written by another model configuration or schedule (the file is kept)."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        foreign = not isinstance(state, dict) or state.get("config") != json.dumps(config, sort_keys=True)
    except Exception as exc:  # truncated, corrupt, or not a checkpoint at all
        raise SystemExit(
            f"train: error: the checkpoint {path} is unreadable ({type(exc).__name__}: {str(exc)[:200]}); "
            "pass --restart true to start over without it"
        ) from None
    if foreign:
        raise SystemExit(
            f"train: error: the checkpoint {path} was written by a different model configuration; "
            "pass --restart true to start over without it"
        )
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    if parts.scheduler is not None and state["scheduler"] is not None:
        check_schedule(state["scheduler"], parts.scheduler.state_dict(), path, args)
        parts.scheduler.load_state_dict(state["scheduler"])
    parts.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"].cpu())
    if device.type == "cuda" and state["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(state["rng"]["cuda"].cpu())
    return Progress(state["epoch"], state["best"], state["best_epoch"], state["since_best"], state["best_state"],
                    json.loads(state["history"]))  # fmt: skip
