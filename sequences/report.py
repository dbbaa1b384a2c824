"""One report per characterization or bring-up: a self-contained HTML page and a JSON summary.

The HTML page embeds its figures (PNG as base64 data URIs, SVG inline), so it can be mailed
or archived as one file. It opens with the verdict and a table of contents, then the summary
a scientist wants first (the key values with their uncertainties, the recommendation), the
report's tables, what was done (in sentences), its figures (each with a caption), its own
sections (`ReportBlock`, e.g. a link's statistics), one section per run (verdict and reason,
fitted values, where an interrupted run stopped, interlock pauses, tables, figures), and the
provenance (version, commit, config and its SHA-256, seed, profile, run ids, time, host).
The JSON file carries the same content for scripts (figure paths and captions instead of
images; each fitted value as numbers and as the formatted text: a run's ``value_texts``).
Both are written next to the lab database, named after the first run they cover.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .analysis import AnalysisResult, FitValue
from .framework import RunResult
from .report_figures import ReportFigure, figure_caption
from .report_html import (
    FRAGMENT_STYLE,
    PAGE,
    Anchors,
    FigureCounter,
    badge,
    figure_html,
    table_html,
    text,
    text_table_html,
    values_html,
)
from .report_provenance import Provenance, collect_provenance

__all__ = ["Report", "ReportBlock", "ReportFigure", "ReportSection", "analysis_html",
           "run_html"]

Table = tuple[list[str], list[list[str]]]


@dataclass
class ReportSection:
    """One run in the report."""

    title: str
    run: RunResult | None
    """None for a step that did not run (its `note` says why)."""
    note: str = ""
    lab: str = ""
    """The lab whose database holds the run, where a report covers several."""

    def run_label(self) -> str | None:
        """'12', or 'node_a run 12' with a lab; None without a run."""
        if self.run is None:
            return None
        return f"{self.lab} run {self.run.run_id}" if self.lab else str(self.run.run_id)


@dataclass
class ReportBlock:
    """A section of the report's own (not a run): paragraphs, titled text tables, figures
    with captions, and JSON-able data for scripts."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: dict[str, Table] = field(default_factory=dict)
    figures: list[ReportFigure] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return _clean({
            "title": self.title, "paragraphs": self.paragraphs,
            "tables": {t: [dict(zip(h, row, strict=True)) for row in rows]
                       for t, (h, rows) in self.tables.items()},
            "figures": [{"path": str(f.path), "caption": f.caption} for f in self.figures],
            **self.data})


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
    figures: list[Path | ReportFigure] = field(default_factory=list)
    """Figures of the whole report (PNG or SVG), shown after the summary; a bare path gets
    a caption from its file name (`figure_caption`)."""
    notes: list[str] = field(default_factory=list)
    """Sentences shown after the summary (e.g. what a calibration session did, and why)."""
    tables: dict[str, Table] = field(default_factory=dict)
    """Titled tables (header, rows of text) shown after the summary, e.g. the calibrated
    values with their errors and ages."""
    blocks: list[ReportBlock] = field(default_factory=list)
    """Sections of the report's own, shown after the figures (e.g. the link)."""
    provenance: Provenance | None = None
    """Where the report came from; None: collected when written (no config, seed or
    profile known), the run ids from the sections either way."""

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
        self.provenance = self.origin()  # one time and one commit in both files
        json_path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False))
        html_path.write_text(self.to_html(), encoding="utf-8")
        return html_path, json_path

    def origin(self) -> Provenance:
        """The provenance, with the run ids of the sections and blocks."""
        base = self.provenance or collect_provenance()
        runs = [label for s in self.sections if (label := s.run_label()) is not None]
        runs += [str(r) for b in self.blocks for r in b.data.get("run_ids", [])]
        return base.with_run_ids(runs)

    def _figures(self) -> list[ReportFigure]:
        return [f if isinstance(f, ReportFigure) else ReportFigure(Path(f), figure_caption(f))
                for f in self.figures]

    def contents(self) -> list[str]:
        """The section titles in page order (the table of contents)."""
        titles = ["Summary", *self.tables]
        titles += ["What was done"] if self.notes else []
        titles += ["Figures"] if self.figures else []
        titles += [b.title for b in self.blocks] + [s.title for s in self.sections]
        return [*titles, "Provenance"]

    # -- JSON -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        origin = self.origin()
        figures = self._figures()
        return {
            "title": self.title, "created": origin.created,
            "database": str(self.db_path), "good": self.good, "verdict": self.verdict,
            "contents": self.contents(),
            "summary": {k: _json_value(v) for k, v in self.summary.items()},
            "notes": self.notes, "figures": [str(f.path) for f in figures],
            "captions": [f.caption for f in figures],
            "tables": {title: [dict(zip(header, row, strict=True)) for row in rows]
                       for title, (header, rows) in self.tables.items()},
            "blocks": [b.to_json() for b in self.blocks],
            "runs": [_section_json(s) for s in self.sections],
            "provenance": origin.to_json(),
            **_clean(self.extra),
        }

    # -- HTML -----------------------------------------------------------------------------
    def to_html(self) -> str:
        e = html.escape
        anchors, counter = Anchors(), FigureCounter()
        origin = self.origin()
        parts: list[str] = []

        def section(title: str, body: str) -> None:
            parts.append(f"<section id='{anchors.add(title)}'><h2>{e(title)}</h2>{body}"
                         "</section>")

        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(text(v))}</td></tr>"
                       for k, v in self.summary.items())
        section("Summary", f"<table class='summary'>{rows}</table>")
        for title, (header, table_rows) in self.tables.items():
            section(title, text_table_html(header, table_rows))
        if self.notes:
            section("What was done", "".join(f"<p>{e(n)}</p>" for n in self.notes))
        if self.figures:
            section("Figures", "".join(figure_html(f, counter) for f in self._figures()))
        for block in self.blocks:
            section(block.title, _block_html(block, counter))
        for s in self.sections:
            parts.append(_section_html(s, anchors.add(s.title), counter))
        section("Provenance", text_table_html(["", ""], [list(r) for r in origin.rows()])
                .replace("<tr><th></th><th></th></tr>", ""))
        head = [f"<h1>{e(self.title)}</h1>",
                f"<p class='verdict'>{badge(self.good)} {e(self.verdict)}</p>",
                f"<p class='meta'>database {e(str(self.db_path))}; written "
                f"{e(origin.created)} (UTC) on {e(origin.host)}</p>", anchors.nav()]
        return PAGE.format(title=e(self.title), body="\n".join(head + parts))


