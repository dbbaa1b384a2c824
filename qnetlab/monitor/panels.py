"""The monitor's text panels as HTML: the latest values, the running sequences, the
calibration graph, the links and the status line.

Pure functions of a `View` and the monitor's clock, so they are tested without a browser.
Every number goes through the project's one SI formatter (`qnetlab._format.format_value`,
with µ); every string off the wire is escaped before it reaches the page (a publisher's
names and reasons are hostile like any message).
"""

from __future__ import annotations

from html import escape

from qnetlab._format import format_value
from qnetlab.network.telemetry import CalibrationStates, LinkStatistics, SequenceProgress

from .state import Latest, View
from .timeline import TimelineSnapshot, outcome_counts

STYLE = """<style>
table.qm { border-collapse: collapse; width: 100%; font: 13px/1.45 system-ui, sans-serif; }
table.qm th { text-align: left; color: #8e8e8e; font-weight: 500; padding: 2px 10px 2px 0;
              border-bottom: 1px solid #34373d; }
table.qm td { padding: 2px 10px 2px 0; border-bottom: 1px solid #26292f; color: #d8d9da; }
table.qm td.num { font-variant-numeric: tabular-nums; text-align: right; }
h3.qm { font: 600 14px system-ui, sans-serif; color: #d8d9da; margin: 4px 0 6px; }
.qm-ok { color: #73bf69; } .qm-warn { color: #fade2a; } .qm-bad { color: #f2495c; }
.qm-dim { color: #8e8e8e; }
.qm-bar { background: #34373d; height: 8px; border-radius: 4px; overflow: hidden; }
.qm-fill { background: #5794f2; height: 8px; }
.qm-paused { color: #111217; background: #f2495c; font-weight: 700; padding: 0 6px;
             border-radius: 3px; }
.qm-alert { color: #111217; background: #ff9830; padding: 3px 8px; border-radius: 3px;
            margin: 2px 0; font: 600 13px system-ui, sans-serif; }
</style>"""
"""One style sheet for every panel (each Div renders in its own shadow root)."""


def duration(seconds: float) -> str:
    """An age or timeout as people read it: '45 s', '12 min', '5.2 h', '3.1 d' (the SI
    formatter would say '3.6 ks' for an hour)."""
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def shown_value(latest: Latest) -> str:
    """A value with its unit: the pump's state as on/off, everything else SI-prefixed."""
    if latest.kind == "pump_on":
        return format_value(latest.value >= 0.5, "")
    return format_value(latest.value, latest.unit)


