"""Train a multi-head image classifier on the shards `preprocess.py` wrote.

Runs as SageMaker runs it: hyperparameters as ``--name value`` arguments; data from ``SM_CHANNEL_TRAIN``
and ``SM_CHANNEL_VALIDATION``; the model to ``SM_MODEL_DIR``; checkpoints to ``SM_CHECKPOINT_DIR``
(``/opt/ml/checkpoints``). Under torchrun (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``) it trains with
DistributedDataParallel (NCCL on GPUs, gloo on CPUs); a plain process trains alone.

One line per epoch, ``epoch=3 train_loss=0.41 val_loss=0.52 ... val_weighted_recall=0.83``, is what
SageMaker's metric regexes and the tuner read. Its sibling modules: `shards` (reading the data),
`checkpoints` (saving and resuming), `metrics`, `models` (the architectures).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checkpoints  # noqa: E402
from checkpoints import Progress, Trainables  # noqa: E402
from metrics import macro_recall  # noqa: E402
from models import ARCHITECTURES, build_model  # noqa: E402
from shards import DeviceBatches, ShardDataset, ShardSampler, has_split, keep_batch, split_bytes  # noqa: E402
from throughput import CompiledOrEager, flops_per_sample, peak_flops  # noqa: E402
from tracking import Tracker  # noqa: E402

SERVING_FILES = ("inference.py", "models.py")  # what the model archive's code/ holds for the endpoint
# arguments that are places, not hyperparameters: left out of the MLflow run's params
PLACES = ("model_dir", "output_data_dir", "train", "validation", "checkpoint_dir", "pretrained_weights")


# --------------------------------------------------------------------------- runtime


@dataclass
class Runtime:
    device: torch.device
    rank: int
    local_rank: int
    world_size: int
    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_runtime(args: argparse.Namespace) -> Runtime:
    """Process group from torchrun's variables (one process when they are absent), device and AMP."""
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    cuda = torch.cuda.is_available() and args.device != "cpu"
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    amp_dtype = None
    if cuda and args.amp != "off":
        want = args.amp if args.amp != "auto" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
        amp_dtype = torch.bfloat16 if want == "bf16" else torch.float16
    elif args.amp in ("bf16", "fp16") and rank == 0:
        print(f"train: --amp {args.amp} ignored: mixed precision runs on CUDA only", flush=True)
    channels_last = args.channels_last in ("auto", "on")  # oneDNN on CPUs prefers it too (+18% measured)
    return Runtime(device, rank, local_rank, world_size, amp_dtype, channels_last)