def _block_html(block: ReportBlock, counter: FigureCounter) -> str:
    e = html.escape
    out = [f"<p>{e(p)}</p>" for p in block.paragraphs]
    for title, (header, rows) in block.tables.items():
        out.append(f"<h3>{e(title)}</h3>{text_table_html(header, rows)}")
    out += [figure_html(f, counter) for f in block.figures]
    return "".join(out)


def _section_json(section: ReportSection) -> dict[str, Any]:
    run = section.run
    out: dict[str, Any] = {"title": section.title, "note": section.note}
    if run is not None:
        a = run.analysis
        out.update(run_id=run.run_id, guid=run.guid, status=run.status, points=run.points,
                   stopped_at=run.stopped_at, interlock_events=run.interlock_events,
                   partial_steps=run.partial_steps,
                   analysis=None if a is None else a.to_json())
        if a is not None:  # beside the analysis as stored (what `analyze` gives again):
            # each value as the report shows it ('2.0 ± 0.1 µW'), each figure's caption
            out.update(value_texts={name: str(v) for name, v in a.values.items()},
                       captions=[figure_caption(f, a.sequence, run.run_id)
                                 for f in a.figures])
    return _clean(out)


def _section_html(section: ReportSection, anchor: str | None = None,
                  counter: FigureCounter | None = None) -> str:
    e = html.escape
    run = section.run
    ident = f" id='{anchor}'" if anchor else ""
    parts = [f"<section{ident}><h2>{e(section.title)}</h2>"]
    if section.note:
        parts.append(f"<p>{e(section.note)}</p>")
    if run is None:
        return "".join(parts) + "</section>"
    analysis = run.analysis
    verdict = "not analyzed" if analysis is None else str(analysis.verdict)
    good = analysis is not None and analysis.verdict.good
    parts.append(f"<p>{badge(good)} run {run.run_id} ({e(run.status)}, {run.points} points): "
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
        parts.append(values_html(analysis))
        for name, table in analysis.tables.items():
            parts.append(table_html(name, table))
        for path in analysis.figures:
            parts.append(figure_html(path, counter, analysis.sequence, run.run_id))
    return "".join(parts) + "</section>"


def run_html(run: RunResult, title: str) -> str:
    """One run as an HTML fragment that styles itself (a notebook's repr of a result)."""
    return (f"{FRAGMENT_STYLE}<div class='qnetlab-result'>"
            f"{_section_html(ReportSection(title, run))}</div>")


def analysis_html(analysis: AnalysisResult) -> str:
    """An analysis result as an HTML fragment: verdict badge, values, tables, figures."""
    e = html.escape
    parts = [f"<p><b>{e(analysis.sequence)}</b> run {analysis.run_id}: "
             f"{badge(analysis.verdict.good)} {e(str(analysis.verdict))}</p>",
             values_html(analysis)]
    parts += [table_html(name, table) for name, table in analysis.tables.items()]
    parts += [figure_html(path, None, analysis.sequence, analysis.run_id)
              for path in analysis.figures]
    return f"{FRAGMENT_STYLE}<div class='qnetlab-result'>{''.join(parts)}</div>"


def _json_value(v: FitValue | float | str) -> Any:
    """A summary value for scripts: a fitted value as numbers (value, stderr, unit; its
    stat and sys parts when it has a systematic part) plus `text`, as the report shows it."""
    if isinstance(v, FitValue):
        out = {"value": _finite(v.value), "stderr": _finite(v.stderr), "unit": v.unit,
               "text": str(v)}
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
