"""SageMaker PyTorch serving handlers for the multi-head classifier `train.py` saves.

Packed into ``model.tar.gz`` under ``code/`` with ``models.py``. Payloads:

* ``application/x-npy``: an array of pixel values in the preprocessed space (as in the training shards:
  0..255, already inverted where the data was), shaped (H, W), (C, H, W), (N, H, W) for one channel, or
  (N, C, H, W); other sizes are resized to the model's input.
* ``application/json``: the same as nested lists, bare or as ``{"instances": [...]}``.
* ``image/png``, ``image/jpeg``: one raw image; it gets the same preprocessing as the training data
  (channels, inversion, size).

The response (``application/json``) has one entry per image with, per head, the predicted class, its
probability and the top-k classes (softmax taken over each head's own logits).
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import build_model  # noqa: E402

try:  # inside the SageMaker inference container, its error type carries the HTTP status
    from sagemaker_inference.errors import GenericInferenceToolkitError as _Base  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - outside the container

    class _Base(Exception):  # type: ignore[no-redef]
        def __init__(self, status_code: int, message: str | None = None, phrase: str | None = None):
            super().__init__(status_code, message, phrase)
            self.status_code = status_code
            self.message = message
            self.phrase = phrase


_PHRASES = {400: "Bad Request", 406: "Not Acceptable", 413: "Payload Too Large", 415: "Unsupported Media Type"}
MAX_BATCH = int(os.environ.get("MAX_BATCH_SIZE", "256"))
# the pixels of one raw image at most: what SageMaker's 6 MB request would hold as uncompressed grey pixels. A
# PNG compresses far better (a 492 KB file can declare 13000 x 13000), and decoding one takes its full size.
MAX_PIXELS = 6 * 1024 * 1024


class PayloadError(_Base):
    """A request the model cannot serve; ``status_code`` is the HTTP status to answer with."""

    def __init__(self, status_code: int, message: str):
        super().__init__(status_code, message, _PHRASES.get(status_code, "Bad Request"))
        self.status_code = status_code
        self.message = message

    def __str__(self) -> str:
        return f"{self.status_code} {_PHRASES.get(self.status_code, '')}: {self.message}"


class Predictor:
    """The loaded model and everything needed to turn a payload into its input tensor."""

    def __init__(self, model: torch.nn.Module, config: dict, device: torch.device):
        self.model, self.config, self.device = model, config, device
        inp = config["input"]
        self.channels, self.size = inp["channels"], (inp["height"], inp["width"])
        self.mean = torch.tensor(inp["normalization"]["mean"], device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(inp["normalization"]["std"], device=device).clamp(min=1e-6).view(1, -1, 1, 1)
        self.heads = [h["name"] for h in config["heads"]]
        self.class_names = {h["name"]: h.get("class_names") for h in config["heads"]}
        self.top_k = int(config.get("top_k", 3))

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per head for (N, C, H, W) pixel values in 0..255 at the model's input size."""
        x = images.to(self.device).float().div(255)
        x = (x - self.mean) / self.std
        return {k: v.float() for k, v in self.model(x).items()}