def all_reduce_sum(t: torch.Tensor, rt: Runtime) -> torch.Tensor:
    if rt.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_buffers(model: nn.Module, rt: Runtime) -> None:
    """Give every rank rank 0's batch-norm statistics.

    DDP broadcasts buffers at the start of each forward pass, so after the last batch each rank holds
    statistics from its own shard; evaluation and the saved model must all see the same ones.
    """
    if rt.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def emit(line: str) -> None:
    """One line in one write: ranks share the job's output, and print() writes text and newline apart."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def log(rt: Runtime, message: str) -> None:
    if rt.is_main:
        emit(message)


# --------------------------------------------------------------------------- augmentation


def random_affine(
    x: torch.Tensor, gen: torch.Generator, degrees: float, translate: float, scale: float
) -> torch.Tensor:
    """Batched random rotation, scale and translation (zeros fill the border)."""
    n = x.shape[0]
    dev = x.device
    angle = (torch.rand(n, generator=gen, device=dev) * 2 - 1) * math.radians(degrees)
    s = 1 + (torch.rand(n, generator=gen, device=dev) * 2 - 1) * scale
    t = (torch.rand(n, 2, generator=gen, device=dev) * 2 - 1) * translate * 2
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class HostDraws(threading.local):
    """Set while a step reads a value drawn on the host (`host_draw`): every other read of a tensor's value
    during a step would wait for the device (tests/test_throughput.py checks that there is none)."""

    active = False


HOST_DRAWS = HostDraws()


def host_draw(draw: Callable[[], Any]) -> Any:
    """A scalar drawn from the host generator, read on the host."""
    HOST_DRAWS.active = True
    try:
        return draw()
    finally:
        HOST_DRAWS.active = False


def _beta(alpha: float, host: torch.Generator) -> float:
    """A Beta(α, α) draw on the host, from ``host`` (two Gamma draws): no device round trip, reproducible."""
    a, b = host_draw(lambda: torch._standard_gamma(torch.full((2,), float(alpha)), generator=host).tolist())
    return a / (a + b) if a + b > 0 else 0.5


def cutmix(x: torch.Tensor, gen: torch.Generator, alpha: float,
           host: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:  # fmt: skip
    """Paste a box from a shuffled copy of the batch; λ is corrected to the box actually pasted. The box is
    drawn on the host (``host``), the permutation on the device (``gen``): the step never waits for the device."""
    n, _, h, w = x.shape
    lam = _beta(alpha, host) if alpha > 0 else 0.5
    perm = torch.randperm(n, generator=gen, device=x.device)
    cut = math.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = host_draw(lambda: torch.randint(1 << 30, (2,), generator=host).tolist())
    cy, cx = cy % h, cx % w
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    return x, perm, 1 - (y1 - y0) * (x1 - x0) / (h * w)


def mixup(x: torch.Tensor, gen: torch.Generator, alpha: float,
          host: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:  # fmt: skip
    lam = _beta(alpha, host)
    perm = torch.randperm(x.shape[0], generator=gen, device=x.device)
    return lam * x + (1 - lam) * x[perm], perm, lam


# --------------------------------------------------------------------------- train and evaluate


@dataclass
class Heads:
    """What is learned: the heads, their class counts and loss weights, and the input normalisation."""

    names: list[str]
    classes: list[int]
    weights: torch.Tensor  # on the device, summing to 1
    mean: torch.Tensor  # (1, C, 1, 1) on the device
    std: torch.Tensor


def weighted_loss(
    logits: dict[str, torch.Tensor], targets: torch.Tensor, heads: list[str], weights: torch.Tensor
) -> torch.Tensor:
    """Σ_h w_h · CE(logits_h, targets_h), each head's loss on its own logits, weights summing to 1."""
    losses = torch.stack([F.cross_entropy(logits[h].float(), targets[:, i]) for i, h in enumerate(heads)])
    return (losses * weights).sum()


def prepare(images: torch.Tensor, rt: Runtime, heads: Heads) -> torch.Tensor:
    x = images.to(rt.device, non_blocking=True).float().div_(255)
    x = (x - heads.mean) / heads.std
    if rt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def autocast(rt: Runtime) -> contextlib.AbstractContextManager:
    if rt.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=rt.amp_dtype)


def augment(x: torch.Tensor, args: argparse.Namespace, gen: torch.Generator,
            host: torch.Generator) -> tuple[torch.Tensor, Any, float]:  # fmt: skip
    """The batch's random affine, then CutMix or mixup as drawn: (images, the partner permutation, λ). Tensors'
    randomness is drawn on the device (``gen``), the step's scalars (which mix, λ, the box) on the host
    (``host``): nothing here reads a value back from the device, so the step never waits for it."""
    if args.augment:
        x = random_affine(x, gen, args.aug_degrees, args.aug_translate, args.aug_scale)
    roll = host_draw(lambda: float(torch.rand(1, generator=host)))
    if roll < args.cutmix_prob:
        return cutmix(x, gen, args.cutmix_alpha, host)
    if roll < args.cutmix_prob + args.mixup_prob:
        return mixup(x, gen, args.mixup_alpha, host)
    return x, None, 1.0


