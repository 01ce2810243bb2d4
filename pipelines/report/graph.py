"""The compiled definition drawn as Studio draws it: steps by display name and Type, data edges, ``DependsOn``
edges (dashed) and a condition's if/else branches, in layers (a step's layer is the longest path to it).

The SVG is written here, directly (the run report inlines it: drawing it costs no plotting library, and a
run's report is written in milliseconds); ``make pipeline-graph`` also writes a PNG, drawn from the same
layout with matplotlib.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.definition import BRANCHES, all_steps, references
from pipelines.report.outcomes import outcome

LABELS = {"IfSteps": "if true", "ElseSteps": "else"}
STATUS_COLORS = {
    "Succeeded": "#c8e6c9", "Failed": "#ffcdd2", "Stopped": "#ffcdd2", "Executing": "#fff9c4",
    "Starting": "#fff9c4", "Skipped": "#eeeeee", "NotRun": "#eeeeee", "Pending": "#eeeeee",
}  # fmt: skip
BRANCH_COLORS = {"if true": "#2e7d32", "else": "#c62828"}
CHAR, LINE, PAD, GAP_X, GAP_Y = 6.6, 15, 10, 56, 22  # SVG geometry, in pixels (11 px text)


@dataclass
class Graph:
    """Steps and the edges between them: ``nodes[name]`` (label, type), ``edges[(u, v)]`` (relation, label)."""

    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    edges: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def predecessors(self, node: str) -> list[str]:
        return [u for (u, v) in self.edges if v == node]


def build(definition: dict[str, Any]) -> Graph:
    """Nodes: steps (display name, Type). Edges: relation ``data``, ``depends`` or ``branch`` (label if/else)."""
    graph = Graph()
    nested: list[tuple[str, str, str]] = []
    for step, parent, branch in all_steps(definition):
        graph.nodes[step["Name"]] = {"label": step.get("DisplayName") or step["Name"], "type": step.get("Type", "")}
        if parent:
            nested.append((parent, step["Name"], branch))
    for step, _, _ in all_steps(definition):
        name = step["Name"]
        for source in sorted(references(step.get("Arguments", {}), frozenset(BRANCHES)) - {name}):
            if source in graph.nodes:
                graph.edges[(source, name)] = {"relation": "data"}
        for source in step.get("DependsOn", []):
            if source in graph.nodes and (source, name) not in graph.edges:
                graph.edges[(source, name)] = {"relation": "depends"}
    for parent, child, branch in nested:
        graph.edges[(parent, child)] = {"relation": "branch", "label": LABELS[branch]}
    return graph


def layers(graph: Graph) -> dict[str, int]:
    """Each step's layer: the longest path of edges leading to it."""
    depth: dict[str, int] = {}
    remaining = dict.fromkeys(graph.nodes)
    while remaining:
        ready = [n for n in remaining if all(p in depth for p in graph.predecessors(n))]
        if not ready:  # a cycle cannot come from a valid definition; lay the rest out flat
            ready = list(remaining)
        for node in ready:
            depth[node] = max((depth[p] + 1 for p in graph.predecessors(node) if p in depth), default=0)
            del remaining[node]
    return depth


@dataclass(frozen=True)
class Box:
    x: float  # centre
    y: float
    width: float
    height: float


def _lines(graph: Graph, node: str, statuses: dict[str, str] | None) -> list[str]:
    data, status = graph.nodes[node], (statuses or {}).get(node)
    return [data["label"], data["type"] + (f" · {status}" if status else "")]


def layout(graph: Graph, statuses: dict[str, str] | None = None) -> dict[str, Box]:
    """Every step's box: layers left to right, a layer's steps top to bottom in definition order."""
    depth = layers(graph)
    sizes = {n: (max(len(t) for t in _lines(graph, n, statuses)) * CHAR + 2 * PAD, 2 * LINE + PAD) for n in depth}
    columns: dict[int, list[str]] = {}
    for node in graph.nodes:
        columns.setdefault(depth[node], []).append(node)
    tallest = max((sum(sizes[n][1] + GAP_Y for n in column) for column in columns.values()), default=0)
    boxes, x = {}, 0.0
    for layer in sorted(columns):
        column = columns[layer]
        width = max(sizes[n][0] for n in column)
        y = (tallest - sum(sizes[n][1] + GAP_Y for n in column)) / 2 + GAP_Y / 2
        for node in column:
            w, h = sizes[node]
            boxes[node] = Box(x + width / 2, y + h / 2, w, h)
            y += h + GAP_Y
        x += width + GAP_X
    return boxes


def _color(graph: Graph, node: str, statuses: dict[str, str] | None) -> str:
    return STATUS_COLORS.get((statuses or {}).get(node) or "", outcome(graph.nodes[node]["type"]).color)


