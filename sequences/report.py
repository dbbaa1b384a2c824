"""One report per characterization: a self-contained HTML page and a JSON summary.

The HTML page embeds its figures (PNG as base64 data URIs), so it can be mailed or archived
as one file; it opens with the summary a scientist wants first (the verdict, the key values
with their uncertainties, the recommendation), then one section per run: its verdict and
reason, fitted values, where an interrupted run stopped, interlock pauses, tables and figures.
The JSON file carries the same content for scripts (figure paths instead of images).
Both are written next to the lab database, named after the first run they cover.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .analysis import AnalysisResult, FitValue
from .framework import RunResult


@dataclass
class ReportSection:
    """One run in the report."""

    title: str
    run: RunResult | None
    """None for a step that did not run (its `note` says why)."""
    note: str = ""


@dataclass
class Report:
    title: str
    db_path: Path
    good: bool
    verdict: str
    """One line: what the scientist should take away (or why the result is not usable)."""
    summary: dict[str, FitValue | float | str] = field(default_factory=dict)
    sections: list[ReportSection] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    """Further JSON-able content (e.g. the recommended operating point)."""
    figures: list[Path] = field(default_factory=list)
    """Figures of the whole report (PNG), shown after the summary."""
    notes: list[str] = field(default_factory=list)
    """Lines shown after the summary (e.g. what a calibration session did, and why)."""
    tables: dict[str, tuple[list[str], list[list[str]]]] = field(default_factory=dict)
    """Titled tables (header, rows of text) shown after the summary, e.g. the calibrated
    values with their errors and ages."""

    name: str = ""
    """File name stem of the report; default ``<database>_report_run<first run id>``."""

    def stem(self) -> str:
        if self.name:
            return self.name
        first = next((s.run.run_id for s in self.sections if s.run is not None), 0)
        return f"{self.db_path.stem}_report_run{first}"

    def write(self, folder: Path | None = None) -> tuple[Path, Path]:
        """Write ``<stem>.html`` and ``<stem>.json`` (next to the database by default)."""
        folder = folder or self.db_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        html_path, json_path = folder / f"{self.stem()}.html", folder / f"{self.stem()}.json"
        json_path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False))
        html_path.write_text(self.to_html(), encoding="utf-8")
        return html_path, json_path

    # -- JSON -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": str(self.db_path), "good": self.good, "verdict": self.verdict,
            "summary": {k: _json_value(v) for k, v in self.summary.items()},
            "notes": self.notes, "figures": [str(f) for f in self.figures],
            "tables": {title: [dict(zip(header, row, strict=True)) for row in rows]
                       for title, (header, rows) in self.tables.items()},
            "runs": [_section_json(s) for s in self.sections],
            **_clean(self.extra),
        }

    # -- HTML -----------------------------------------------------------------------------
    def to_html(self) -> str:
        e = html.escape
        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(_text(v))}</td></tr>"
                       for k, v in self.summary.items())
        badge = _badge(self.good)
        body = [f"<h1>{e(self.title)}</h1>",
                f"<p class='verdict'>{badge} {e(self.verdict)}</p>",
                f"<p class='meta'>database {e(str(self.db_path))}; written "
                f"{datetime.now(UTC).isoformat(timespec='seconds')}</p>",
                f"<table class='summary'>{rows}</table>"]
        for title, (header, table_rows) in self.tables.items():
            head = "".join(f"<th>{e(h)}</th>" for h in header)
            cells = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>"
                            for row in table_rows)
            body.append(f"<h2>{e(title)}</h2><table><tr>{head}</tr>{cells}</table>")
        if self.notes:
            body.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in self.notes) + "</ul>")
        body += [_figure_html(path) for path in self.figures]
        body += [_section_html(s) for s in self.sections]
        return _PAGE.format(title=e(self.title), body="\n".join(body))


def _section_json(section: ReportSection) -> dict[str, Any]:
    run = section.run
    out: dict[str, Any] = {"title": section.title, "note": section.note}
    if run is not None:
        out.update(run_id=run.run_id, guid=run.guid, status=run.status, points=run.points,
                   stopped_at=run.stopped_at, interlock_events=run.interlock_events,
                   partial_steps=run.partial_steps,
                   analysis=None if run.analysis is None else run.analysis.to_json())
    return _clean(out)


def _section_html(section: ReportSection) -> str:
    e = html.escape
    run = section.run
    parts = [f"<section><h2>{e(section.title)}</h2>"]
    if section.note:
        parts.append(f"<p>{e(section.note)}</p>")
    if run is None:
        return "".join(parts) + "</section>"
    analysis = run.analysis
    verdict = "not analyzed" if analysis is None else str(analysis.verdict)
    good = analysis is not None and analysis.verdict.good
    parts.append(f"<p>{_badge(good)} run {run.run_id} ({e(run.status)}, {run.points} points): "
                 f"{e(verdict)}</p>")
    if run.stopped_at:
        where = run.stopped_at
        parts.append(f"<p class='stop'>stopped at {e(str(where.get('label')))} "
                     f"({where.get('steps_done')} of {where.get('steps_total')} steps done, "
                     f"{where.get('points_saved')} points saved, "
                     f"{where.get('points_of_unfinished_step', 0)} of them from the unfinished "
                     f"step): {e(str(where.get('cause')))}</p>")
    for event in run.interlock_events:
        parts.append(f"<p class='stop'>interlock {e(str(event['interlock']))} paused the pump "
                     f"at step {e(str(event['label']))}: reading {event['reading']:.4g} "
                     f"(max {event['maximum']:.4g}), waited {event['waited']:.0f} s, "
                     f"{e(str(event['outcome']))}</p>")
    if analysis is not None:
        parts.append(_values_html(analysis))
        for name, table in analysis.tables.items():
            parts.append(_table_html(name, table))
        for path in analysis.figures:
            parts.append(_figure_html(Path(path)))
    return "".join(parts) + "</section>"


_FRAGMENT_STYLE = (
    "<style>.qnetlab-result table {border-collapse: collapse; margin: 0.3rem 0;} "
    ".qnetlab-result th, .qnetlab-result td {border: 1px solid #ccc; padding: 0.1rem 0.4rem; "
    "text-align: left;} .qnetlab-result .good {background: #2a7; color: white; "
    "padding: 0.1rem 0.4rem; border-radius: 0.2rem;} .qnetlab-result .bad {background: #c33; "
    "color: white; padding: 0.1rem 0.4rem; border-radius: 0.2rem;} .qnetlab-result .stop "
    "{color: #a50;} .qnetlab-result img {max-width: 40rem;}</style>")


def run_html(run: RunResult, title: str) -> str:
    """One run as an HTML fragment that styles itself (a notebook's repr of a result)."""
    return (f"{_FRAGMENT_STYLE}<div class='qnetlab-result'>"
            f"{_section_html(ReportSection(title, run))}</div>")


def analysis_html(analysis: AnalysisResult) -> str:
    """An analysis result as an HTML fragment: verdict badge, values, tables, figures."""
    e = html.escape
    parts = [f"<p><b>{e(analysis.sequence)}</b> run {analysis.run_id}: "
             f"{_badge(analysis.verdict.good)} {e(str(analysis.verdict))}</p>",
             _values_html(analysis)]
    parts += [_table_html(name, table) for name, table in analysis.tables.items()]
    parts += [_figure_html(Path(path)) for path in analysis.figures]
    return f"{_FRAGMENT_STYLE}<div class='qnetlab-result'>{''.join(parts)}</div>"


def _values_html(analysis: AnalysisResult) -> str:
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>"
                   for k, v in analysis.values.items())
    proposed = "".join(f"<tr><th>{e(k)}</th><td>{v:.6g}</td></tr>"
                       for k, v in analysis.proposed.items())
    out = f"<table>{rows}</table>" if rows else ""
    if proposed:
        out += f"<p>proposed calibration values:</p><table>{proposed}</table>"
    return out