def train_one_epoch(
    parts: Trainables, loader: Any, heads: Heads, rt: Runtime, args: argparse.Namespace,
    gens: tuple[torch.Generator, torch.Generator],
) -> tuple[float, int]:
    """One epoch; no step reads anything back from the device (the loss is summed on it, the sample count on the
    host, the step's random scalars drawn on the host): the one synchronisation is the epoch's reduction."""
    parts.module.train()
    gen, host = gens
    loss_sum = torch.zeros((), device=rt.device)
    count = 0
    for images, targets in loader:
        x = prepare(images, rt, heads)
        y = targets.to(rt.device, non_blocking=True)
        x, perm, lam = augment(x, args, gen, host)
        with autocast(rt):
            logits = parts.module(x)
            loss = weighted_loss(logits, y, heads.names, heads.weights)
            if perm is not None:
                loss = lam * loss + (1 - lam) * weighted_loss(logits, y[perm], heads.names, heads.weights)
        parts.optimizer.zero_grad(set_to_none=True)
        parts.scaler.scale(loss).backward()
        if args.grad_clip > 0:
            parts.scaler.unscale_(parts.optimizer)
            nn.utils.clip_grad_norm_(parts.model.parameters(), args.grad_clip)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        if parts.scheduler is not None:
            parts.scheduler.step()
        loss_sum += loss.detach().float() * len(y)
        count += len(y)
    total = torch.stack([loss_sum, torch.tensor(float(count), device=rt.device)])
    all_reduce_sum(total, rt)
    return float(total[0] / total[1].clamp(min=1)), int(total[1])


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, rt: Runtime, heads: Heads) -> dict[str, float]:
    """Loss, accuracy and macro recall per head, and their head-weighted recall, over all ranks' shares."""
    model.eval()
    confusion = [torch.zeros(k, k, dtype=torch.int64, device=rt.device) for k in heads.classes]
    total = torch.zeros(2, device=rt.device, dtype=torch.float64)
    for images, targets in loader:
        x = prepare(images, rt, heads)
        y = targets.to(rt.device)
        with autocast(rt):
            logits = model(x)
        loss = float(weighted_loss(logits, y, heads.names, heads.weights))
        total += torch.tensor([loss * len(y), len(y)], device=rt.device, dtype=torch.float64)
        for i, h in enumerate(heads.names):
            pred = logits[h].argmax(dim=1)
            k = heads.classes[i]
            confusion[i] += torch.bincount(y[:, i] * k + pred, minlength=k * k).view(k, k)
    all_reduce_sum(total, rt)
    for c in confusion:
        all_reduce_sum(c, rt)
    metrics = {"val_loss": float(total[0] / total[1].clamp(min=1))}
    recalls = []
    for h, c in zip(heads.names, confusion, strict=True):
        metrics[f"val_acc_{h}"] = float(c.diag().sum() / c.sum().clamp(min=1))
        recall = macro_recall(c)
        metrics[f"val_recall_{h}"] = recall
        recalls.append(recall)
    metrics["val_weighted_recall"] = float(sum(w * r for w, r in zip(heads.weights.tolist(), recalls, strict=True)))
    return metrics


# --------------------------------------------------------------------------- setting up


def parse_head_weights(text: str, heads: list[str]) -> torch.Tensor:
    if not text:
        w = [1.0] * len(heads)
    elif "=" in text:
        given = {k.strip(): float(v) for k, v in (p.split("=") for p in text.split(","))}
        unknown = set(given) - set(heads)
        if unknown:
            raise SystemExit(f"train: error: --head-weights names unknown heads {sorted(unknown)}; heads are {heads}")
        w = [given.get(h, 1.0) for h in heads]
    else:
        w = [float(v) for v in text.split(",")]
        if len(w) != len(heads):
            raise SystemExit(f"train: error: --head-weights has {len(w)} values for {len(heads)} heads {heads}")
    t = torch.tensor(w, dtype=torch.float32)
    return t / t.sum()


