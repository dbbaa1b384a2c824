"""The calibration graph as hand-written SVG: vector, so it reads at any size.

Layered like `CalibrationGraph.figure` (a node's dependencies to its left), but the picture
is sized to its labels rather than the labels to the picture: every box is as wide as its
longest line at a fixed 12 px font, and the SVG's width and height are its natural size (an
HTML report puts it in a scrolling box instead of shrinking it). Each node is coloured by its
state, with a legend of the states shown. No graphviz, no matplotlib: the layout is a few
lines (layers by depth, each layer ordered by the mean position of its dependencies).
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

__all__ = ["STATE_COLOURS", "graph_svg"]

STATE_COLOURS: dict[str, str] = {
    "fresh": "#bfe8c6", "good": "#bfe8c6", "in spec": "#bfe8c6", "checked": "#bfe8c6",
    "calibrated": "#6cc482", "stale": "#fff2b3", "dependency changed": "#fff2b3",
    "dependency not fresh": "#fff2b3", "out of spec": "#ffd9a8", "bad data": "#ffb3b3",
    "last attempt failed": "#ffb3b3", "failed": "#ff7b7b", "skipped": "#d9d9d9",
    "never calibrated": "#e3ecf8", "not checked": "#ffffff",
}
"""Fill colour per state word; a state not listed is drawn white."""

_MEANING: dict[str, str] = {
    "fresh": "fresh: within its timeout, nothing measured",
    "good": "fresh: within its timeout, nothing measured",
    "in spec": "in spec: measured, no change needed", "checked": "checked: in spec",
    "calibrated": "calibrated in this session", "stale": "stale: past its timeout",
    "out of spec": "out of spec: measured, needs a calibration",
    "bad data": "bad data: the check could not judge",
    "failed": "failed: its calibration did not succeed",
    "skipped": "skipped: a dependency is not good",
    "never calibrated": "never calibrated", "not checked": "not checked in this session",
}

FONT_PX = 12
CHAR_PX = 7.0
"""Width of one character at `FONT_PX` (a generous mean for sans-serif, so text fits)."""
LINE_PX = 16
PAD_PX = 8
GAP_X_PX = 60
GAP_Y_PX = 14
LEGEND_ROW_PX = 20


def _layers(graph: Any) -> list[list[str]]:
    """Nodes by depth; each layer ordered by the mean row of its dependencies (fewer
    crossings than the graph's own order), ties kept in graph order."""
    layers: dict[int, list[str]] = {}
    for name in graph.order:
        layers.setdefault(graph.depth(name), []).append(name)
    ordered: list[list[str]] = []
    row: dict[str, float] = {}
    for depth in sorted(layers):
        names = layers[depth]

        def key(name: str, names: list[str] = names) -> tuple[float, int]:
            deps = [row[d] for d in graph[name].depends_on if d in row]
            return (sum(deps) / len(deps) if deps else float(names.index(name)),
                    names.index(name))

        names = sorted(names, key=key)
        row.update({n: float(i) for i, n in enumerate(names)})
        ordered.append(names)
    return ordered


def _box_lines(name: str, state: str, detail: str) -> list[str]:
    return [name, state or "not checked"] + ([detail] if detail else [])


def graph_svg(graph: Any, states: Mapping[str, str],
              details: Mapping[str, str] | None = None, *, title: str = "") -> str:
    """The graph as an SVG document (text): each node a box with its name, its state and an
    optional detail line (e.g. its age), filled by `STATE_COLOURS`; arrows from a dependency
    to its dependents; a legend of the states present."""
    details = details or {}
    layers = _layers(graph)
    lines = {n: _box_lines(n, states.get(n, ""), details.get(n, ""))
             for layer in layers for n in layer}
    widths = [max((max(len(t) for t in lines[n]) for n in layer), default=10) * CHAR_PX
              + 2 * PAD_PX for layer in layers]
    heights = {n: len(lines[n]) * LINE_PX + PAD_PX for n in lines}
    shown = [s for s in STATE_COLOURS if s in {states.get(n, "not checked") or "not checked"
                                               for n in lines}]
    # The legend above the graph, where a scrolling box shows it first.
    legend_y = 30.0 if title else 10.0
    top = legend_y + (len(shown) + 1) * LEGEND_ROW_PX + 10
    pos: dict[str, tuple[float, float, float, float]] = {}  # x, y, width, height
    x = 10.0
    for layer, width in zip(layers, widths, strict=True):
        y = float(top)
        for name in layer:
            pos[name] = (x, y, width, heights[name])
            y += heights[name] + GAP_Y_PX
        x += width + GAP_X_PX
    graph_w = x - GAP_X_PX + 10
    legend_w = max((len(_MEANING.get(s, s)) for s in shown), default=0) * CHAR_PX + 40
    width = max(graph_w, legend_w)
    height = max((p[1] + p[3] for p in pos.values()), default=top) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="calibration-graph" '
           f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
           f'font-family="sans-serif" font-size="{FONT_PX}px" role="img">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
           'fill="#777"/></marker></defs>']
    if title:
        out.append(f'<text x="10" y="20" font-weight="bold">{escape(title)}</text>')
    for name in pos:
        x1, y1, _, h1 = pos[name]
        for dep in graph[name].depends_on:
            if dep not in pos:
                continue
            x0, y0, w0, h0 = pos[dep]
            out.append(f'<path d="M {x0 + w0:.1f} {y0 + h0 / 2:.1f} C {x0 + w0 + GAP_X_PX / 2:.1f}'
                       f' {y0 + h0 / 2:.1f}, {x1 - GAP_X_PX / 2:.1f} {y1 + h1 / 2:.1f}, '
                       f'{x1:.1f} {y1 + h1 / 2:.1f}" fill="none" stroke="#777" '
                       f'stroke-width="1.2" marker-end="url(#arrow)"/>')
    for name, (bx, by, bw, bh) in pos.items():
        state = states.get(name, "") or "not checked"
        fill = STATE_COLOURS.get(state, "#ffffff")
        out.append(f'<g class="node" data-node="{escape(name)}" data-state="{escape(state)}">'
                   f'<title>{escape(name)}: {escape(state)}</title>'
                   f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                   f'rx="6" fill="{fill}" stroke="#444"/>')
        for i, text in enumerate(lines[name]):
            weight = ' font-weight="bold"' if i == 0 else ""
            baseline = by + PAD_PX / 2 + (i + 0.8) * LINE_PX
            out.append(f'<text x="{bx + PAD_PX:.1f}" y="{baseline:.1f}"{weight}>'
                       f'{escape(text)}</text>')
        out.append("</g>")
    lx, ly = 10.0, legend_y
    out.append(f'<g class="legend"><text x="{lx:.1f}" y="{ly + 12:.1f}" '
               f'font-weight="bold">state</text>')
    for i, state in enumerate(shown):
        y = ly + (i + 1) * LEGEND_ROW_PX
        out.append(f'<rect x="{lx:.1f}" y="{y:.1f}" width="14" height="14" '
                   f'fill="{STATE_COLOURS[state]}" stroke="#444"/>'
                   f'<text x="{lx + 20:.1f}" y="{y + 11:.1f}">'
                   f'{escape(_MEANING.get(state, state))}</text>')
    out.append("</g></svg>")
    return "\n".join(out)