def _table_html(name: str, table: dict[str, list[float]]) -> str:
    e = html.escape
    columns = list(table)
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    rows = "".join("<tr>" + "".join(f"<td>{_number(v)}</td>" for v in values) + "</tr>"
                   for values in zip(*table.values(), strict=False))
    return f"<details><summary>{e(name)}</summary><table><tr>{head}</tr>{rows}</table></details>"


def _figure_html(path: Path) -> str:
    if not path.is_file():
        return f"<p>(figure {html.escape(str(path))} is missing)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img alt='{html.escape(path.name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>")


def _badge(good: bool) -> str:
    return "<span class='good'>GOOD</span>" if good else "<span class='bad'>BAD</span>"


def _number(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.6g}"


def _text(v: FitValue | float | str) -> str:
    return _number(v) if isinstance(v, float) else str(v)


def _json_value(v: FitValue | float | str) -> Any:
    if isinstance(v, FitValue):
        out = {"value": _finite(v.value), "stderr": _finite(v.stderr), "unit": v.unit}
        if v.sys:  # stderr is the combined error; its statistical and systematic parts
            out.update(stat=_finite(v.stat), sys=_finite(v.sys))
        return out
    return _finite(v) if isinstance(v, float) else v


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _clean(value: Any) -> Any:
    """JSON has no NaN: replace non-finite floats with null, recursively."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; }}
table {{ border-collapse: collapse; margin: 0.5rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; }}
.good {{ background: #2a7; color: white; padding: 0.1rem 0.4rem; border-radius: 0.2rem; }}
.bad {{ background: #c33; color: white; padding: 0.1rem 0.4rem; border-radius: 0.2rem; }}
.stop {{ color: #a50; }} .meta {{ color: #666; font-size: 0.9em; }}
img {{ max-width: 100%; }} section {{ border-top: 1px solid #ddd; margin-top: 1.5rem; }}
</style></head>
<body>
{body}
</body></html>
"""
