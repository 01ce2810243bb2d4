"""One self-contained HTML file per execution: no network, no scripts, every image inlined.

Charts are SVG written directly (`pipelines.report.charts`), the graph too (`pipelines.report.graph`): they
render offline with no JavaScript in any browser, and writing them costs milliseconds, so every run writes its
report without a plotting library. Thumbnails are drawn with Pillow.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from pipelines.files import write_atomic
from pipelines.report import charts, graph
from pipelines.report.outcomes import outcome
from pipelines.report.summary import comparisons, failure_lines
from pipelines.report.summary import lines as summary_lines
from pipelines.report.view import Evaluation, RunView, seconds

MATRIX_LIMIT = 30  # heads with more classes get their most confused pairs instead of a grid
CONFUSED_PAIRS = 15
CSS = """
table.timeline{width:100%;border-collapse:collapse}table.timeline td{padding:1px 4px;font-size:12px}
td.bar-label{white-space:nowrap;width:1%}td.bar-track{position:relative;height:16px;background:#f5f5f5}
div.bar{position:absolute;top:2px;bottom:2px;border:1px solid #555;box-sizing:border-box}
td.bar-seconds{width:1%;text-align:right;color:#555}td.bar-axis{color:#555;font-size:11px}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222;
padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:15px}table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f5f5f5}
.status-Succeeded{color:#2e7d32}.status-Failed,.status-Stopped{color:#c62828}
pre{background:#f7f7f7;padding:10px;overflow-x:auto;font-size:12px}
img.figure{max-width:100%;height:auto}.graph{overflow-x:auto}.graph svg{height:auto}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}.thumb{margin:0;font-size:11px;text-align:center;width:120px}
.thumb img{image-rendering:pixelated;border:1px solid #ccc;max-width:110px}
.pass{color:#2e7d32;font-weight:bold}.fail{color:#c62828;font-weight:bold}
"""


_FIGURES: list[Path] = []  # where drawn figures are kept by what they show (set by `write_report`)


def _memo(material: bytes, draw: Callable[[], str]) -> str:
    """A figure drawn once per content: a rerun whose steps were cache hits shows the same graph, curves and
    matrices, and drawing them (matplotlib's import and rendering) is most of a report's cost."""
    if not _FIGURES:
        return draw()
    path = _FIGURES[0] / f"{hashlib.sha256(material).hexdigest()[:40]}.html"
    try:
        return path.read_text()
    except OSError:
        pass
    out = draw()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, out)
    except OSError:
        pass  # a read-only cache costs only the time
    return out


def _material(*parts: Any) -> bytes:
    return b"\0".join(
        p.tobytes() + str(p.shape).encode() if hasattr(p, "tobytes") and hasattr(p, "shape") else
        json.dumps(p, sort_keys=True, default=str).encode()
        for p in parts
    )  # fmt: skip


def _table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_text(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


# --------------------------------------------------------------------------- sections


def timeline(view: RunView) -> str:
    """Steps (and the jobs they ran, e.g. tuning trials) as bars over time; cache hits hatched, failed attempts
    red, retries marked."""
    rows: list[tuple[str, float, float, str, str]] = []  # label, start, end, color, hatch
    origin = view.started or min((s.started for s in view.steps.values() if s.started), default=0.0)
    for name, step in view.steps.items():
        if step.started is None:
            continue
        end = step.ended or step.started
        if step.cache_hit:
            rows.append((name, step.started, end, "#90caf9", "//"))
        elif step.attempts:
            for attempt in step.attempts:
                start, stop = seconds(attempt.get("started")), seconds(attempt.get("ended"))
                if start is None:
                    continue
                color = "#a5d6a7" if attempt.get("status") == "Succeeded" else "#ef9a9a"
                label = name if attempt.get("attempt", 1) == 1 else f"{name} (attempt {attempt['attempt']})"
                rows.append((label, start, stop or start, color, ""))
        else:
            color = {"Succeeded": "#a5d6a7", "Failed": "#ef9a9a", "Stopped": "#ef9a9a"}.get(step.status, "#e0e0e0")
            rows.append((name, step.started, end, color, ""))
        for child in view.children.get(name, []):
            start, stop = seconds(child.get("Started")), seconds(child.get("Ended"))
            if start is not None:
                color = {"Completed": "#ce93d8", "Stopped": "#ffcc80"}.get(str(child.get("Status")), "#ef9a9a")
                rows.append(("  " + str(child["Name"]), start, stop or start, color, ""))
    if not rows:
        return "<p>No step ran.</p>"
    # bars as HTML, not a drawing: a timeline differs in every run, and matplotlib's import alone costs more
    # than a fully cached run
    span = max(max(end for _, _, end, _, _ in rows) - origin, 1e-9)
    bars = []
    for label, start, end, color, hatch in rows:
        left, width = 100 * (start - origin) / span, max(100 * (end - start) / span, 0.4)
        fill = f"repeating-linear-gradient(45deg,{color} 0 4px,#ffffff 4px 6px)" if hatch else color
        bars.append(
            f'<tr><td class="bar-label">{html.escape(label)}</td><td class="bar-track"><div class="bar" '
            f'style="left:{left:.2f}%;width:{min(width, 100 - left):.2f}%;background:{fill}" '
            f'title="{html.escape(label)}: {start - origin:.1f}s to {end - origin:.1f}s"></div></td>'
            f'<td class="bar-seconds">{end - start:.1f}s</td></tr>'
        )
    legend = (
        "green: succeeded, red: failed attempt, hatched blue: cache hit, purple: a job a step ran (a tuning "
        "trial), orange: stopped early"
    )
    return (
        f'<table class="timeline" data-figure="timeline" aria-label="timeline of steps">{"".join(bars)}'
        f'<tr><td></td><td class="bar-axis">0s … {span:.1f}s since the execution started</td><td></td></tr>'
        f"</table><p><small>{legend}</small></p>"
    )


def curves(view: RunView) -> str:
    return _memo(_material("curves", view.curves), lambda: _curves(view))


def _curves(view: RunView) -> str:
    """Every metric the jobs' regexes captured, per epoch, one panel per metric and a line per job."""
    metrics = list(dict.fromkeys(m for c in view.curves.values() for m in c))
    if not metrics:
        return "<p>No training job printed a metric its regexes capture.</p>"
    panels = [(m, {job: values[m] for job, values in view.curves.items() if values.get(m)}) for m in metrics]
    return charts.lines("curves", "per-epoch metrics", panels)


def children(view: RunView, step: str) -> str:
    return _memo(_material("children", step, view.children[step]), lambda: _children(view, step))


def _children(view: RunView, step: str) -> str:
    """The jobs a step ran (a tuning job's training jobs): a table, and their metric against each parameter."""
    records = view.children[step]
    label = outcome(view.steps[step].type).child_label if step in view.steps else "job"
    metric = records[0].get("Metric", "objective") if records else "objective"
    tuned = list(dict.fromkeys(k for t in records for k in t.get("Parameters", {})))
    rows = [
        [t["Name"], t.get("Status"), t.get("Value"), *[t.get("Parameters", {}).get(k) for k in tuned],
         t.get("DurationSeconds")]
        for t in records
    ]  # fmt: skip
    out = _table([label, "status", metric, *tuned, "seconds"], rows, "children")
    done = [t for t in records if t.get("Value") is not None]
    if done and tuned:
        panels = [(name, [t["Parameters"].get(name) for t in done]) for name in tuned]
        out += charts.scatter(f"children-{step}", f"{metric} against each parameter", metric, panels,
                              [float(t["Value"]) for t in done]) + (
            f"<p><small>colour: the order the {html.escape(label)}s started (dark first)</small></p>"
        )  # fmt: skip
    return out


def confusion(head: str, matrix: np.ndarray) -> str:
    return _memo(_material("confusion", head, matrix), lambda: _confusion(head, matrix))


def _confusion(head: str, matrix: np.ndarray) -> str:
    import numpy as np

    k = len(matrix)
    if k <= MATRIX_LIMIT:
        return charts.heatmap(f"confusion-{head}", f"confusion matrix of {head}", head, matrix.tolist(), k <= 12)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None)[::-1][:CONFUSED_PAIRS]
    totals = matrix.sum(axis=1)
    rows = []
    for index in flat:
        i, j = divmod(int(index), k)
        if off[i, j] == 0:
            break
        rows.append([i, j, int(off[i, j]), f"{off[i, j] / max(totals[i], 1):.1%}"])
    name = html.escape(head)  # a head's name comes from the data: never markup
    return f'<div data-figure="confusion-{name}"><p>{name}: {k} classes; the most confused pairs:</p>' + (
        _table(["true", "predicted as", "images", "share of the true class"], rows, "confused-pairs") + "</div>"
    )


def thumbnails(worst: dict[str, np.ndarray]) -> str:
    import numpy as np

    parts = [part for key in sorted(worst) for part in (key, np.asarray(worst[key]))]
    return _memo(_material("thumbnails", *parts), lambda: _thumbnails(worst))


def _thumbnails(worst: dict[str, np.ndarray]) -> str:
    import numpy as np
    from PIL import Image

    heads = [str(h) for h in worst["heads"]]
    out = []
    for n, image in enumerate(worst["images"]):
        pixels = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
        picture = Image.fromarray(np.ascontiguousarray(pixels))
        scale = max(1, 96 // max(picture.size))
        picture = picture.resize((picture.size[0] * scale, picture.size[1] * scale), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        data = base64.b64encode(buffer.getvalue()).decode()
        labels = "<br>".join(
            f"{html.escape(h)}: {int(worst['true'][n][i])} → {int(worst['predicted'][n][i])} "
            f"({float(worst['confidence'][n][i]):.0%})"
            for i, h in enumerate(heads)
        )
        image_id = html.escape(str(worst["ids"][n]))
        picture_tag = f'<img alt="{image_id}" src="data:image/png;base64,{data}">'
        caption = f"<figcaption>{image_id}<br>{labels}</figcaption>"
        out.append(f'<figure class="thumb" data-image-id="{image_id}">{picture_tag}{caption}</figure>')
    return '<div class="thumbs">' + "".join(out) + "</div>"


def evaluation(view: RunView, step: str, evaluation: Evaluation) -> str:
    import numpy as np

    out = _table(["metric", "value"], [[k, v] for k, v in evaluation.metrics.items()], "metrics")
    for check in comparisons(view):
        if step in check["reads"]:  # a comparison of this evaluation's report
            verdict = "passed" if check["outcome"] else "not passed"
            out += (f'<p>Gate <b>{html.escape(check["display"])}</b>: {html.escape(check["left"])} = '
                    f'{_text(check["left_value"])} {html.escape(check["op"])} {html.escape(check["right"])} = '
                    f'{_text(check["right_value"])}: <span class="{"pass" if check["outcome"] else "fail"}">'
                    f"{verdict}</span></p>")  # fmt: skip
    for head, entry in evaluation.matrices.items():
        out += f"<h3>Confusion: {html.escape(head)}</h3>" + confusion(head, np.asarray(entry["matrix"]))
    worst = evaluation.worst
    if worst is not None and len(worst.get("images", [])):
        out += f"<h3>The {len(worst['images'])} worst-classified test images</h3>"
        out += "<p><small>true → predicted (confidence), lowest probability of the true labels first</small></p>"
        out += thumbnails(worst)
    if evaluation.predictions:
        out += f"<p>Every prediction: <code>{html.escape(str(evaluation.predictions))}</code></p>"
    return out


def render(view: RunView) -> str:
    statuses = {name: s.status for name, s in view.steps.items()}
    svg = _memo(
        _material("graph", view.definition, statuses), lambda: graph.render(view.definition, "svg", statuses).decode()
    )
    svg = svg[svg.index("<svg") :]
    parts = [
        f"<h1>{html.escape(view.pipeline)}: execution {html.escape(view.id)}</h1>",
        f'<p>Status <b class="status-{html.escape(view.status)}">{html.escape(view.status)}</b>'
        + (f", {view.elapsed:.1f}s" if view.elapsed is not None else "")
        + (f", started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(view.started))}" if view.started else "")
        + f" ({'local run' if view.where == 'local' else 'SageMaker'})</p>",
        '<section id="summary"><h2>Summary</h2><pre>'
        + html.escape("\n".join(failure_lines(view, None, 0) + summary_lines(view)))
        + "</pre>"
        + _table(["parameter", "value"], [[k, v] for k, v in view.parameters.items()], "parameters")
        + "</section>",
        f'<section id="graph"><h2>Pipeline</h2><div class="graph">{svg}</div></section>',
        f'<section id="timeline"><h2>Timeline</h2>{timeline(view)}</section>',
        _table(
            ["step", "type", "status", "seconds", "cache", "attempts", "reason"],
            [
                [
                    n,
                    s.type,
                    s.status,
                    (s.ended - s.started) if s.started and s.ended else None,
                    "hit" if s.cache_hit else "",
                    len(s.attempts),
                    s.failure_reason,
                ]
                for n, s in view.steps.items()
            ],
            "steps",
        ),  # fmt: skip
    ]
    if view.curves:
        parts.append(f'<section id="curves"><h2>Training curves</h2>{curves(view)}</section>')
    for step in view.children:
        title = outcome(view.steps[step].type).children_title if step in view.steps else "Jobs"
        parts.append(f'<section id="children-{html.escape(step)}"><h2>{html.escape(title)}: {html.escape(step)}</h2>'
                     f"{children(view, step)}</section>")  # fmt: skip
    for name, step_view in view.steps.items():
        for anchor, title, body in outcome(step_view.type).sections(name, step_view, view):
            parts.append(f'<section id="{html.escape(anchor)}"><h2>{html.escape(title)}</h2>{body}</section>')
    for step, found in view.evaluations.items():
        parts.append(f'<section id="evaluation-{html.escape(step)}"><h2>Evaluation: {html.escape(step)}</h2>'
                     f"{evaluation(view, step, found)}</section>")  # fmt: skip
    parts.append(tracking(view))
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(view.pipeline)} {html.escape(view.id)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>"
    )


def tracking(view: RunView) -> str:
    """Links to the execution's MLflow runs (``python -m pipelines ui`` serves them), once it is recorded."""
    from pipelines.report.tracking import run_url

    found = view.tracking or {}
    if not found.get("parent"):
        return ""
    ui, experiment = str(found.get("ui") or "http://127.0.0.1:5000"), str(found.get("experiment_id"))
    rows = [("execution", found["parent"])] + sorted((found.get("runs") or {}).items())
    links = "".join(
        f'<tr><td>{html.escape(str(name))}</td><td><a href="{html.escape(run_url(ui, experiment, str(run)))}">'
        f"{html.escape(str(run))}</a></td></tr>"
        for name, run in rows
    )
    where = html.escape(str(found.get("uri", "")))
    return (f'<section id="tracking"><h2>Tracking</h2><p>Recorded in MLflow ({where}, experiment '
            f"{html.escape(str(found.get('experiment', '')))}); the links open MLflow's UI "
            f"(<code>python -m pipelines ui</code>).</p><table><tr><th>job</th><th>MLflow run</th></tr>{links}"
            "</table></section>")  # fmt: skip


def write_report(view: RunView, path: Path, figures: Path | None = None) -> Path:
    """The report; ``figures``: a directory keeping drawn figures by content, for the next report."""
    view.report = path
    _FIGURES[:] = [figures] if figures else []
    try:
        write_atomic(path, render(view))
    finally:
        _FIGURES.clear()
    return path