def make_loaders(
    args: argparse.Namespace, rt: Runtime
) -> tuple[ShardDataset, ShardDataset | None, DataLoader, DataLoader | None]:
    train_set = ShardDataset(args.train)
    val_dir = Path(args.validation) if args.validation else None
    val_set = ShardDataset(val_dir) if val_dir and has_split(val_dir) else None
    sampler: DistributedSampler[int] = DistributedSampler(
        train_set, num_replicas=rt.world_size, rank=rt.rank, shuffle=True, seed=args.seed
    )
    common = {
        "collate_fn": keep_batch,
        "num_workers": args.num_workers,
        "pin_memory": rt.device.type == "cuda",
        "persistent_workers": args.num_workers > 0,
    }
    per_rank = math.ceil(len(train_set) / rt.world_size)
    drop_last = per_rank >= args.batch_size
    train_loader: Any
    if on_device(args, rt, train_set):
        train_loader = DeviceBatches(train_set, sampler, args.batch_size, drop_last, rt.device)
    else:
        train_loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, drop_last=drop_last, **common)
    val_loader = None
    if val_set is not None:
        val_loader = DataLoader(
            val_set,
            batch_size=args.batch_size * 2,
            sampler=ShardSampler(len(val_set), rt.rank, rt.world_size),
            **common,
        )
    return train_set, val_set, train_loader, val_loader


DEVICE_SHARE = 0.4  # --data-on-device auto: the split may take at most this share of the device's free memory


def on_device(args: argparse.Namespace, rt: Runtime, train_set: ShardDataset) -> bool:
    """Whether the training split goes to the device whole (`shards.DeviceBatches`), said in the log: ``on``
    wherever it fits (a CPU included), ``auto`` on a GPU when it takes at most `DEVICE_SHARE` of the free memory,
    ``off`` never. A split that does not fit falls back to the loader workers."""
    size = split_bytes(train_set)
    if args.data_on_device == "off":
        return False
    if rt.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(rt.device)
        fits = size <= DEVICE_SHARE * free
        if not fits:
            log(rt, f"train: data through loader workers: the split's {size / 2**20:.0f} MB exceed "
                    f"{DEVICE_SHARE:.0%} of the device's {free / 2**20:.0f} MB free")  # fmt: skip
            return False
    elif args.data_on_device == "auto":
        log(rt, "train: data through loader workers (--data-on-device auto keeps it on a GPU only)")
        return False
    log(rt, f"train: data on the device: {len(train_set)} images, {size / 2**20:.1f} MB uint8, batched there")
    return True