def _table(header: list[str], rows: list[str], title: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(rows) if rows else (
        f'<tr><td class="qm-dim" colspan="{len(header)}">no data yet</td></tr>')
    return (f'{STYLE}<h3 class="qm">{escape(title)}</h3>'
            f'<table class="qm"><tr>{head}</tr>{body}</table>')


def values_html(view: View, now: float) -> str:
    """Every series' newest value with its unit and age."""
    rows = [
        f'<tr><td>{escape(item.source)}</td><td>{escape(item.name)}</td>'
        f'<td class="num" data-key="{escape(item.key)}">{escape(shown_value(item))}</td>'
        f'<td class="num qm-dim">{duration(max(now - item.time, 0.0))}</td></tr>'
        for item in view.latest if item.kind not in ("herald_rate", "delivered")
    ]
    return _table(["source", "parameter", "value", "age"], rows, "Latest values")


def _progress_row(progress: SequenceProgress, now: float) -> str:
    fraction = progress.done / progress.total if progress.total else 0.0
    state = progress.state.upper()
    if progress.state == "paused":
        badge = f'<span class="qm-paused">PAUSED</span> {escape(progress.reason)}'
    elif progress.state == "stopped":
        badge = f'<span class="qm-bad">STOPPED</span> {escape(progress.reason)}'
    elif progress.state == "finished":
        badge = f'<span class="qm-ok">{state}</span>'
    else:
        badge = f'<span class="qm-warn">{state}</span>'
    bar = (f'<div class="qm-bar"><div class="qm-fill" '
           f'style="width:{100 * min(max(fraction, 0.0), 1.0):.1f}%"></div></div>')
    return (f'<tr><td>{escape(progress.source)}</td><td>{escape(progress.sequence)}</td>'
            f'<td class="num">{progress.done}/{progress.total}</td><td style="width:30%">'
            f'{bar}</td><td>{escape(progress.label)}</td><td>{badge}</td>'
            f'<td class="num qm-dim">{duration(max(now - progress.time, 0.0))}</td></tr>')


SEQUENCE_ROWS = 8
"""Sequences shown: every active one, then the most recently ended."""
_ACTIVE = ("running", "paused", "resumed")


def sequences_html(view: View, now: float) -> str:
    """The running sequences and the last ones that ended (newest first): steps done, a
    bar, the step, the state (PAUSED with the interlock's reason)."""
    active = [p for p in view.sequences if p.state in _ACTIVE]
    ended = [p for p in view.sequences if p.state not in _ACTIVE]
    shown = active + ended[:max(SEQUENCE_ROWS - len(active), 0)]
    rows = [_progress_row(p, now) for p in shown]
    if len(shown) < len(view.sequences):
        rows.append(f'<tr><td class="qm-dim" colspan="7">and '
                    f'{len(view.sequences) - len(shown)} earlier</td></tr>')
    return _table(["source", "sequence", "steps", "progress", "step", "state", "updated"],
                  rows, "Sequences")


def _state_class(state: str) -> str:
    text = state.lower()
    if any(word in text for word in ("out of spec", "bad", "fail")):
        return "qm-bad"
    if any(word in text for word in ("stale", "never", "unknown")):
        return "qm-warn"
    good = ("in spec", "calibrated", "fresh", "good", "ok")
    return "qm-ok" if any(word in text for word in good) else ""


def _calibration_rows(states: CalibrationStates, now: float) -> list[str]:
    since = max(now - states.time, 0.0)
    rows = []
    for node in states.nodes:
        age = "never" if node.age_s is None else duration(node.age_s + since)
        timeout = "—" if node.timeout_s is None else duration(node.timeout_s)
        rows.append(f'<tr><td>{escape(states.source)}</td><td>{escape(node.name)}</td>'
                    f'<td class="{_state_class(node.state)}">{escape(node.state)}</td>'
                    f'<td class="num">{age}</td><td class="num qm-dim">{timeout}</td></tr>')
    return rows


def calibration_html(view: View, now: float) -> str:
    """Every calibration node of every graph: its state, the age of its calibration (now)
    and its timeout."""
    rows = [row for states in view.calibrations for row in _calibration_rows(states, now)]
    return _table(["source", "node", "state", "age", "timeout"], rows, "Calibration graph")


def _optional(value: float | None, unit: str) -> str:
    return "—" if value is None else escape(format_value(value, unit))


def _link_row(stats: LinkStatistics, now: float) -> str:
    errors = ", ".join(f"{escape(name)}: {count}" for name, count in sorted(stats.errors.items()))
    return (f'<tr><td>{escape(stats.link)}</td><td>{escape(stats.source)}</td>'
            f'<td class="num">{escape(format_value(stats.herald_rate_hz, "Hz"))}</td>'
            f'<td class="num">{stats.delivered}</td>'
            f'<td class="num">{_optional(stats.fidelity, "")}</td>'
            f'<td class="num">{_optional(stats.latency_p50_s, "s")}</td>'
            f'<td class="num">{_optional(stats.latency_p99_s, "s")}</td>'
            f'<td>{errors or "none"}</td>'
            f'<td class="num qm-dim">{duration(max(now - stats.time, 0.0))}</td></tr>')


def links_html(view: View, now: float) -> str:
    """Per link: herald rate, pairs delivered, fidelity, latency and every error counter."""
    rows = [_link_row(stats, now) for stats in view.links]
    return _table(["link", "source", "herald rate", "delivered", "fidelity", "latency p50",
                   "latency p99", "errors", "updated"], rows, "Links")


def _station_row(snap: TimelineSnapshot, station: str) -> str:
    lane = snap.lanes[station]
    current = lane[-1] if lane else None
    pair = "-".join(current.qnus) if current is not None and current.qnus else "nothing"
    since = "—" if current is None else escape(format_value(current.start, "s"))
    changes = sum(1 for span in lane if span.qnus)
    return (f'<tr><td>{escape(snap.source)}</td><td>{escape(station)}</td>'
            f'<td>{escape(pair)}</td><td class="num">{since}</td>'
            f'<td class="num">{changes}</td></tr>')


def bridge_html(snapshots: list[TimelineSnapshot]) -> str:
    """Per bridge station: the pair on its arms now, since when (bridge s), the
    configurations seen; then the requests by outcome."""
    rows = [_station_row(snap, station) for snap in snapshots for station in sorted(snap.lanes)]
    counts = outcome_counts(snapshots)
    summary = ", ".join(f"{outcome}: {count}" for outcome, count in counts.items())
    return (_table(["orchestrator", "station", "connected", "since (bridge)",
                    "configurations"], rows, "Bridge switch")
            + f'<p class="qm-dim" data-key="bridge-requests">requests {escape(summary)}</p>')


def status_html(view: View, malformed: int) -> str:
    """A banner per silent publisher, and the message counts."""
    alerts = "".join(f'<div class="qm-alert">no telemetry from {escape(source)} for '
                     f'{seconds:.0f} s</div>' for source, seconds in view.silent)
    counts = (f'<span class="qm-dim">{view.received} messages received, {malformed} '
              f'malformed dropped, {view.dropped} beyond the monitor\'s bounds dropped'
              f'</span>')
    return f"{STYLE}{alerts}{counts}"
