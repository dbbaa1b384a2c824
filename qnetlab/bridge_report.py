"""`qnetlab bridge`'s report: the timeline figure, the decision logs, the HTML page and JSON.

The timeline of one policy's run (`timeline_figure`) has one row per heralding station: which
QNU pair the switch connects to it over time (a light band), the switch reconfigurations
(black ticks), the settle and re-check before a station heralds (hatched) and the time it
heralds for a request (solid, the pair's colour); below, one line per remote request from its
submission to its OK (green dot) or ERR (red cross), grey while it waits for a station.
Everything is read from the scheduler's decisions (`network.bridge.Decision`), on the
simulation's clock.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from qnetlab.sequences.report import Report, ReportBlock, ReportFigure
from qnetlab.sequences.report_figures import figure_title, si_axis
from qnetlab.sequences.report_provenance import collect_provenance

from ._format import seconds_text as _s

MODE = "time-compressed simulation of the link physics; no instrument processes"
"""What `qnetlab bridge` runs today, said in its output and its report."""
POLICY_LABELS = {"orchestrator": "orchestrator", "round_robin": "round-robin"}
PROFILE = "time-compressed simulation"


@dataclass(frozen=True)
class Span:
    """A bar of the timeline: `start` to `end` s on `station` (or a request's line)."""

    start: float
    end: float
    pair: tuple[str, ...]
    request: str | None = None


@dataclass
class Timeline:
    """What the figure draws, read from a run's decisions."""

    connections: dict[str, list[Span]]
    """station -> the pair connected to its arms, from its reconfiguration on."""
    setups: dict[str, list[Span]]
    """station -> settle and re-check before heralding for a request."""
    heralding: dict[str, list[Span]]
    reconfigurations: dict[str, list[float]]
    requests: list[tuple[str, float, float | None, float, str]]
    """(request, submitted, first assigned or None, closed, 'OK' / 'ERR' / 'open')."""


def read_timeline(decisions: Sequence[Any], stations: Iterable[str], end: float) -> Timeline:
    """The timeline of a run from its decisions (in time order), cut at `end` s."""
    stations = list(stations)
    tl = Timeline({s: [] for s in stations}, {s: [] for s in stations},
                  {s: [] for s in stations}, {s: [] for s in stations}, [])
    connected: dict[str, tuple[float, tuple[str, ...]]] = {}
    serving: dict[str, tuple[float, float, tuple[str, ...], str | None]] = {}
    submitted: dict[str, float] = {}
    assigned: dict[str, float] = {}

    def disconnect(station: str, at: float) -> None:
        old = connected.pop(station, None)
        if old is not None:
            tl.connections[station].append(Span(old[0], at, old[1]))

    def stop(station: str, at: float) -> None:
        run = serving.pop(station, None)
        if run is None:
            return
        start, ready, pair, request = run
        if ready > start:
            tl.setups[station].append(Span(start, min(ready, at), pair, request))
        if at > ready:
            tl.heralding[station].append(Span(ready, at, pair, request))

    for d in decisions:
        if d.action == "RECONFIGURE" and d.station is not None:
            tl.reconfigurations[d.station].append(d.time)
            disconnect(d.station, d.time)
            for other, (_, pair) in list(connected.items()):
                if set(pair) & set(d.qnus):  # a QNU's port goes to one station arm at a time
                    disconnect(other, d.time)
            connected[d.station] = (d.time, tuple(d.qnus))
        elif d.action == "ASSIGN" and d.station is not None:
            stop(d.station, d.time)
            serving[d.station] = (d.time, d.ready_at if d.ready_at is not None else d.time,
                                  tuple(d.qnus), d.request)
            if d.request is not None:
                assigned.setdefault(d.request, d.time)
        elif d.action in ("RELEASE", "SUSPEND") and d.station is not None:
            stop(d.station, d.time)
        if d.request is None:
            continue
        if d.action == "ACK":
            submitted[d.request] = d.time
        elif d.action in ("OK", "ERR", "CANCEL"):
            start = submitted.pop(d.request, d.time)
            outcome = "OK" if d.action == "OK" else "ERR"
            tl.requests.append((d.request, start, assigned.pop(d.request, None), d.time,
                                outcome))
    for station in list(serving):
        stop(station, end)
    for station in list(connected):
        disconnect(station, end)
    for request, start in submitted.items():
        tl.requests.append((request, start, assigned.get(request), end, "open"))
    tl.requests.sort(key=lambda r: (r[1], r[0]))
    return tl


def _colour(pair: tuple[str, ...], pairs: list[tuple[str, ...]]) -> Any:
    """The pair's colour: tab20's strong colours first, then its light ones (a light one
    must not pass for a connection band)."""
    from matplotlib import colormaps

    i = pairs.index(pair) % 20
    return colormaps["tab20"](2 * i if i < 10 else 2 * (i - 10) + 1)


def _short(pair: tuple[str, ...]) -> str:
    """'qnu0-qnu7' -> '0-7' when the names share a prefix (the label must fit a bar)."""
    names = [str(q) for q in pair]
    stems = {n.rstrip("0123456789") for n in names}
    if len(stems) == 1 and all(n[len(next(iter(stems))):] for n in names):
        return "-".join(n[len(next(iter(stems))):] for n in names)
    return "-".join(names)


def timeline_figure(result: Any, stations: Sequence[str], path: Path, mode: str = MODE
                    ) -> ReportFigure:
    """The timeline of one run (module docstring), saved as PNG at `path`; `mode`: what
    ran, for its title."""
    from matplotlib.patches import Patch

    end = max(result.makespan, 1e-9)
    tl = read_timeline(result.decisions, stations, end)
    pairs = sorted({tuple(sorted(s.pair)) for spans in tl.connections.values() for s in spans}
                   | {tuple(sorted(s.pair)) for spans in tl.heralding.values() for s in spans})
    fig = Figure(figsize=(12, 4.6 + 0.7 * len(stations)), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True,
                               gridspec_kw={"height_ratios": [0.7 * len(stations) + 0.6, 3.0]})
    fig.suptitle(figure_title(f"{POLICY_LABELS.get(result.policy, result.policy)} on "
                              f"{result.workload}, seed {result.seed}: {mode}", 110),
                 fontsize=10)
    for row, station in enumerate(stations):
        y = len(stations) - 1 - row
        for span in tl.connections[station]:
            colour = _colour(tuple(sorted(span.pair)), pairs)
            top.broken_barh([(span.start, span.end - span.start)], (y - 0.4, 0.8),
                            facecolors=colour, alpha=0.2, edgecolor="none")
            if span.end - span.start > 0.03 * end:
                top.text((span.start + span.end) / 2, y + 0.3, _short(span.pair),
                         ha="center", va="center", fontsize=7)
        for span in tl.setups[station]:
            top.broken_barh([(span.start, span.end - span.start)], (y - 0.25, 0.5),
                            facecolors="white", edgecolor="0.4", hatch="////", lw=0.5)
        for span in tl.heralding[station]:
            top.broken_barh([(span.start, span.end - span.start)], (y - 0.25, 0.5),
                            facecolors=_colour(tuple(sorted(span.pair)), pairs),
                            edgecolor="none")
        top.vlines(tl.reconfigurations[station], y - 0.45, y + 0.45, colors="black", lw=0.8)
    top.set_yticks(range(len(stations)), list(reversed(stations)))
    top.set_ylim(-0.6, len(stations) - 0.4)
    top.legend(handles=[Patch(facecolor="0.6", alpha=0.2, label="pair connected (labelled)"),
                        Patch(facecolor="white", edgecolor="0.4", hatch="////",
                              label="switch settle, stale-path re-check"),
                        Patch(facecolor="C0", label="heralding for a request (pair colour)"),
                        Patch(facecolor="black", label="switch reconfiguration (tick)")],
               loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=4, fontsize=7, frameon=False)
    herald_spans: dict[str, list[Span]] = {}
    for spans in tl.heralding.values():
        for span in spans:
            herald_spans.setdefault(span.request or "", []).append(span)
    for i, (request, start, _, closed, outcome) in enumerate(tl.requests):
        bottom.hlines(i, start, closed, colors="0.75", lw=1.0)
        for span in herald_spans.get(request, []):
            bottom.hlines(i, span.start, span.end, colors="C0", lw=1.8)
        if outcome == "OK":
            bottom.plot([closed], [i], "o", color="C2", ms=2.5)
        elif outcome == "ERR":
            bottom.plot([closed], [i], "x", color="C3", ms=4)
    bottom.set_ylabel("request (in order of submission)")
    bottom.set_ylim(-1, max(len(tl.requests), 1))
    bottom.set_xlabel("time since the computation's start"
                      + (" (simulated)" if mode == MODE else ""))
    bottom.set_title("remote requests: open (grey), heralding at a station (blue), OK (green "
                     "dot), ERR (red cross)", fontsize=9)
    si_axis(bottom.xaxis, "s")
    bottom.set_xlim(0, end * 1.01)
    fig.savefig(path, dpi=100)
    ok = sum(r[4] == "OK" for r in tl.requests)
    return ReportFigure(path, f"Timeline of the {POLICY_LABELS.get(result.policy)} on "
                              f"{result.workload} (seed {result.seed}; {mode}). Top: one row per "
                              "heralding station: the QNU pair its arms are connected to (light "
                              "band, labelled), the switch settle and stale-path re-checks "
                              "before it heralds (hatched), heralding for a request (solid, the "
                              f"pair's colour), and the "
                              f"{sum(map(len, tl.reconfigurations.values()))} switch "
                              "reconfigurations (black ticks). Bottom: the "
                              f"{len(tl.requests)} remote requests from submission to OK "
                              f"({ok}) or ERR ({len(tl.requests) - ok}), blue while a station "
                              "heralds for them.")


# -- the decision log -------------------------------------------------------------------------
def _clean(value: Any) -> Any:
    """JSON has no inf or NaN: null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_decisions(decisions: Iterable[Any], path: Path) -> None:
    """Every decision with its reason and numbers, one JSON object a line."""
    with path.open("w", encoding="utf-8") as out:
        for d in decisions:
            out.write(json.dumps(_clean(d.as_record()), allow_nan=False) + "\n")


# -- the report -------------------------------------------------------------------------------
def comparison_rows(run: Any) -> tuple[list[str], list[list[str]]]:
    """The comparison table: a column per policy run and the lower bound."""
    policies = list(run.results)
    header = ["", *(POLICY_LABELS.get(p, p) for p in policies), "lower bound"]
    b = run.bound

    def row(label: str, values: list[str], bound: str = "") -> list[str]:
        return [label, *values, bound]

    res = [run.results[p] for p in policies]
    rows = [
        row("makespan", [_s(r.makespan) for r in res],
            f"{_s(b.expected)} ({b.binding.replace('_', ' ')}); every run >= {_s(b.hard)}"),
        row("makespan / lower bound", [f"{r.makespan / b.expected:.2f}" if b.expected > 0
                                       else "" for r in res]),
        row("operations done", [f"{r.operations_done} of {r.operations_total}" for r in res]),
        row("operations failed (ERR)", [str(r.operations_failed) for r in res]),
        row("pairs delivered", [str(r.pairs_delivered) for r in res],
            str(run.workload.pair_demand)),
        row("pairs wasted (expired)", [str(r.pairs_wasted) for r in res]),
        row("switch reconfigurations", [str(r.reconfigurations) for r in res]),
        row("stale paths re-checked", [str(r.rechecks) for r in res]),
    ]
    for station in run.topology.stations:
        rows.append(row(f"utilisation {station}",
                        [f"{100 * r.utilisation.get(station, 0.0):.1f} %" for r in res]))
    for q in ("p50", "p90", "p99", "max"):
        rows.append(row(f"request latency {q}", [_s(r.latency_summary()[q]) for r in res]))
    rows.append(row("errors", [", ".join(f"{k} {v}" for k, v in sorted(r.errors.items()))
                               or "none" for r in res]))
    fidelities = [r.summary()["transfer_fidelity_mean"] for r in res]
    if any(f is not None for f in fidelities):
        rows.append(row("state transfer fidelity (mean)",
                        ["" if f is None else f"{f:.3f}" for f in fidelities]))
    return header, rows


def bridge_report(run: Any, folder: Path, *, mode: str = MODE, about: str | None = None,
                  decision_log: str | None = None) -> tuple[Path, Path]:
    """Write the run's report into `folder`: ``bridge_<workload>.html`` and ``.json``, a
    timeline PNG and a decision log (JSON lines) per policy. (html, json) paths. A run of
    the processes, not the simulation, gives its `mode`, `about` (the first paragraph) and
    `decision_log`, the orchestrator's own log already in the folder (none is written)."""
    folder.mkdir(parents=True, exist_ok=True)
    config, topology, b = run.config, run.topology, run.bound
    simulated = decision_log is None
    figures, logs, timelines = [], {}, {}
    for policy, result in run.results.items():
        png = folder / f"timeline_{policy}.png"
        figures.append(timeline_figure(result, topology.stations, png, mode))
        timelines[policy] = png.name
        logs[policy] = decision_log or f"decisions_{policy}.jsonl"
        if simulated:
            write_decisions(result.decisions, folder / logs[policy])
    primary = run.primary
    paragraphs = [
        about or f"This run is a {MODE}: the "
        f"{' and '.join(POLICY_LABELS.get(p, p) for p in run.results)} scheduling "
        f"{'cores decide as they' if len(run.results) > 1 else 'core decides as it'} would "
        "behind the orchestrator process, and each station's "
        "heralds are drawn from its path's expected rate (network.link_model) on a virtual "
        "clock. No node agent, station or time tagger ran.",
        f"Bridge {config.name} ({config.path}): {len(topology.qnus)} QNUs and "
        f"{len(topology.stations)} heralding stations on one "
        f"{config.switch.ingress_ports} x {config.switch.egress_ports} switch (settle "
        f"{_s(topology.settle_time)}, {config.switch.insertion_loss_db:g} dB a path); stale "
        f"paths (calibrated more than {_s(topology.calibration_lifetime)} before use) are "
        f"re-checked in {_s(topology.recheck_time)}. "
        + ("The paths' ages and arm delays are the config's (calibration.paths): the "
           "simulation does not read them from the calibration store." if simulated else
           "The paths' ages and arm delays are read from the calibration store "
           f"({config.calibration_db}), stale ones re-checked by the stations' taggers."),
        f"Workload {run.workload.name} ({run.workload_path}): "
        f"{len(run.workload.operations)} operations on {len(run.workload.qnus)} QPUs, "
        f"{run.workload.pair_demand} pairs; seed {run.seed}"
        + (" (one seed, one run: the simulation is deterministic)." if simulated else
           " (the world's draws; real time is not repeatable)."),
        f"Lower bound on the expected makespan: {_s(b.expected)} (the "
        f"{b.binding.replace('_', ' ')} bound; critical path {_s(b.critical_path)}, stations "
        f"{_s(b.stations)}, QNUs {_s(b.qnus)}; docs/bridge.md#the-lower-bound). It bounds the "
        f"mean over seeds: one run can beat it by luck. Every run takes at least {_s(b.hard)} "
        "(the deterministic parts and one settle per chain).",
    ]
    header, rows = comparison_rows(run)
    overview = ReportBlock("The run", paragraphs,
                           {"Orchestrator, baseline and lower bound": (header, rows)})
    blocks = [overview]
    for (policy, result), figure in zip(run.results.items(), figures, strict=True):
        blocks.append(ReportBlock(
            f"Timeline: {POLICY_LABELS.get(policy, policy)}",
            [f"Saved beside this page as {timelines[policy]}; every decision with its reason "
             f"in {logs[policy]} ({result.decision_count} decisions, one JSON object a line)."],
            figures=[figure]))
    good, verdict = run.verdict()
    summary: dict[str, Any] = {"mode": mode, "workload": run.workload.name,
                               "bridge": config.name, "seed": str(run.seed)}
    for policy, result in run.results.items():
        summary[f"makespan ({POLICY_LABELS.get(policy, policy)})"] = _s(result.makespan)
    summary["lower bound on the makespan"] = _s(b.expected)
    extra = {
        "mode": mode, "seed": run.seed,
        "bridge": {"name": config.name, "config": str(config.path),
                   "qnus": list(topology.qnus), "stations": list(topology.stations),
                   "switch_ports": dict(topology.switch_ports),
                   "settle_time_s": topology.settle_time,
                   "recheck_time_s": topology.recheck_time,
                   "calibration_lifetime_s": topology.calibration_lifetime,
                   "memory_cutoff_s": topology.memory_cutoff,
                   "calibration_graph_wired": not simulated},
        "workload": {"name": run.workload.name, "file": str(run.workload_path),
                     "operations": len(run.workload.operations),
                     "pairs": run.workload.pair_demand},
        "results": {p: r.summary() for p, r in run.results.items()},
        "lower_bound": {"expected": b.expected, "binding": b.binding,
                        "critical_path": b.critical_path, "stations": b.stations,
                        "qnus": b.qnus, "hard": b.hard},
        "comparison": {p: {"makespan": r.makespan,
                           "over_bound": r.makespan / b.expected if b.expected > 0 else None,
                           "reconfigurations": r.reconfigurations,
                           "complete": r.complete}
                       for p, r in run.results.items()},
        "primary_policy": primary,
        "timelines": timelines, "decision_logs": logs,
    }
    report = Report(title=f"Bridge run: {run.workload.name} on {config.name}",
                    db_path=(Path("none (a simulation keeps no database)") if simulated
                             else Path(config.calibration_db)), good=good,
                    verdict=verdict, summary=summary, blocks=blocks, extra=extra,
                    name=f"bridge_{run.workload.name}",
                    provenance=collect_provenance(config.path, seed=run.seed,
                                                  profile=PROFILE if simulated else mode))
    return report.write(folder)
