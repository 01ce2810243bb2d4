"""The split directories `preprocess.py` writes, read for training and evaluation: ``images_*.npy`` shards of
uint8 (N, C, H, W) read by memory map, one gather per batch, with their labels, image ids and manifest; a split
written by several processing instances (one part per ``<host>/``) reads as one."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


def split_parts(directory: Path) -> list[Path]:
    """The directories holding a split's files: itself, or one per processing instance, in host order."""
    if (directory / "manifest.json").exists():
        return [directory]
    parts = sorted((p.parent for p in directory.glob("*/manifest.json")), key=lambda p: _host_order(p.name))
    if not parts:
        raise FileNotFoundError(
            f"{directory / 'manifest.json'} not found (nor <host>/manifest.json): "
            f"is {directory} a preprocess output split?"
        )
    return parts


def has_split(directory: Path) -> bool:
    """Whether a directory holds a preprocess output split (one part or several)."""
    return (directory / "manifest.json").exists() or any(directory.glob("*/manifest.json"))


def _host_order(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("-")
    return (stem, int(number)) if number.isdigit() else (name, 0)


def merge_manifests(manifests: list[dict], split: str) -> dict:
    """One manifest for the parts of a split: the same image shape, the largest class count of each head,
    the union of string label names, and the pixel statistics of all images together."""
    first = manifests[0]
    if len(manifests) == 1:
        return first
    shapes = {tuple(m["shape"]) for m in manifests}
    if len(shapes) > 1:
        raise ValueError(f"the parts of split '{split}' hold images of different shapes {sorted(shapes)}")
    heads = []
    for head in first["heads"]:
        same = [next(h for h in m["heads"] if h["name"] == head["name"]) for m in manifests]
        names = [h["class_names"] for h in same]
        union = sorted(set().union(*names)) if all(names) else None
        count = len(union) if union else max(h["num_classes"] for h in same)
        heads.append({"name": head["name"], "num_classes": count, "class_names": union})
    merged = dict(first, heads=heads)
    # the normalization is the train split's: merge its per-part pixel sums
    sized = [(m["splits"].get("train", {}).get("size", 0), m.get("pixel_sums", {}).get("train")) for m in manifests]
    if all(sums is not None for size, sums in sized if size):
        n = sum(size for size, _ in sized)
        total = sum((np.asarray(sums) for size, sums in sized if size), np.zeros((2, first["shape"][0])))
        mean = total[0] / max(n, 1)
        std = np.sqrt(np.maximum(total[1] / max(n, 1) - mean**2, 0.0))
        merged["normalization"] = {"mean": (mean / 255).round(6).tolist(), "std": (std / 255).round(6).tolist()}
    merged["splits"] = {split: {"size": sum(m["splits"].get(split, {}).get("size", 0) for m in manifests)}}
    return merged


class ShardDataset(Dataset):
    """A split directory of ``images_*.npy`` shards read by memory map, one gather per batch.

    The directory holds one preprocess output (``manifest.json`` in it) or, when several processing
    instances wrote it, one part per instance (``<host>/manifest.json``): the parts are read in host order
    as one split, their label names and counts and their pixel statistics merged.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        parts = split_parts(self.directory)
        manifests = [json.loads((part / "manifest.json").read_text()) for part in parts]
        self.manifest = merge_manifests(manifests, self.directory.name)
        self.heads = [h["name"] for h in self.manifest["heads"]]
        self.shards: list[np.ndarray] = []
        self.ids: list[str] = []
        labels: list[np.ndarray] = []
        for part, manifest in zip(parts, manifests, strict=True):
            split = manifest["splits"].get(self.directory.name)
            names = split["shards"] if split else sorted(p.name for p in part.glob("images_*.npy"))
            shards = [np.load(part / name, mmap_mode="r") for name in names]
            n = sum(len(s) for s in shards)
            part_labels = np.stack([np.load(part / f"labels_{h}.npy") for h in self.heads], axis=1)
            if len(part_labels) != n:
                raise ValueError(f"{part}: {n} images but {len(part_labels)} labels")
            for j, head in enumerate(self.manifest["heads"]):  # a part's label names indexed into the merged ones
                own = next(h for h in manifest["heads"] if h["name"] == head["name"]).get("class_names")
                if own and own != head["class_names"]:
                    part_labels[:, j] = np.asarray([head["class_names"].index(c) for c in own])[part_labels[:, j]]
            ids_file = part / "image_ids.txt"
            ids = ids_file.read_text().splitlines() if ids_file.exists() else []
            self.ids += ids if len(ids) == n else [str(len(self.ids) + k) for k in range(n)]  # else positions
            self.shards += shards
            labels.append(part_labels)
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
        self.labels = np.concatenate(labels) if labels else np.zeros((0, len(self.heads)), dtype=np.int64)


    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.__getitems__([index])
        return images[0], labels[0]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.sort(np.asarray(indices, dtype=np.int64))
        shard_of = np.searchsorted(self.offsets, idx, side="right") - 1
        parts = []
        for s in np.unique(shard_of):
            parts.append(self.shards[s][idx[shard_of == s] - self.offsets[s]])
        images = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return torch.from_numpy(images), torch.from_numpy(self.labels[idx])


def keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The dataset already returns whole batches; the loader must not collate them again."""
    return batch


class ShardSampler(torch.utils.data.Sampler[int]):
    """Every rank's share of a split, in order and without padding, so evaluation counts each image once."""

    def __init__(self, n: int, rank: int, world_size: int):
        self.indices = range(rank, n, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class DeviceBatches:
    """A split's images and labels held on the device as one uint8 tensor each, batched by the very sampler the
    DataLoader path uses (the same samples in the same batches, each batch's indices sorted as
    `ShardDataset.__getitems__` sorts them): no loader workers, no host-to-device copy per step, one index copy
    per epoch. ``sampler.set_epoch`` reshuffles as before."""

    def __init__(self, dataset: ShardDataset, sampler: Any, batch_size: int, drop_last: bool, device: torch.device):
        images, labels = dataset.__getitems__(range(len(dataset)))
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.as_tensor(list(self.sampler), dtype=torch.long).to(self.images.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size].sort().values
            yield self.images.index_select(0, idx), self.labels.index_select(0, idx)


def split_bytes(dataset: ShardDataset) -> int:
    """The bytes a split's uint8 images take (what `DeviceBatches` puts on the device)."""
    return int(sum(int(np.prod(s.shape)) * s.dtype.itemsize for s in dataset.shards))