def model_fn(model_dir: str, context: Any = None) -> Predictor:
    directory = Path(model_dir)
    config = json.loads((directory / "model_config.json").read_text())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(config)
    state = torch.load(directory / "model.pth", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.to(device).eval()
    return Predictor(model, config, device)


@dataclass(frozen=True)
class Payload:
    """A decoded request: pixel arrays in the preprocessed space, or one raw image."""

    array: np.ndarray
    raw_image: bool = False


def to_batch(payload: Payload, predictor: Predictor) -> torch.Tensor:
    """An (N, C, H, W) float tensor of 0..255 pixel values at the model's input size."""
    array, c = payload.array, predictor.channels
    if payload.raw_image:
        if array.ndim == 3 and c == 1:
            array = array.mean(axis=2)  # an RGB image for a grey model
        elif array.ndim == 2 and c == 3:
            array = np.repeat(array[..., None], 3, axis=2)
        array = array[None] if c == 1 else array.transpose(2, 0, 1)
        if predictor.config["input"].get("invert"):
            array = 255 - array
        array = array[None]
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise PayloadError(400, f"pixel values must be numbers, got dtype {array.dtype}")
    if array.ndim == 2:
        if c != 1:
            raise PayloadError(400, f"a 2-D image has one channel; this model takes {c}")
        array = array[None, None]
    elif array.ndim == 3:
        one_image = array.shape[0] == c
        array = array[None] if one_image else array[:, None]
    elif array.ndim != 4:
        raise PayloadError(400, f"expected (H, W), (C, H, W), (N, H, W) or (N, C, H, W), got shape {array.shape}")
    if array.shape[1] != c:
        raise PayloadError(400, f"images have {array.shape[1]} channel(s); this model takes {c}")
    if len(array) == 0 or 0 in array.shape[2:]:
        raise PayloadError(400, "the payload holds no image")
    if len(array) > MAX_BATCH:
        raise PayloadError(413, f"{len(array)} images in one request; at most {MAX_BATCH}")
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if not torch.isfinite(x).all():
        raise PayloadError(400, "pixel values must be finite")
    if tuple(x.shape[-2:]) != predictor.size:
        x = F.interpolate(x, size=predictor.size, mode="bilinear", antialias=True, align_corners=False)
    return x


def input_fn(request_body: bytes | str, request_content_type: str, context: Any = None) -> Payload:
    """Decode a request body; the model's channels, size and inversion are applied in `predict_fn`."""
    content_type = (request_content_type or "").split(";")[0].strip().lower()
    body = request_body.encode() if isinstance(request_body, str) else request_body
    if not body:
        raise PayloadError(400, "the request body is empty")
    if content_type == "application/x-npy":
        return Payload(_npy(body))
    if content_type == "application/json":
        return Payload(_json(body))
    if content_type in ("image/png", "image/jpeg"):
        return Payload(_image(body), raw_image=True)
    raise PayloadError(
        415,
        f"content type '{request_content_type}' is not supported; "
        "use application/x-npy, application/json, image/png or image/jpeg",
    )


def _npy(body: bytes) -> np.ndarray:
    """An .npy body, its header checked before anything is allocated: a header may declare any shape."""
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(stream, max_header_size=10_000)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise PayloadError(400, f"not a .npy payload ({exc})") from exc
    if dtype.hasobject:
        raise PayloadError(400, "the .npy payload holds Python objects (a pickle); send numbers")
    declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize
    if declared > len(body) - stream.tell():
        raise PayloadError(400, f"the .npy header declares {declared} bytes of data; the body holds "
                                f"{len(body) - stream.tell()}")  # fmt: skip
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise PayloadError(400, f"not a .npy payload ({exc})") from exc


def _json(body: bytes) -> np.ndarray:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PayloadError(400, f"invalid JSON ({exc})") from exc
    except RecursionError:
        raise PayloadError(400, "the JSON is nested too deeply") from None
    if isinstance(payload, dict):
        if "instances" not in payload:
            raise PayloadError(400, "a JSON object payload needs an 'instances' list")
        payload = payload["instances"]
    try:
        return np.asarray(payload, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise PayloadError(400, f"JSON pixels must be a rectangular nested list of numbers ({exc})") from exc
    except RecursionError:
        raise PayloadError(400, "the JSON is nested too deeply") from None


def _image(body: bytes) -> np.ndarray:
    """One PNG or JPEG, its size read from its header and refused above `MAX_PIXELS` before decoding."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(body)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise PayloadError(413, f"an image of {img.width} x {img.height} pixels; at most {MAX_PIXELS} "
                                        "pixels per image")  # fmt: skip
            converted = img.convert("L" if img.mode in ("L", "1", "I", "I;16", "F") else "RGB")
            return np.asarray(converted, dtype=np.float32)
    except Image.DecompressionBombError as exc:
        raise PayloadError(413, f"the image is too large to decode ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PayloadError(400, f"cannot decode the image ({exc})") from exc


def predict_fn(input_data: Payload, model: Predictor, context: Any = None) -> list[dict]:
    """Per image and head: the class, its probability, and the top-k classes by probability."""
    batch = to_batch(input_data, model)
    logits = model.logits(batch)
    results: list[dict] = [{} for _ in range(len(batch))]
    for head in model.heads:
        probs = torch.softmax(logits[head], dim=1)  # each head's own distribution
        k = min(model.top_k, probs.shape[1])
        top_p, top_i = probs.topk(k, dim=1)
        names = model.class_names.get(head)
        for n in range(len(results)):
            classes = top_i[n].tolist()
            entry = {
                "class": classes[0],
                "probability": float(top_p[n, 0]),
                "top_k": [
                    {"class": c, "probability": float(p)} for c, p in zip(classes, top_p[n].tolist(), strict=True)
                ],
            }
            if names:
                entry["label"] = names[classes[0]]
            results[n][head] = entry
    return results


def output_fn(prediction: list[dict], accept: str | None = "application/json", context: Any = None) -> tuple[str, str]:
    accept_type = (accept or "application/json").split(";")[0].strip().lower()
    if accept_type not in ("application/json", "*/*", ""):
        raise PayloadError(406, f"accept type '{accept}' is not supported; use application/json")
    return json.dumps({"predictions": prediction}), "application/json"
