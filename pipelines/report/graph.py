"""The compiled definition drawn as Studio draws it: steps by display name and Type, data edges, ``DependsOn``
edges (dashed) and a condition's if/else branches, laid out by networkx's layered (multipartite) layout
and drawn with matplotlib, as SVG and PNG."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import networkx as nx

from pipelines.definition import BRANCHES, all_steps, references
from pipelines.report.outcomes import outcome

LABELS = {"IfSteps": "if true", "ElseSteps": "else"}
STATUS_COLORS = {
    "Succeeded": "#c8e6c9", "Failed": "#ffcdd2", "Stopped": "#ffcdd2", "Executing": "#fff9c4",
    "Starting": "#fff9c4", "Skipped": "#eeeeee", "NotRun": "#eeeeee", "Pending": "#eeeeee",
}  # fmt: skip


def build(definition: dict[str, Any]) -> nx.DiGraph:
    """Nodes: steps (display name, Type). Edges: relation ``data``, ``depends`` or ``branch`` (label if/else)."""
    graph = nx.DiGraph()
    nested: list[tuple[str, str, str]] = []
    for step, parent, branch in all_steps(definition):
        graph.add_node(step["Name"], label=step.get("DisplayName") or step["Name"], type=step.get("Type", ""))
        if parent:
            nested.append((parent, step["Name"], branch))
    for step, _, _ in all_steps(definition):
        name = step["Name"]
        for source in references(step.get("Arguments", {}), frozenset(BRANCHES)) - {name}:
            if source in graph:
                graph.add_edge(source, name, relation="data")
        for source in step.get("DependsOn", []):
            if source in graph and not graph.has_edge(source, name):
                graph.add_edge(source, name, relation="depends")
    for parent, child, branch in nested:
        graph.add_edge(parent, child, relation="branch", label=LABELS[branch])
    return graph


def layers(graph: nx.DiGraph) -> dict[str, int]:
    """Each step's layer: the longest path of edges leading to it."""
    depth: dict[str, int] = {}
    for node in nx.topological_sort(graph):
        depth[node] = max((depth[p] + 1 for p in graph.predecessors(node)), default=0)
    return depth


def figure(definition: dict[str, Any], statuses: dict[str, str] | None = None, title: str | None = None) -> Any:
    """A matplotlib figure of the graph; ``statuses`` colors each step by how it ended."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graph = build(definition)
    depth = layers(graph)
    nx.set_node_attributes(graph, depth, "layer")
    width = max(depth.values(), default=0) + 1
    height = max((list(depth.values()).count(d) for d in set(depth.values())), default=1)
    pos = nx.multipartite_layout(graph, subset_key="layer", align="vertical", scale=1.0) if graph else {}
    fig, ax = plt.subplots(figsize=(max(4.0, 2.7 * width), max(2.0, 1.25 * height + (0.4 if title else 0))))
    ax.set_axis_off()
    boxes = {}
    for node, data in graph.nodes(data=True):
        status = (statuses or {}).get(node)
        color = STATUS_COLORS.get(status or "", outcome(data["type"]).color)
        text = f"{data['label']}\n{data['type']}" + (f" · {status}" if status else "")
        boxes[node] = ax.text(
            pos[node][0], pos[node][1], text, ha="center", va="center", fontsize=8, zorder=3,
            bbox={"boxstyle": "round,pad=0.5", "facecolor": color, "edgecolor": "#555555"},
        )  # fmt: skip
    for u, v, data in graph.edges(data=True):
        style = {"data": "solid", "depends": "dashed", "branch": "solid"}[data["relation"]]
        color = {"if true": "#2e7d32", "else": "#c62828"}.get(data.get("label", ""), "#555555")
        ax.annotate(
            "", xy=pos[v], xytext=pos[u], zorder=2,
            arrowprops={"arrowstyle": "-|>", "color": color, "linestyle": style, "patchA": boxes[u],
                        "patchB": boxes[v], "shrinkA": 2, "shrinkB": 2, "connectionstyle": "arc3,rad=0.08"},
        )  # fmt: skip
        if data.get("label"):
            mid = pos[u] * 0.6 + pos[v] * 0.4
            ax.text(mid[0], mid[1], data["label"], fontsize=7, color=color, ha="center", va="bottom", zorder=4)
    xs = [p[0] for p in pos.values()] or [0]
    ys = [p[1] for p in pos.values()] or [0]
    ax.set_xlim(min(xs) - 0.25, max(xs) + 0.25)
    ax.set_ylim(min(ys) - 0.3, max(ys) + 0.3)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    fig.tight_layout()
    return fig


def render(definition: dict[str, Any], fmt: str = "svg", statuses: dict[str, str] | None = None,
           title: str | None = None) -> bytes:  # fmt: skip
    import matplotlib.pyplot as plt

    fig = figure(definition, statuses, title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=110, metadata={"Date": None} if fmt == "svg" else None)
    plt.close(fig)
    return buffer.getvalue()


def write(definition: dict[str, Any], out: Path, title: str | None = None) -> list[Path]:
    """``out`` as SVG and the same name as PNG."""
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in ("svg", "png"):
        path = out.with_suffix(f".{fmt}")
        path.write_bytes(render(definition, fmt, title=title))
        written.append(path)
    return written
