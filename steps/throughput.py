"""What keeps the device fed, and how well it is fed: the compiled step with an eager fallback, and the model's
FLOP utilisation (samples/s x FLOP per sample / the device's peak)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

# dense bf16/fp16 tensor-core peaks, FLOP/s (the vendors' data sheets; SXM parts), by a part of the device name
PEAK_FLOPS = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362.1e12, "L4": 121e12, "V100": 125e12,
              "T4": 65e12}  # fmt: skip


def peak_flops(device: torch.device, override_tflops: float | None = None) -> float | None:
    """The device's peak FLOP/s: ``--peak-tflops`` when given, else the table's entry for a CUDA device's name;
    None on a CPU or an unknown GPU (then only the achieved FLOP/s is reported)."""
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for part, peak in PEAK_FLOPS.items() if part in name), None)


def flops_per_sample(model: nn.Module, sample: torch.Tensor, loss: Callable[[Any], torch.Tensor]) -> float:
    """FLOP of one training sample (forward and backward), counted by torch's FlopCounterMode on a copy of the
    model (the real one's weights, gradients and running statistics are left alone)."""
    from torch.utils.flop_counter import FlopCounterMode

    twin = copy.deepcopy(model)
    twin.train()
    counter = FlopCounterMode(display=False)
    # the random draws it makes (dropout) come from a forked generator: training's own stream is left as it
    # was, so a resumed job still ends like an uninterrupted one
    devices = [sample.device] if sample.is_cuda else []
    with torch.random.fork_rng(devices=devices), counter:
        loss(twin(sample)).backward()
    return counter.get_total_flops() / max(len(sample), 1)


class CompiledOrEager(nn.Module):
    """``torch.compile`` of a module, which falls back to the module itself (eager) when compiling fails: the
    first call compiles, and a compiler error (from torch._dynamo or torch._inductor: a missing toolchain, an
    unsupported operation) is said once through ``say``, then every call runs eager. Errors of the model itself
    are raised as eager would raise them."""

    def __init__(self, module: nn.Module, say: Callable[[str], None], compiler: Callable[..., Any] = torch.compile):
        super().__init__()
        self.module = module
        self.say = say
        self.compiled: Any = compiler(module)
        self.failed = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - only the compiler's own errors fall back, below
                if not _compiler_error(exc):
                    raise
                self.failed = True
                self.say(f"train: torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                         "training goes on eager")  # fmt: skip
        return self.module(*args, **kwargs)


def _compiler_error(exc: BaseException) -> bool:
    """Whether an exception (or what caused it) comes from torch's compiler stack."""
    seen: BaseException | None = exc
    while seen is not None:
        module = type(seen).__module__
        if module.startswith(("torch._dynamo", "torch._inductor", "torch.fx")) or "CompilationError" in type(
            seen
        ).__name__:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