def build_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """SGD or AdamW; on a GPU their fused kernels (one launch for every parameter, the step count kept on the
    device: no host round trip per step), elsewhere the default (foreach) implementation."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = True if params and params[0].is_cuda else None
    if args.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay, nesterov=True, fused=fused
        )
    return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay, fused=fused)


def build_scheduler(
    optimizer: torch.optim.Optimizer, args: argparse.Namespace, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    total = max(args.epochs * steps_per_epoch, 1)
    if args.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if args.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=total)
    return None


def model_config(args: argparse.Namespace, train_set: ShardDataset, weights: torch.Tensor) -> dict:
    m = train_set.manifest
    return {
        "architecture": args.model,
        "heads": m["heads"],
        "head_weights": dict(zip(train_set.heads, [round(w, 6) for w in weights.tolist()], strict=True)),
        "input": {
            "channels": m["shape"][0],
            "height": m["shape"][1],
            "width": m["shape"][2],
            "normalization": m["normalization"],
            "invert": m.get("options", {}).get("invert", False),
            "pixel_range": [0, 255],
        },
        "dropout": args.dropout,
        "cnn_width": args.cnn_width,
        "feature_extract": args.feature_extract,
        "top_k": args.top_k,
    }


def loader_workers(requested: int | str, rt: Runtime) -> int:
    """``--num-workers``, or for ``auto``: 0 on a CPU, where the ranks' threads already take every core;
    on GPUs each rank's share of the cores less one (its own process), at most 8."""
    if requested != "auto":
        return int(requested)
    if rt.device.type != "cuda":
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(0, min(8, cores // local_ranks - 1))


def describe_runtime(rt: Runtime, args: argparse.Namespace) -> str:
    """The first line of the job: what it runs on."""
    return (
        f"train: {rt.world_size} process(es) on {rt.device.type}"
        + (f", {torch.get_num_threads()} thread(s) each" if rt.device.type == "cpu" else "")
        + f", {args.num_workers} data-loader worker(s) per process"
        + (f", AMP {str(rt.amp_dtype).removeprefix('torch.')}" if rt.amp_dtype else "")
        + (", channels-last" if rt.channels_last else "")
    )


def learned(args: argparse.Namespace, train_set: ShardDataset, rt: Runtime) -> tuple[Heads, dict]:
    """The heads to learn (weights, classes, normalisation on the device) and the model's configuration."""
    weights = parse_head_weights(args.head_weights, train_set.heads)
    config = model_config(args, train_set, weights)
    norm = config["input"]["normalization"]
    heads = Heads(
        train_set.heads, [h["num_classes"] for h in train_set.manifest["heads"]], weights.to(rt.device),
        torch.tensor(norm["mean"], device=rt.device).view(1, -1, 1, 1),
        torch.tensor(norm["std"], device=rt.device).clamp(min=1e-6).view(1, -1, 1, 1),
    )  # fmt: skip
    return heads, config


def build_trainables(args: argparse.Namespace, config: dict, rt: Runtime, steps_per_epoch: int) -> Trainables:
    model = build_model(config, pretrained_weights=args.pretrained_weights).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, args)
    scheduler = build_scheduler(optimizer, args, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=rt.amp_dtype == torch.float16)
    return Trainables(model, optimizer, scheduler, scaler)


def resume(args: argparse.Namespace, parts: Trainables, config: dict, rt: Runtime) -> tuple[Progress, Path | None]:
    """Where training starts: after the last finished epoch of a checkpoint found, else at the beginning."""
    path = checkpoints.checkpoint_path(args.checkpoint_dir, lambda line: log(rt, line))
    if path and path.exists() and args.restart:
        log(rt, f"train: --restart: ignoring the checkpoint in {path} and starting from epoch 1")
        if rt.is_main:
            path.unlink(missing_ok=True)
    elif path and path.exists():
        progress = checkpoints.restore(path, parts, config, rt.device, args)
        log(rt, f"train: resumed from {path} after epoch {progress.epoch}")
        return progress, path
    return Progress(), path


def wrap(parts: Trainables, args: argparse.Namespace, rt: Runtime) -> None:
    """What the training step calls: the model, inside DDP under torchrun, compiled when asked on CUDA."""
    net: nn.Module = parts.model
    if rt.distributed:
        net = nn.parallel.DistributedDataParallel(parts.model, device_ids=[rt.local_rank] if rt.device.type == "cuda"
                                                  else None)  # fmt: skip
    if args.compile == "on" or (args.compile == "auto" and rt.device.type == "cuda"):
        # compiled at the first step; a compiler that fails there says so once and the step runs eager
        net = CompiledOrEager(net, lambda line: log(rt, line))
        log(rt, f"train: torch.compile ({args.compile}), eager if compiling fails")
    elif args.compile == "auto":
        log(rt, "train: eager (--compile auto compiles on a GPU only)")
    parts.net = net


def measure_flops(parts: Trainables, train_set: ShardDataset, heads: Heads, rt: Runtime,
                  args: argparse.Namespace) -> tuple[float | None, float | None]:  # fmt: skip
    """(FLOP per training sample, the device's peak FLOP/s), said once in the log; (None, None) when counting
    fails (the run goes on without the utilisation)."""
    images, targets = train_set.__getitems__(range(min(2, len(train_set))))
    x, y = prepare(images, rt, heads), targets.to(rt.device)
    try:
        flops = flops_per_sample(parts.model, x, lambda logits: weighted_loss(logits, y, heads.names, heads.weights))
    except Exception as exc:  # noqa: BLE001 - a counter that cannot follow the model costs only the figure
        log(rt, f"train: FLOP per sample not counted ({type(exc).__name__}: {exc})")
        return None, None
    peak = peak_flops(rt.device, args.peak_tflops)
    shown = f"{peak / 1e12:.1f} TFLOP/s peak" if peak else "peak unknown (--peak-tflops sets it): no utilisation"
    log(rt, f"train: {flops / 1e9:.3f} GFLOP per sample (forward and backward); {shown}")
    return flops, peak


@dataclass
class Session:
    """One job's settings: its arguments, where it runs, the model configuration, its checkpoint file."""

    args: argparse.Namespace
    rt: Runtime
    config: dict
    checkpoint: Path | None
    tracker: Tracker | None = None
    flops: float | None = None  # FLOP of one training sample, forward and backward
    peak: float | None = None  # the device's peak FLOP/s (None: unknown, no utilisation reported)


def one_epoch(session: Session, parts: Trainables, loaders: tuple[DataLoader, DataLoader | None],
              heads: Heads, epoch: int) -> dict[str, Any]:  # fmt: skip
    """Train an epoch, then validate: the epoch's metrics line."""
    args, rt = session.args, session.rt
    train_loader, val_loader = loaders
    t0 = time.time()
    train_loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
    gen = torch.Generator(device=rt.device)
    gen.manual_seed(args.seed * 100_003 + epoch * 1009 + rt.rank)
    host = torch.Generator()
    host.manual_seed(args.seed * 100_019 + epoch * 1013 + rt.rank)
    train_loss, seen = train_one_epoch(parts, train_loader, heads, rt, args, (gen, host))
    elapsed = time.time() - t0
    broadcast_buffers(parts.model, rt)
    metrics: dict[str, Any] = {"epoch": epoch + 1, "train_loss": train_loss}
    if val_loader is not None:
        metrics |= evaluate(parts.model, val_loader, rt, heads)
    rate = seen / max(elapsed, 1e-9)
    out = metrics | {"lr": parts.optimizer.param_groups[0]["lr"], "samples_per_sec": rate}
    if session.flops:  # achieved FLOP/s, and the model FLOP utilisation: per device, against its peak
        out["tflops"] = rate * session.flops / 1e12
        if session.peak:
            out["mfu"] = rate * session.flops / (session.peak * rt.world_size)
    return out


def fit(session: Session, parts: Trainables, progress: Progress, loaders: tuple[DataLoader, DataLoader | None],
        heads: Heads) -> dict[str, Any]:  # fmt: skip
    """Every remaining epoch, a checkpoint after each, early stopping; then the best model saved (rank 0)."""
    args, rt = session.args, session.rt
    metric_name = args.early_stopping_metric if loaders[1] is not None else "train_loss"
    sign = -1.0 if metric_name.endswith("loss") else 1.0  # losses improve downwards
    stopped_early = False
    for epoch in range(progress.epoch, args.epochs):
        if args.patience and progress.since_best >= args.patience:
            stopped_early = True
            break
        metrics = one_epoch(session, parts, loaders, heads, epoch)
        progress.history.append(metrics)
        if metric_name not in metrics:
            raise ValueError(f"--early-stopping-metric {metric_name} is not one of {sorted(metrics)}")
        current = metrics[metric_name]
        if progress.best is None or sign * current > sign * progress.best:
            progress.best, progress.best_epoch, progress.since_best = current, epoch + 1, 0
            progress.best_state = {k: v.detach().clone() for k, v in parts.model.state_dict().items()}
        else:
            progress.since_best += 1
        progress.epoch = epoch + 1
        if rt.is_main and session.checkpoint:
            checkpoints.save(session.checkpoint, parts, progress, session.config, rt.device.type == "cuda")
        # printed once the checkpoint is on disk: a job killed after this line resumes after this epoch
        log(rt, format_metrics(metrics))
        if session.tracker is not None:
            session.tracker.metrics(metrics, epoch + 1)
        if rt.distributed:
            dist.barrier()
    if stopped_early:
        log(rt, f"train: early stop: no {metric_name} improvement in {args.patience} epochs")
    return {"best_epoch": progress.best_epoch, f"best_{metric_name}": progress.best, "epochs": len(progress.history)}


def run(args: argparse.Namespace) -> dict:
    rt = setup_runtime(args)
    args.num_workers = loader_workers(args.num_workers, rt)
    log(rt, describe_runtime(rt, args))
    torch.manual_seed(args.seed)
    train_set, _, train_loader, val_loader = make_loaders(args, rt)
    heads, config = learned(args, train_set, rt)
    parts = build_trainables(args, config, rt, len(train_loader))
    progress, checkpoint = resume(args, parts, config, rt)
    wrap(parts, args, rt)
    tracker = Tracker(os.environ, emit, enabled=rt.is_main)  # MLflow only when MLFLOW_TRACKING_URI is set
    tracker.start({k: v for k, v in vars(args).items() if k not in PLACES})
    flops, peak = measure_flops(parts, train_set, heads, rt, args)
    try:
        summary = fit(Session(args, rt, config, checkpoint, tracker, flops, peak), parts, progress,
                      (train_loader, val_loader), heads)  # fmt: skip
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.metrics(summary, progress.epoch)
    tracker.finish()
    if rt.is_main:
        state = progress.best_state or parts.model.state_dict()
        save_model(Path(args.model_dir), state, config | {"best_epoch": progress.best_epoch})
        out = Path(args.output_data_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps({"history": progress.history, "summary": summary}, indent=2))
        log(rt, format_metrics(summary))
    if rt.distributed:
        # every rank reports its weights' digest: DDP keeps them identical, and this shows it
        emit(f"rank={rt.rank} weights_sha256={state_digest(parts.model.state_dict())}")
        dist.barrier()
        dist.destroy_process_group()
    return summary


# The lines this script prints that carry metrics, in their shape (``<head>``: each head's name): `validate`
# warns when a spec's metric regex matches more than one of them (``val_weighted_recall=`` would also read
# the closing ``best_val_weighted_recall=`` line as one more epoch). tests/test_train.py checks them.
METRIC_LINES = (
    # (mfu only where the device's peak is known: a GPU of throughput.PEAK_FLOPS, or --peak-tflops)
    "epoch=1 train_loss=0.5 val_loss=0.5 val_acc_<head>=0.5 val_recall_<head>=0.5 val_weighted_recall=0.5 "
    "lr=0.001 samples_per_sec=100 tflops=0.5 mfu=0.3",
    "best_epoch=1 best_val_weighted_recall=0.5 epochs=1",
    "rank=0 weights_sha256=0123abcd",
)


def format_metrics(metrics: dict) -> str:
    """``name=value`` pairs, the form the metric regexes of the pipeline spec match."""
    return " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


def state_digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_model(model_dir: Path, state: dict[str, torch.Tensor], config: dict) -> None:
    """Weights, their configuration and the serving code: everything the inference container needs."""
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.cpu() for k, v in state.items()}, model_dir / "model.pth")
    (model_dir / "model_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    code = model_dir / "code"
    code.mkdir(exist_ok=True)
    here = Path(__file__).resolve().parent
    for name in SERVING_FILES:
        shutil.copy2(here / name, code / name)


def _switch(text: str) -> str:
    """auto, on or off (true/false, yes/no and 1/0 read as on/off)."""
    if str(text).lower() == "auto":
        return "auto"
    return "on" if _bool(text) else "off"


def _bool(text: str) -> bool:
    if str(text).lower() in ("1", "true", "yes", "on"):
        return True
    if str(text).lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got '{text}'")


def bounded(kind: type, low: float | None = None, high: float | None = None, low_open: bool = False,
            high_open: bool = False) -> Callable[[str], Any]:  # fmt: skip
    """An argparse type refusing values the training cannot use (``--epochs -1`` would train zero epochs
    and save random weights), with the rule in the message."""
    name = "an integer" if kind is int else "a number"
    rule = " and ".join(
        f"{op} {bound:g}"
        for op, bound in ((">" if low_open else ">=", low), ("<" if high_open else "<=", high))
        if bound is not None
    )

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {name}, got {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high or value != value:  # NaN
            raise argparse.ArgumentTypeError(f"must be {name} {rule}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    def add(name: str, **kw: object) -> None:
        # SageMaker passes hyperparameters under the key the user wrote: accept both spellings
        flags = [f"--{name}"] + ([f"--{name.replace('-', '_')}"] if "-" in name else [])
        p.add_argument(*flags, **kw)  # type: ignore[arg-type]

    env = os.environ.get
    add("train", default=env("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"))
    add("validation", default=env("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation"))
    add("model-dir", default=env("SM_MODEL_DIR", "/opt/ml/model"))
    add("output-data-dir", default=env("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    add("checkpoint-dir", default=env("SM_CHECKPOINT_DIR", "/opt/ml/checkpoints"))
    add(
        "pretrained-weights",
        default=env("SM_CHANNEL_PRETRAINED") or None,
        help="state dict file (or a channel directory holding one); never downloaded",
    )
    add("model", choices=ARCHITECTURES, default="cnn")
    add(
        "feature-extract", type=_bool, nargs="?", const=True, default=False, help="freeze the backbone, train the heads"
    )
    add("dropout", type=bounded(float, 0, 1, high_open=True), default=0.0)
    add(
        "cnn-width",
        type=bounded(int, 1),
        default=32,
        help="channels of the small CNN's first block (doubling per block)",
    )
    add("epochs", type=bounded(int, 1), default=10)
    add("batch-size", type=bounded(int, 1), default=64)
    add("optimizer", choices=["adamw", "sgd"], default="adamw")
    add("lr", type=bounded(float, 0, low_open=True), default=1e-3)
    add("momentum", type=bounded(float, 0, 1), default=0.9)
    add("weight-decay", type=bounded(float, 0), default=1e-4)
    add("scheduler", choices=["cosine", "onecycle", "none"], default="cosine")
    add("grad-clip", type=bounded(float, 0), default=1.0, help="max gradient norm (0: off)")
    add("head-weights", default="", help="loss weights per head, '2,1,1' or 'grapheme_root=2,...' (default equal)")
    add("augment", type=_bool, nargs="?", const=True, default=True)
    add("aug-degrees", type=bounded(float, 0), default=8.0)
    add("aug-translate", type=bounded(float, 0, 1), default=0.06)
    add("aug-scale", type=bounded(float, 0, 1), default=0.1)
    add("cutmix-prob", type=bounded(float, 0, 1), default=0.0)
    add("cutmix-alpha", type=bounded(float, 0, low_open=True), default=1.0)
    add("mixup-prob", type=bounded(float, 0, 1), default=0.0)
    add("mixup-alpha", type=bounded(float, 0, low_open=True), default=0.4)
    add("patience", type=bounded(int, 0), default=0, help="early stopping patience in epochs (0: off)")
    add("early-stopping-metric", default="val_weighted_recall")
    add("amp", choices=["auto", "bf16", "fp16", "off"], default="auto", help="CUDA only; auto = bf16 where supported")
    add("channels-last", choices=["auto", "on", "off"], default="auto", help="NHWC memory format (auto: on)")
    add("compile", type=_switch, nargs="?", const="on", default="auto",
        help="torch.compile the step, eager when compiling fails (auto: on a GPU; true/false are on/off)")
    add("data-on-device", choices=["auto", "on", "off"], default="auto",
        help="hold the uint8 training split on the device and batch it there (auto: on a GPU, when it fits)")
    add("peak-tflops", type=bounded(float, 0, low_open=True), default=None,
        help="the device's peak TFLOP/s for the FLOP utilisation (default: from the GPU's name)")
    add("device", choices=["auto", "cpu"], default="auto")
    add(
        "num-workers",
        type=lambda text: text if text == "auto" else bounded(int, 0)(text),
        default="auto",
        help="data-loader processes per rank; auto: none on a CPU (the training uses every core), else the "
        "rank's share of the cores less one, at most 8",
    )
    add("seed", type=int, default=42)
    add(
        "restart",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        help="ignore (and replace) a checkpoint found in the checkpoint directory instead of resuming from it",
    )
    add("top-k", type=bounded(int, 1), default=3, help="classes per head returned by the endpoint")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("cutmix_prob", "mixup_prob"):
        if not 0 <= getattr(args, name) <= 1:
            raise SystemExit(f"train: error: --{name.replace('_', '-')} must be within [0, 1]")
    try:
        run(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"train: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