def svg(definition: dict[str, Any], statuses: dict[str, str] | None = None, title: str | None = None) -> str:
    """The graph as a standalone SVG document."""
    graph = build(definition)
    boxes = layout(graph, statuses)
    top = 24 if title else 4
    width = max((b.x + b.width / 2 for b in boxes.values()), default=0) + 8
    height = max((b.y + b.height / 2 for b in boxes.values()), default=0) + top + 8
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="-4 {-top} {width:.0f} {height:.0f}" font-family="sans-serif" font-size="11">',
           "<defs>" + "".join(f'<marker id="arrow{i}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
                              f'markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="{c}"/></marker>'
                              for i, c in enumerate(("#555555", *BRANCH_COLORS.values()))) + "</defs>"]  # fmt: skip
    if title:
        out.append(f'<text x="0" y="-8" font-size="13">{html.escape(title)}</text>')
    markers = {"#555555": 0, **{c: i + 1 for i, c in enumerate(BRANCH_COLORS.values())}}
    for (u, v), data in graph.edges.items():
        a, b = boxes[u], boxes[v]
        color = BRANCH_COLORS.get(data.get("label", ""), "#555555")
        x1, y1, x2, y2 = a.x + a.width / 2, a.y, b.x - b.width / 2, b.y
        if x2 <= x1:  # a box in the same or an earlier layer: leave from below
            x1, y1, x2, y2 = a.x, a.y + a.height / 2, b.x, b.y - b.height / 2
        dash = ' stroke-dasharray="5,4"' if data["relation"] == "depends" else ""
        out.append(f'<path d="M{x1:.1f},{y1:.1f} C{(x1 + x2) / 2:.1f},{y1:.1f} {(x1 + x2) / 2:.1f},{y2:.1f} '
                   f'{x2:.1f},{y2:.1f}" fill="none" stroke="{color}" stroke-width="1.2"{dash} '
                   f'marker-end="url(#arrow{markers[color]})"/>')  # fmt: skip
        if data.get("label"):
            out.append(f'<text x="{x1 * 0.6 + x2 * 0.4:.1f}" y="{y1 * 0.6 + y2 * 0.4 - 3:.1f}" fill="{color}" '
                       f'font-size="10" text-anchor="middle">{html.escape(data["label"])}</text>')  # fmt: skip
    for node, box in boxes.items():
        first, second = _lines(graph, node, statuses)
        out.append(f'<g><title>{html.escape(node)}</title><rect x="{box.x - box.width / 2:.1f}" '
                   f'y="{box.y - box.height / 2:.1f}" width="{box.width:.1f}" height="{box.height:.1f}" rx="6" '
                   f'fill="{_color(graph, node, statuses)}" stroke="#555555"/>'
                   f'<text x="{box.x:.1f}" y="{box.y - 2:.1f}" text-anchor="middle">{html.escape(first)}</text>'
                   f'<text x="{box.x:.1f}" y="{box.y + LINE - 3:.1f}" text-anchor="middle" fill="#444444" '
                   f'font-size="10">{html.escape(second)}</text></g>')  # fmt: skip
    out.append("</svg>")
    return "\n".join(out)


def png(definition: dict[str, Any], statuses: dict[str, str] | None = None, title: str | None = None) -> bytes:
    """The same drawing as a PNG (matplotlib), for places that take no SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graph = build(definition)
    boxes = layout(graph, statuses)
    width = max((b.x + b.width / 2 for b in boxes.values()), default=100) + 8
    height = max((b.y + b.height / 2 for b in boxes.values()), default=40) + (24 if title else 4) + 8
    dpi = 100
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-4, width - 4)
    ax.set_ylim(height - (24 if title else 4), -(24 if title else 4))
    ax.set_axis_off()
    for (u, v), data in graph.edges.items():
        a, b = boxes[u], boxes[v]
        color = BRANCH_COLORS.get(data.get("label", ""), "#555555")
        style = "dashed" if data["relation"] == "depends" else "solid"
        ax.annotate("", xy=(b.x - b.width / 2, b.y), xytext=(a.x + a.width / 2, a.y),
                    arrowprops={"arrowstyle": "-|>", "color": color, "linestyle": style})  # fmt: skip
    for node, box in boxes.items():
        corner = (box.x - box.width / 2, box.y - box.height / 2)
        ax.add_patch(matplotlib.patches.FancyBboxPatch(corner, box.width, box.height, facecolor=_color(
            graph, node, statuses), edgecolor="#555555", boxstyle="round,pad=0,rounding_size=6"))  # fmt: skip
        ax.text(box.x, box.y, "\n".join(_lines(graph, node, statuses)), ha="center", va="center", fontsize=8)
    if title:
        ax.text(0, -8, title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def render(definition: dict[str, Any], fmt: str = "svg", statuses: dict[str, str] | None = None,
           title: str | None = None) -> bytes:  # fmt: skip
    return svg(definition, statuses, title).encode() if fmt == "svg" else png(definition, statuses, title)


def write(definition: dict[str, Any], out: Path, title: str | None = None) -> list[Path]:
    """``out`` as SVG and the same name as PNG."""
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in ("svg", "png"):
        path = out.with_suffix(f".{fmt}")
        path.write_bytes(render(definition, fmt, title=title))
        written.append(path)
    return written
