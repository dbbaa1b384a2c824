"""The HTML pieces of a report (`sequences.report`): values, tables, figures, the page.

Numbers go through `sequences.si` (the terminal's formatter): ``8 GHz``, ``2.0 ± 0.1 µW``.
A figure is embedded, never linked: a PNG as a base64 data URI, an SVG inline (vector, at its
natural size in a scrolling box, so its labels are never shrunk), each with a numbered
caption saying what it shows.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

from .analysis import AnalysisResult, FitValue
from .report_figures import ReportFigure, figure_caption, split_unit
from .si import format_value

__all__ = ["Anchors", "badge", "figure_html", "number", "table_html", "text", "values_html"]


class Anchors:
    """Unique HTML ids from titles, in the order the sections appear (the contents list)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []

    def add(self, title: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
        used = {a for a, _ in self.entries}
        anchor, n = slug, 2
        while anchor in used:
            anchor, n = f"{slug}-{n}", n + 1
        self.entries.append((anchor, title))
        return anchor

    def nav(self) -> str:
        items = "".join(f"<li><a href='#{a}'>{html.escape(t)}</a></li>"
                        for a, t in self.entries)
        return f"<nav class='toc'><h2>Contents</h2><ol>{items}</ol></nav>"


def badge(good: bool) -> str:
    return "<span class='good'>GOOD</span>" if good else "<span class='bad'>BAD</span>"


def number(v: float | None, unit: str = "") -> str:
    """A table cell: SI-prefixed with `unit`, blank when missing or not finite."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return format_value(v, unit) if unit else f"{v:.6g}"


def text(v: FitValue | float | str) -> str:
    return number(v) if isinstance(v, float) else str(v)


def values_html(analysis: AnalysisResult) -> str:
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>"
                   for k, v in analysis.values.items())
    proposed = "".join(f"<tr><th>{e(k)}</th><td>{number(v)}</td></tr>"
                       for k, v in analysis.proposed.items())
    out = f"<table>{rows}</table>" if rows else ""
    if proposed:
        out += f"<p>proposed calibration values:</p><table>{proposed}</table>"
    return out


def table_html(name: str, table: dict[str, list[float]]) -> str:
    """A column table folded away (it can be long); a column named 'x (W)' shows SI
    prefixes: '2.5 mW'."""
    e = html.escape
    columns = list(table)
    units = [split_unit(c)[1] for c in columns]
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    rows = "".join("<tr>" + "".join(f"<td>{e(number(v, u))}</td>"
                                    for v, u in zip(values, units, strict=True)) + "</tr>"
                   for values in zip(*table.values(), strict=False))
    return f"<details><summary>{e(name)}</summary><table><tr>{head}</tr>{rows}</table></details>"


def text_table_html(header: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    cells = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>"
                    for row in rows)
    return f"<table><tr>{head}</tr>{cells}</table>"


class FigureCounter:
    """Numbers the figures of one page in order."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


def figure_html(figure: ReportFigure | Path | str, counter: FigureCounter | None = None,
                sequence: str = "", run_id: int | None = None) -> str:
    """One figure with its caption: a PNG embedded as a data URI, an SVG inline."""
    if not isinstance(figure, ReportFigure):
        figure = ReportFigure(Path(figure), figure_caption(figure, sequence, run_id))
    e = html.escape
    label = f"Figure {counter.next()}. " if counter is not None else ""
    caption = f"<figcaption>{e(label)}{e(figure.caption)}</figcaption>"
    path = figure.path
    if not path.is_file():
        return f"<figure><p>(the figure file {e(str(path))} is missing)</p>{caption}</figure>"
    if path.suffix.lower() == ".svg":
        svg = path.read_text(encoding="utf-8")
        svg = svg[svg.find("<svg"):]  # an XML declaration is not allowed inside HTML
        return f"<figure><div class='svg-box'>{svg}</div>{caption}</figure>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img alt='{e(figure.caption)}' src='data:image/png;base64,{data}'>"
            f"{caption}</figure>")


FRAGMENT_STYLE = (
    "<style>.qnetlab-result table {border-collapse: collapse; margin: 0.3rem 0;} "
    ".qnetlab-result th, .qnetlab-result td {border: 1px solid #ccc; padding: 0.1rem 0.4rem; "
    "text-align: left;} .qnetlab-result .good {background: #2a7; color: white; "
    "padding: 0.1rem 0.4rem; border-radius: 0.2rem;} .qnetlab-result .bad {background: #c33; "
    "color: white; padding: 0.1rem 0.4rem; border-radius: 0.2rem;} .qnetlab-result .stop "
    "{color: #a50;} .qnetlab-result img {max-width: 40rem;} .qnetlab-result figcaption "
    "{font-size: 0.85em; color: #444; max-width: 40rem;}</style>")

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto;
       padding: 0 1rem; }}
table {{ border-collapse: collapse; margin: 0.5rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left;
          vertical-align: top; }}
.good {{ background: #2a7; color: white; padding: 0.1rem 0.4rem; border-radius: 0.2rem; }}
.bad {{ background: #c33; color: white; padding: 0.1rem 0.4rem; border-radius: 0.2rem; }}
.stop {{ color: #a50; }} .meta {{ color: #666; font-size: 0.9em; }}
img {{ max-width: 100%; }} section {{ border-top: 1px solid #ddd; margin-top: 1.5rem; }}
figure {{ margin: 1rem 0; }} figcaption {{ font-size: 0.9em; color: #333; }}
.svg-box {{ overflow-x: auto; }} .svg-box svg {{ max-width: none; }}
td:not(:last-child) {{ white-space: nowrap; }}
nav.toc ol {{ columns: 2; }} nav.toc h2 {{ font-size: 1.1em; }}
</style></head>
<body>
{body}
</body></html>
"""
