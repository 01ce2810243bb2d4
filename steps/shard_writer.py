"""The output of `preprocess.py`: images resized (antialiased bilinear, as PIL and torch compute it) and
written into fixed-size uint8 ``.npy`` shards of each split, made at full size first so that worker processes
convert row groups in any order and write each image in place; with the pixel sums the normalisation is
computed from."""

from __future__ import annotations

import functools
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from parquet_source import InputError, Options, read_encoded_group, read_wide_group


@functools.lru_cache(maxsize=8)
def resample_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) weights of antialiased bilinear resampling, as PIL and torch compute them.

    A triangle filter whose support widens with the reduction factor; rows sum to 1.
    """
    scale = size_in / size_out
    support = max(scale, 1.0)
    weights = np.zeros((size_out, size_in), dtype=np.float64)
    for i in range(size_out):
        center = (i + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), size_in)
        x = (np.arange(lo, hi) - center + 0.5) / support
        w = np.clip(1 - np.abs(x), 0, None)
        weights[i, lo:hi] = w / w.sum()
    return weights.astype(np.float32)


def resize(batch: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """(N, C, h, w) uint8 -> (N, C, H, W) uint8 with antialiased bilinear resampling.

    Resampling is separable: two matrix products per image (BLAS), no per-pixel Python, no torch
    (importing torch alone costs ~500 MB of resident memory).
    """
    if size is None or tuple(batch.shape[-2:]) == size:
        return batch
    n, c, h, w = batch.shape
    rows, cols = resample_matrix(h, size[0]), resample_matrix(w, size[1])
    out = np.empty((n, c, *size), dtype=np.uint8)
    for lo in range(0, n, 256):  # bounded float32 temporaries
        x = batch[lo : lo + 256].astype(np.float32)
        y = np.matmul(rows, np.matmul(x, cols.T))
        np.clip(np.rint(y, out=y), 0, 255, out=y)
        out[lo : lo + 256] = y
    return out


def wide_to_images(pixels: np.ndarray, shape: tuple[int, int], size: tuple[int, int] | None) -> np.ndarray:
    """(h*w, n) pixel-major uint8 -> (n, 1, H, W) uint8, resampled on the way.

    With the images along the last axis each resampling pass is one matrix product over the whole
    chunk, and only the (smaller) output is transposed back to image-major.
    """
    h, w = shape
    n = pixels.shape[1]
    if size is None or size == shape:
        return np.ascontiguousarray(pixels.T).reshape(n, 1, h, w)
    rows, cols = resample_matrix(h, size[0]), resample_matrix(w, size[1])
    x = pixels.astype(np.float32).reshape(h, w * n)
    y = (rows @ x).reshape(size[0], w, n)  # along the height, all images at once
    z = np.matmul(cols, y)  # along the width: (H, W, n)
    np.clip(np.rint(z, out=z), 0, 255, out=z)
    return np.ascontiguousarray(z.transpose(2, 0, 1)).astype(np.uint8)[:, None]


@dataclass(frozen=True)
class SplitLayout:
    """Where one split's images go: fixed-size ``.npy`` shards, made at full size before any image is
    converted, so that workers write their rows in place, in any order, each at its known position."""

    directory: str
    total: int
    shape: tuple[int, int, int]
    shard_size: int

    def names(self) -> list[str]:
        return [f"images_{j:05d}.npy" for j in range(-(-self.total // self.shard_size))]

    def create(self) -> None:
        for j, name in enumerate(self.names()):
            n = min(self.shard_size, self.total - j * self.shard_size)
            np.lib.format.open_memmap(Path(self.directory) / name, "w+", np.uint8, (n, *self.shape))

    def write(self, position: int, images: np.ndarray) -> None:
        """``images`` at rows ``position..`` of the split, across shard boundaries."""
        while len(images):
            j, row = divmod(position, self.shard_size)
            shard = _mapped(str(Path(self.directory) / f"images_{j:05d}.npy"))
            take = min(len(images), len(shard) - row)
            shard[row : row + take] = images[:take]
            images, position = images[take:], position + take


_MAPPED: dict[str, np.ndarray] = {}  # the shards this process has open during one task


def _mapped(path: str) -> np.ndarray:
    if path not in _MAPPED:
        _MAPPED[path] = np.load(path, mmap_mode="r+")
    return _MAPPED[path]


@dataclass(frozen=True)
class Plan:
    """What every worker needs besides its row group."""

    layout: str
    opts: Options
    shape: tuple[int, int, int]  # (C, H, W) of the output images
    image_column: str | None
    splits: dict[int, SplitLayout]  # by split index, non-empty splits only


@dataclass(frozen=True)
class Task:
    """One row group: its rows' splits and where each split's first image of it goes."""

    path: str
    group: int
    first_row: int  # the group's first row in its file (for messages)
    rows: int
    assignment: np.ndarray  # (rows,) split index per row
    positions: tuple[int, ...]  # per split index: the split's row this group's first image of it takes


def convert(plan: Plan, task: Task) -> dict[str, Any]:
    """Read, convert and write one row group; its per-split pixel sums come back for the statistics."""
    opts, (c, h, w) = plan.opts, plan.shape
    sums = {i: np.zeros((2, c), dtype=np.float64) for i in plan.splits}
    positions = list(task.positions)

    def emit(batch: np.ndarray, assignment: np.ndarray) -> None:
        if opts.invert:
            batch = 255 - batch
        for i, layout in plan.splits.items():
            mine = batch[assignment == i]
            if len(mine):
                flat = mine.reshape(len(mine), c, -1)
                sums[i][0] += flat.sum(axis=2, dtype=np.uint64).sum(axis=0) / flat.shape[2]
                squares = np.square(flat, dtype=np.uint32).sum(axis=2, dtype=np.uint64)
                sums[i][1] += squares.sum(axis=0) / flat.shape[2]
                layout.write(positions[i], mine)
                positions[i] += len(mine)

    path = Path(task.path)
    if plan.layout == "wide":
        pixels = read_wide_group(path, task.group, opts, task.first_row)
        for lo in range(0, pixels.shape[1], opts.rows_per_chunk):
            chunk = wide_to_images(pixels[:, lo : lo + opts.rows_per_chunk], opts.wide_shape, opts.size)
            if c == 3:
                chunk = np.repeat(chunk, 3, axis=1)
            emit(chunk, task.assignment[lo : lo + len(chunk)])
    else:
        assert plan.image_column is not None
        images = read_encoded_group(path, task.group, plan.image_column, c, task.first_row)
        for k, img in enumerate(images):
            img = resize(img[None], opts.size)[0] if opts.size else img
            if img.shape != (c, h, w):
                raise InputError(
                    f"{path}: row {task.first_row + k}: image of shape {img.shape}, earlier ones {(c, h, w)}; "
                    "pass --size H W to resize all images to one size"
                )
            images[k] = img
        if images:
            emit(np.stack(images), task.assignment)
    import resource

    # the written pages stay in the page cache, not in this process: a worker's memory does not grow with
    # the output it has written
    for shard in _MAPPED.values():
        shard.flush()  # type: ignore[attr-defined]
    _MAPPED.clear()
    pa.default_memory_pool().release_unused()
    return {"rows": task.rows, "sums": sums, "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _limit_threads(threads: int) -> None:
    """In a worker: at most ``threads`` threads for Arrow (BLAS read its limit from the environment when
    the worker imported numpy)."""
    pa.set_cpu_count(threads)


def default_workers() -> int:
    """The cores this process may use (a container's CPU set, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def convert_all(plan: Plan, tasks: list[Task], workers: int) -> tuple[dict[int, np.ndarray], int]:
    """Every row group, by ``workers`` processes (in this one when 1); prints progress as groups finish.
    Returns the per-split pixel sums and the largest peak RSS (KB) of any process that converted."""
    total, done, t0 = sum(t.rows for t in tasks), 0, time.time()
    sums = {i: np.zeros((2, plan.shape[0]), dtype=np.float64) for i in plan.splits}
    peak = 0

    def finished(result: dict[str, Any]) -> None:
        nonlocal done, peak
        done += result["rows"]
        peak = max(peak, result["peak_rss_kb"])
        for i, s in result["sums"].items():
            sums[i] += s
        print(f"preprocess: {done}/{total} rows ({done / max(time.time() - t0, 1e-9):.0f} rows/s)", flush=True)

    if workers <= 1:
        for task in tasks:
            finished(convert(plan, task))
        return sums, peak
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    # each worker gets its share of the cores for its own threads (BLAS in the resampling, Arrow's decoding):
    # workers x default threads oversubscribe the cores, and BLAS threads spinning for a core cost 3-4x
    threads = max(1, default_workers() // workers)
    # spawned, not forked: a fork of a process whose Arrow threads are running can deadlock
    context = multiprocessing.get_context("spawn")
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, str(threads)))  # inherited by the workers as they spawn
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_limit_threads, initargs=(threads,)) as pool:
            pending = {pool.submit(convert, plan, task) for task in tasks}
            while pending:
                done_now, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done_now:
                    if future.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise future.exception()  # type: ignore[misc]
                    finished(future.result())
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return sums, peak


def statistics(sums: np.ndarray, n: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the pixels, in [0, 1], from the sums of image means and mean squares."""
    mean = sums[0] / max(n, 1)
    std = np.sqrt(np.maximum(sums[1] / max(n, 1) - mean**2, 0.0))
    return (mean / 255).round(6).tolist(), (std / 255).round(6).tolist()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
