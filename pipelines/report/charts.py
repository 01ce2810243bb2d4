"""The run report's charts, written as SVG directly: per-epoch curves, a search's metric against each parameter,
and confusion matrices.

Each is a few hundred elements of text. A plotting library would cost more to import than a whole cached run
(matplotlib: 0.6 s and 60 MB before it draws), and the report is written at the end of every run, including
runs whose report nobody opens. Each chart is an ``<svg class="figure" data-figure=NAME>``: it scales with the
page, reads offline, and holds its numbers as text (a ``<title>`` per point).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.report.outcomes.base import is_number

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")  # fmt: skip
PANEL_W, PANEL_H, MARGIN_L, MARGIN_B, MARGIN_T, MARGIN_R = 300, 200, 52, 34, 22, 12


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _e(text: Any) -> str:
    return html.escape(str(text))


@dataclass(frozen=True)
class Scale:
    """Data values to pixels along one axis (linear, or log10 when ``log``)."""

    low: float
    high: float
    start: float  # pixel of ``low``
    end: float  # pixel of ``high``
    log: bool = False

    def __call__(self, value: float) -> float:
        low, high, v = (math.log10(self.low), math.log10(self.high), math.log10(value)) if self.log else (
            self.low, self.high, value)  # fmt: skip
        span = high - low or 1.0
        return self.start + (v - low) / span * (self.end - self.start)

    def ticks(self, count: int = 4) -> list[float]:
        """Round values along the axis (powers of ten on a log axis)."""
        if self.log:
            first, last = math.floor(math.log10(self.low)), math.ceil(math.log10(self.high))
            return [10.0**k for k in range(first, last + 1) if self.low <= 10.0**k <= self.high] or [self.low]
        span = self.high - self.low
        if span <= 0:
            return [self.low]
        raw = span / count
        step = 10 ** math.floor(math.log10(raw))
        step *= next(m for m in (1, 2, 5, 10) if step * m >= raw)
        first = math.ceil(self.low / step) * step
        return [first + k * step for k in range(int((self.high - first) / step + 1e-9) + 1)]


def _bounds(values: Sequence[float], log: bool = False) -> tuple[float, float]:
    low, high = min(values), max(values)
    if log:
        return low / 1.2, high * 1.2
    pad = (high - low) * 0.06 or abs(high) * 0.06 or 1.0
    return low - pad, high + pad


@dataclass(frozen=True)
class Frame:
    """Where a panel sits (its top-left corner) and what its axes say."""

    x0: float
    y0: float
    title: str
    xlabel: str


def _panel(frame: Frame, xs: Scale, ys: Scale, body: str, xticks: list[tuple[float, str]] | None = None) -> str:
    """A framed plot area with its title, ticks and grid; ``body`` is drawn in data coordinates by the caller."""
    x0, y0, title, xlabel = frame.x0, frame.y0, frame.title, frame.xlabel
    left, top = x0 + MARGIN_L, y0 + MARGIN_T
    right, bottom = x0 + PANEL_W - MARGIN_R, y0 + PANEL_H - MARGIN_B
    out = [f'<text x="{(left + right) / 2:.1f}" y="{y0 + 14:.1f}" text-anchor="middle" font-size="12">{_e(title)}'
           "</text>",
           f'<rect x="{left:.1f}" y="{top:.1f}" width="{right - left:.1f}" height="{bottom - top:.1f}" fill="none" '
           'stroke="#999999"/>']  # fmt: skip
    for value in ys.ticks():
        y = ys(value)
        out.append(f'<line x1="{left:.1f}" x2="{right:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e6e6"/>'
                   f'<text x="{left - 4:.1f}" y="{y + 3:.1f}" text-anchor="end" font-size="9">{_fmt(value)}</text>')
    for value, label in xticks if xticks is not None else [(v, _fmt(v)) for v in xs.ticks()]:
        x = xs(value)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{bottom:.1f}" stroke="#f0f0f0"/>'
                   f'<text x="{x:.1f}" y="{bottom + 12:.1f}" text-anchor="middle" font-size="9">{_e(label)}</text>')
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{bottom + 26:.1f}" text-anchor="middle" font-size="10" '
               f'fill="#555555">{_e(xlabel)}</text>{body}')  # fmt: skip
    return "".join(out)


def _svg(name: str, alt: str, width: float, height: float, body: str) -> str:
    return (f'<svg class="figure" data-figure="{_e(name)}" role="img" aria-label="{_e(alt)}" '
            f'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
            f'font-family="sans-serif">{body}</svg>')  # fmt: skip


def _grid(count: int, columns: int) -> tuple[int, int]:
    columns = max(1, min(columns, count))
    return columns, math.ceil(count / columns)


def lines(name: str, alt: str, panels: list[tuple[str, dict[str, list[float]]]], xlabel: str = "epoch") -> str:
    """Small multiples: one panel per metric, a line per series (job), x = 1, 2, 3..."""
    columns, rows = _grid(len(panels), 3)
    series_names = list(dict.fromkeys(s for _, series in panels for s in series))
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series_names)}
    body = []
    for n, (metric, series) in enumerate(panels):
        x0, y0 = (n % columns) * PANEL_W, (n // columns) * PANEL_H
        values = [v for points in series.values() for v in points if math.isfinite(v)] or [0.0]
        longest = max((len(p) for p in series.values()), default=1)
        xs = Scale(1, max(longest, 2), x0 + MARGIN_L + 8, x0 + PANEL_W - MARGIN_R - 8)
        ys = Scale(*_bounds(values), y0 + PANEL_H - MARGIN_B, y0 + MARGIN_T)
        drawn = []
        for job, points in series.items():
            kept = [(i + 1, v) for i, v in enumerate(points) if math.isfinite(v)]
            path = " ".join(f"{xs(i):.1f},{ys(v):.1f}" for i, v in kept)
            drawn.append(f'<polyline points="{path}" fill="none" stroke="{colors[job]}" stroke-width="1.5"/>')
            drawn += [f'<circle cx="{xs(i):.1f}" cy="{ys(v):.1f}" r="2.5" fill="{colors[job]}"><title>{_e(job)}: '
                      f"{metric} = {_fmt(v)} at {xlabel} {i}</title></circle>" for i, v in kept]  # fmt: skip
        whole = [(float(t), str(int(t))) for t in xs.ticks() if float(t).is_integer()] or [(1.0, "1")]
        body.append(_panel(Frame(x0, y0, metric, xlabel), xs, ys, "".join(drawn), whole))
    height = rows * PANEL_H
    if len(series_names) <= 12:
        body += [f'<rect x="{8 + 150 * (i % 4)}" y="{height + 6 + 16 * (i // 4)}" width="10" height="10" '
                 f'fill="{colors[s]}"/><text x="{22 + 150 * (i % 4)}" y="{height + 15 + 16 * (i // 4)}" '
                 f'font-size="10">{_e(s[-24:])}</text>' for i, s in enumerate(series_names)]  # fmt: skip
        height += 10 + 16 * math.ceil(len(series_names) / 4)
    return _svg(name, alt, columns * PANEL_W, height, "".join(body))


def scatter(name: str, alt: str, ylabel: str, panels: list[tuple[str, list[Any]]], ys_values: list[float]) -> str:
    """One panel per parameter: the metric (y) against the parameter's values (x), numbers on a linear or log
    axis, anything else as categories; colour: the order the points came (dark first)."""
    columns, rows = _grid(len(panels), 4)
    order = _viridis(len(ys_values))
    body = []
    for n, (parameter, values) in enumerate(panels):
        x0, y0 = (n % columns) * PANEL_W, (n // columns) * PANEL_H
        ys = Scale(*_bounds(ys_values), y0 + PANEL_H - MARGIN_B, y0 + MARGIN_T)
        left, right = x0 + MARGIN_L + 10, x0 + PANEL_W - MARGIN_R - 10
        xs, position, ticks = _x_axis(values, left, right)
        dots = "".join(f'<circle cx="{position(v):.1f}" cy="{ys(y):.1f}" r="4" fill="{order[i]}" stroke="#333333" '
                       f'stroke-width="0.6"><title>{_e(parameter)} = {_e(v)}: {_e(ylabel)} = {_fmt(y)}</title>'
                       "</circle>" for i, (v, y) in enumerate(zip(values, ys_values, strict=True)))  # fmt: skip
        body.append(_panel(Frame(x0, y0, f"{ylabel} against {parameter}", parameter), xs, ys, dots, ticks))
    return _svg(name, alt, columns * PANEL_W, rows * PANEL_H, "".join(body))


def _x_axis(values: list[Any], left: float, right: float) -> tuple[Scale, Callable[[Any], float],
                                                                   list[tuple[float, str]] | None]:  # fmt: skip
    """(scale, value -> pixel, ticks) for a parameter's values: numbers on a linear axis (log when they span
    more than 20x), anything else as categories in the order they came."""
    if all(is_number(v) and not isinstance(v, bool) for v in values):
        numbers = [float(v) for v in values]
        log = min(numbers) > 0 and max(numbers) / min(numbers) > 20
        numeric = Scale(*_bounds(numbers, log), left, right, log)

        def number(value: Any) -> float:
            return numeric(float(value))

        return numeric, number, None
    categories = list(dict.fromkeys(str(v) for v in values))
    scale = Scale(-0.5, len(categories) - 0.5, left, right)

    def category(value: Any) -> float:
        return scale(categories.index(str(value)))

    return scale, category, [(float(i), c[:12]) for i, c in enumerate(categories)]


def heatmap(name: str, alt: str, title: str, matrix: Sequence[Sequence[int]], numbers: bool) -> str:
    """A confusion matrix: true classes down, predicted across, darker blue for more; counts written when
    ``numbers``."""
    k = len(matrix)
    cell = max(12.0, min(36.0, 420.0 / max(k, 1)))
    left, top = 44.0, 30.0
    peak = max((max(row) for row in matrix), default=0) or 1
    body = [f'<text x="{left + k * cell / 2:.1f}" y="14" text-anchor="middle" font-size="12">{_e(title)}</text>',
            f'<text x="{left + k * cell / 2:.1f}" y="{top + k * cell + 30:.1f}" text-anchor="middle" font-size="10" '
            'fill="#555555">predicted</text>',
            f'<text x="12" y="{top + k * cell / 2:.1f}" text-anchor="middle" font-size="10" fill="#555555" '
            f'transform="rotate(-90 12 {top + k * cell / 2:.1f})">true</text>']  # fmt: skip
    for i, row in enumerate(matrix):
        body.append(f'<text x="{left - 4:.1f}" y="{top + (i + 0.5) * cell + 3:.1f}" text-anchor="end" '
                    f'font-size="9">{i}</text>')  # fmt: skip
        for j, value in enumerate(row):
            share = value / peak
            fill = _blue(share)
            text = (f'<text x="{left + (j + 0.5) * cell:.1f}" y="{top + (i + 0.5) * cell + 3:.1f}" '
                    f'text-anchor="middle" font-size="9" fill="{"#ffffff" if share > 0.5 else "#000000"}">'
                    f"{value}</text>") if numbers else ""  # fmt: skip
            body.append(f'<rect x="{left + j * cell:.1f}" y="{top + i * cell:.1f}" width="{cell:.1f}" '
                        f'height="{cell:.1f}" fill="{fill}"><title>true {i}, predicted {j}: {value}</title></rect>'
                        f"{text}")  # fmt: skip
    body += [f'<text x="{left + (j + 0.5) * cell:.1f}" y="{top + k * cell + 12:.1f}" text-anchor="middle" '
             f'font-size="9">{j}</text>' for j in range(k)]  # fmt: skip
    return _svg(name, alt, left + k * cell + 12, top + k * cell + 40, "".join(body))


def _blue(share: float) -> str:
    """White to matplotlib's dark "Blues" end."""
    low, high = (247, 251, 255), (8, 48, 107)
    r, g, b = (round(lo + (hi - lo) * max(0.0, min(1.0, share))) for lo, hi in zip(low, high, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _viridis(count: int) -> list[str]:
    """``count`` colours from dark purple to yellow (viridis' ends and middle)."""
    stops = ((68, 1, 84), (33, 145, 140), (253, 231, 37))
    out = []
    for i in range(count):
        t = i / max(count - 1, 1) * 2
        a, b = stops[min(int(t), 1)], stops[min(int(t), 1) + 1]
        f = t - min(int(t), 1)
        out.append("#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(a, b, strict=True)))
    return out
