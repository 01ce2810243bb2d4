"""The inference program of a local AutoML model (``code/tabular_serve.py`` in its ``model.tar.gz``): the
handlers the SageMaker inference toolkit calls, answering as Autopilot's inference containers do.

* In: ``text/csv`` rows without a header (the training table's columns less the target, in order), or
  ``application/json`` ``{"instances": [{"features": [...]}, ...]}`` (Autopilot's JSON) or a list of objects by
  column name; ``application/jsonlines``: one such ``{"features": [...]}`` per line.
* Out, chosen by Accept: ``text/csv`` one line per row of the keys in ``SAGEMAKER_INFERENCE_OUTPUT`` (default
  ``predicted_label``), ``application/json`` ``{"predictions": [{key: value}, ...]}``, ``application/jsonlines``
  one object per line. Keys: ``predicted_label``, ``probability`` (of the predicted label), ``labels`` and
  ``probabilities`` (every class, in the order of ``labels``); a regression answers ``predicted_label`` only.
  A key outside ``SAGEMAKER_INFERENCE_SUPPORTED`` is refused.

It imports nothing of the project: AutoGluon, pandas and numpy.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

try:  # inside the inference toolkit, its error type carries the HTTP status
    from sagemaker_inference.errors import GenericInferenceToolkitError as _Base  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - outside the toolkit

    class _Base(Exception):  # type: ignore[no-redef]
        def __init__(self, status_code: int, message: str | None = None, phrase: str | None = None):
            super().__init__(status_code, message, phrase)
            self.status_code, self.message, self.phrase = status_code, message, phrase


_PHRASES = {400: "Bad Request", 406: "Not Acceptable", 413: "Payload Too Large", 415: "Unsupported Media Type"}
KEYS = ("predicted_label", "probability", "labels", "probabilities")
MAX_ROWS = 100_000  # rows of one request


class PayloadError(_Base):
    def __init__(self, status_code: int, message: str):
        super().__init__(status_code, message, _PHRASES.get(status_code, "Bad Request"))
        self.status_code, self.message = status_code, message

    def __str__(self) -> str:
        return f"{self.status_code} {_PHRASES.get(self.status_code, '')}: {self.message}"


class Model:
    def __init__(self, model_dir: str):
        from autogluon.tabular import TabularPredictor

        root = Path(model_dir)
        self.meta = json.loads((root / "code" / "automl.json").read_text())
        self.features: list[str] = self.meta["features"]
        self.predictor = TabularPredictor.load(str(root / "autogluon"), require_py_version_match=False)
        self.predictor.persist()  # loaded once, not per request

    @property
    def classification(self) -> bool:
        return self.meta["problem_type"] != "Regression"


# the loaded model's feature columns: the toolkit calls input_fn without the model
_FEATURES: list[str] = []


def model_fn(model_dir: str, context: Any = None) -> Model:
    model = Model(model_dir)
    _FEATURES[:] = model.features
    return model


def _rows_from_csv(text: str, width: int) -> list[list[str]]:
    rows = []
    try:
        for n, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1):
            if not row:
                continue
            if len(row) != width:
                raise PayloadError(400, f"CSV row {n} has {len(row)} values; the model takes {width} (the training "
                                   "table's columns less the target, in order, without a header)")  # fmt: skip
            rows.append(row)
    except csv.Error as exc:
        raise PayloadError(400, f"not CSV ({exc})") from None
    return rows


def _rows_from_json(body: str, features: list[str], lines: bool) -> list[Any]:
    try:
        items = [json.loads(line) for line in body.splitlines() if line.strip()] if lines else json.loads(body)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise PayloadError(400, f"invalid JSON ({exc})") from None
    if isinstance(items, dict):
        items = items.get("instances")
    if not isinstance(items, list):
        raise PayloadError(400, 'JSON needs {"instances": [{"features": [...]}, ...]} or a list of rows')
    rows: list[Any] = []
    for n, item in enumerate(items, 1):
        if isinstance(item, dict) and "features" in item:
            item = item["features"]
        if isinstance(item, dict):
            unknown = sorted(set(item) - set(features))
            if unknown:
                raise PayloadError(400, f"row {n}: unknown column(s) {', '.join(unknown[:5])}")
            rows.append([item.get(f) for f in features])
        elif isinstance(item, list) and len(item) == len(features):
            rows.append(item)
        else:
            raise PayloadError(400, f"row {n}: expected {len(features)} feature values or an object by column name")
    return rows


def input_fn(request_body: bytes | str, request_content_type: str | None, context: Any = None) -> Any:
    import pandas as pd

    model_features = _FEATURES
    body = request_body.decode("utf-8", "strict") if isinstance(request_body, bytes) else request_body
    kind = (request_content_type or "text/csv").split(";")[0].strip().lower()
    if kind == "text/csv":
        rows: list[Any] = _rows_from_csv(body, len(model_features))
    elif kind in ("application/json", "application/jsonlines"):
        rows = _rows_from_json(body, model_features, kind == "application/jsonlines")
    else:
        raise PayloadError(415, f"content type {request_content_type!r} is not supported; use text/csv, "
                           "application/json or application/jsonlines")  # fmt: skip
    if not rows:
        raise PayloadError(400, "the request holds no row")
    if len(rows) > MAX_ROWS:
        raise PayloadError(413, f"{len(rows)} rows in one request; at most {MAX_ROWS}")
    frame = pd.DataFrame(rows, columns=model_features)
    frame = frame.replace("", None)
    for column in frame.columns:  # CSV cells are text: numbers where the column reads as numbers
        converted = pd.to_numeric(frame[column], errors="coerce")
        if converted.notna().sum() == frame[column].notna().sum():
            frame[column] = converted
    return frame


def predict_fn(data: Any, model: Model, context: Any = None) -> list[dict[str, Any]]:
    predictor = model.predictor
    if not model.classification:
        return [{"predicted_label": float(v)} for v in predictor.predict(data)]
    probabilities = predictor.predict_proba(data)
    labels = [_plain(c) for c in probabilities.columns]
    out = []
    for row in probabilities.itertuples(index=False):
        values = [float(v) for v in row]
        best = max(range(len(values)), key=values.__getitem__)
        out.append({"predicted_label": labels[best], "probability": values[best], "labels": labels,
                    "probabilities": values})  # fmt: skip
    return out


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _keys() -> list[str]:
    supported = [k.strip() for k in os.environ.get("SAGEMAKER_INFERENCE_SUPPORTED", ",".join(KEYS)).split(",")]
    wanted = [k.strip() for k in os.environ.get("SAGEMAKER_INFERENCE_OUTPUT", "predicted_label").split(",")]
    refused = [k for k in wanted if k not in supported or k not in KEYS]
    if refused:
        raise PayloadError(400, f"SAGEMAKER_INFERENCE_OUTPUT asks for {', '.join(refused)}; supported: "
                           f"{', '.join(supported)}")  # fmt: skip
    return wanted


def output_fn(prediction: list[dict[str, Any]], accept: str | None, context: Any = None) -> Any:
    kind = (accept or os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or "text/csv").split(";")[0].strip()
    if kind in ("*/*", ""):
        kind = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/csv")
    keys = [k for k in _keys() if any(k in p for p in prediction)]
    rows = [{k: p[k] for k in keys if k in p} for p in prediction]
    if kind == "text/csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in rows:
            writer.writerow([json.dumps(v) if isinstance(v, list) else v for v in row.values()])
        return buffer.getvalue(), "text/csv"
    if kind == "application/json":
        return json.dumps({"predictions": rows}), "application/json"
    if kind == "application/jsonlines":
        return "".join(json.dumps(r) + "\n" for r in rows), "application/jsonlines"
    raise PayloadError(406, f"accept {accept!r} is not supported; use text/csv, application/json or "
                       "application/jsonlines")  # fmt: skip
