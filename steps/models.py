"""Multi-head image classifiers: a small CNN baseline and torchvision backbones.

Shared by `train.py`, `evaluate.py` and `inference.py`; copied into the model artifact's ``code/`` so
the artifact serves on its own. Nothing here downloads weights: pretrained weights come from a file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

BACKBONES = ("resnet18", "resnet34", "resnet50", "squeezenet1_1", "mobilenet_v3_small", "efficientnet_b0")
ARCHITECTURES = ("cnn", *BACKBONES)


class SmallCNN(nn.Module):
    """Four conv blocks and global average pooling: a quick baseline that trains on a CPU."""

    def __init__(self, in_channels: int, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(4):
            out = width * 2**i
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.Conv2d(out, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2) if i < 3 else nn.AdaptiveAvgPool2d(1),
            ]
            channels = out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.out_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _strip_classifier(model: nn.Module, arch: str) -> int:
    """Replace the ImageNet classifier by an identity; return the feature width it consumed."""
    if arch.startswith("resnet"):
        fc = model.get_submodule("fc")
        assert isinstance(fc, nn.Linear)
        model.fc = nn.Identity()
        return fc.in_features
    if arch == "squeezenet1_1":
        # the classifier is a 1x1 conv to 1000 maps; keep pooling, drop the conv
        model.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return 512
    # mobilenet_v3_small, efficientnet_b0: Sequential(..., Linear(width, 1000))
    classifier = model.get_submodule("classifier")
    assert isinstance(classifier, nn.Sequential) and isinstance(classifier[-1], nn.Linear)
    width = classifier[-1].in_features
    classifier[-1] = nn.Identity()
    return width


def _adapt_input_channels(model: nn.Module, in_channels: int) -> None:
    """Swap the first 3-channel convolution for one taking ``in_channels``.

    Pretrained RGB filters are summed (1 channel) or averaged and repeated (other counts), so a grey
    image replicated to RGB and the same image on one channel give the same response.
    """
    if in_channels == 3:
        return
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            new = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,  # type: ignore[arg-type]
                module.stride,  # type: ignore[arg-type]
                module.padding,  # type: ignore[arg-type]
                module.dilation,  # type: ignore[arg-type]
                module.groups,
                module.bias is not None,
            )
            with torch.no_grad():
                mean = module.weight.mean(dim=1, keepdim=True)
                new.weight.copy_(mean.repeat(1, in_channels, 1, 1) * (3 / in_channels))
                if module.bias is not None:
                    new.bias.copy_(module.bias)  # type: ignore[union-attr]
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, new)
            return
    raise ValueError("no 3-channel input convolution found to adapt")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a file, or from the single .pt/.pth file in a directory (a SageMaker channel)."""
    p = Path(path)
    if p.is_dir():
        found = sorted(q for q in p.iterdir() if q.suffix in (".pt", ".pth", ".bin"))
        if len(found) != 1:
            raise FileNotFoundError(f"expected exactly one .pt/.pth file in {p}, found {[q.name for q in found]}")
        p = found[0]
    state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{p} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def build_backbone(
    arch: str, in_channels: int, pretrained_weights: str | Path | None = None, cnn_width: int = 32
) -> tuple[nn.Module, int]:
    if arch == "cnn":
        cnn = SmallCNN(in_channels, cnn_width)
        if pretrained_weights:
            cnn.load_state_dict(load_state_dict_file(pretrained_weights))
        return cnn, cnn.out_features
    if arch not in BACKBONES:
        raise ValueError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}")
    factory: Callable[..., nn.Module] = getattr(torchvision.models, arch)
    model = factory(weights=None)
    if pretrained_weights:
        # torchvision's own layout (ImageNet classifier included): load before any surgery
        state = load_state_dict_file(pretrained_weights)
        expected = model.state_dict()
        if not set(state) & set(expected):
            raise ValueError(f"{pretrained_weights}: no key matches a {arch} state dict (torchvision's layout)")
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise ValueError(f"{pretrained_weights}: does not fit {arch}: {exc}") from exc
        if result.missing_keys:
            print(
                f"models: {pretrained_weights}: {len(result.missing_keys)} {arch} keys not in the file, "
                f"left at random init (e.g. {result.missing_keys[:3]})",
                flush=True,
            )
    _adapt_input_channels(model, in_channels)
    width = _strip_classifier(model, arch)
    return model, width


class MultiHeadNet(nn.Module):
    """A backbone and one linear classifier per label head; ``forward`` returns logits per head."""

    def __init__(  # noqa: PLR0913 - the architecture's settings as model_config.json spells them
        self,
        arch: str,
        in_channels: int,
        heads: dict[str, int],
        dropout: float = 0.0,
        pretrained_weights: str | Path | None = None,
        feature_extract: bool = False,
        cnn_width: int = 32,
    ):
        super().__init__()
        self.backbone, width = build_backbone(arch, in_channels, pretrained_weights, cnn_width)
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(width, n) for name, n in heads.items()})
        self.feature_extract = feature_extract
        if feature_extract:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> MultiHeadNet:
        super().train(mode)
        if self.feature_extract:
            # a frozen backbone keeps its batch-norm statistics too
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.dropout(self.backbone(x))
        return {name: head(features) for name, head in self.heads.items()}


def build_model(config: dict, pretrained_weights: str | Path | None = None) -> MultiHeadNet:
    """The model described by a ``model_config.json`` dict."""
    return MultiHeadNet(
        config["architecture"],
        config["input"]["channels"],
        {h["name"]: h["num_classes"] for h in config["heads"]},
        dropout=config.get("dropout", 0.0),
        pretrained_weights=pretrained_weights,
        feature_extract=config.get("feature_extract", False),
        cnn_width=config.get("cnn_width", 32),
    )
