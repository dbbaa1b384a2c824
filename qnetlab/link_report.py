"""The link's section of a report (`qnetlab bringup`, `qnetlab link`): what was delivered
against what the calibrations predicted, as figures, tables and words.

- the arm-delay histograms (each node's photons' arrival after the sync, per detector) with
  their fitted peaks, from this session's calibration or else the last one kept beside the
  link's database (``arm_delay_<node>.npz``);
- the herald latency histogram against the nodes' memory cutoff (a herald later than the
  cutoff finds its memory dephased: the pair is expired, never delivered);
- the pair rate and the fidelity against the prediction from the calibrated parts, each with
  its one-sigma error, as a table and a figure;
- every error counter with what it counts, in words.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from qnetlab.sequences.report import ReportBlock, ReportFigure
from qnetlab.sequences.report_figures import histogram_with_fit, si_axis
from qnetlab.sequences.si import format_fit, format_value

ERROR_MEANINGS: dict[str, str] = {
    "gaps": "heralds a node found missing from the sequence numbers (a PUB message lost or "
            "delayed) and asked the station to resend",
    "recovered": "of those gaps, heralds the station's history resent in time",
    "duplicates": "heralds a node received twice (a resend crossing the original); ignored",
    "lost": "heralds a node never received, even after every resend attempt",
    "late": "heralds that arrived after a node had given up on them",
    "resend_requests": "requests a node sent to the station for missing heralds",
    "heralds_resent": "heralds the station sent again in answer to those requests",
    "expired": "pairs a node dropped because the herald came after its memory cutoff",
    "station_lost": "times a node stopped hearing the station's heartbeat",
    "station_restarts": "station restarts a node detected (a new incarnation of its "
                        "sequence numbers), after which it resynchronised",
    "resync_heralds": "heralds a node fetched from the station's history when it "
                      "resynchronised",
    "resync_expired": "of those, heralds already past the memory cutoff",
    "tail_gaps": "heralds at the end of a run a node learnt of only from the station's "
                 "attempt counts",
    "malformed": "messages refused as malformed (any process): never acted on",
    "disagreements": "pairs the two nodes did not both confirm: released, not delivered",
    "boundary": "pairs outside the other node's share of the request: released",
    "stale": "confirmations that came too late for the orchestrator's reconcile timeout",
    "err_expired": "pairs a node reported expired to the orchestrator",
    "err_lost": "pairs a node reported lost to the orchestrator",
    "node_restarts": "node agent restarts the orchestrator saw (the request resumed)",
    "node_lost": "times the orchestrator lost contact with a node agent",
}
"""Each error counter of `network.lab.LinkReport.errors`, in words (docs/link.md)."""


@dataclass(frozen=True)
class ArrivalHistogram:
    """One detector's arrival histogram of one node's photons and its fitted peak."""

    node: str
    detector: int
    edges_s: np.ndarray
    counts: np.ndarray
    delay_s: float
    delay_error_s: float
    sigma_s: float
    pairs: float
    background_per_bin: float
    measured: str = "this session"


def arm_histograms(graph: Any, folder: Path) -> list[ArrivalHistogram]:
    """The arrival histograms of the graph's arm-delay nodes: measured in this session
    (and then kept as ``<folder>/arm_delay_<node>.npz`` for a later report), or the last
    ones kept there."""
    out: list[ArrivalHistogram] = []
    for name in graph.order:
        node = graph[name]
        arrivals = getattr(node, "last_arrivals", None)
        if arrivals is None:
            continue
        path = folder / f"arm_delay_{node.node}.npz"
        if arrivals:
            found = [_histogram(node.node, d, *a) for d, a in sorted(arrivals.items())]
            _save(path, found)
        else:
            found = _load(path)
        out += found
    return out


def _histogram(node: str, detector: int, offsets: np.ndarray, nominal_ps: int, half_ps: int,
               bin_ps: int, fit: Any) -> ArrivalHistogram:
    half = (half_ps // bin_ps) * bin_ps
    edges = np.arange(nominal_ps - half, nominal_ps + half + bin_ps, bin_ps, dtype=np.int64)
    counts, _ = np.histogram(offsets, edges)
    # Only the fitted stretch (the peak +- 8 widths) is drawn: the search range is wide.
    keep = np.abs(edges - fit.delay_ps) <= max(8 * fit.sigma_ps, 20 * bin_ps)
    first, last = int(np.argmax(keep)), len(keep) - int(np.argmax(keep[::-1]))
    return ArrivalHistogram(node, detector, edges[first:last] * 1e-12,
                            counts[first:last - 1].astype(float), fit.delay_ps * 1e-12,
                            fit.delay_stderr_ps * 1e-12, fit.sigma_ps * 1e-12, fit.pairs,
                            fit.background_per_bin)


def _save(path: Path, histograms: list[ArrivalHistogram]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {}
    for h in histograms:
        key = f"d{h.detector}"
        arrays[f"{key}_edges"], arrays[f"{key}_counts"] = h.edges_s, h.counts
        arrays[f"{key}_fit"] = np.array([h.delay_s, h.delay_error_s, h.sigma_s, h.pairs,
                                         h.background_per_bin])
    np.savez(path, **arrays)


def _load(path: Path) -> list[ArrivalHistogram]:
    if not path.is_file():
        return []
    node = path.stem.removeprefix("arm_delay_")
    when = "the last calibration (kept beside the link database)"
    out = []
    with np.load(path) as data:
        for d in sorted({int(k.split("_")[0][1:]) for k in data.files}):
            delay, error, sigma, pairs, background = (float(x) for x in data[f"d{d}_fit"])
            out.append(ArrivalHistogram(node, d, data[f"d{d}_edges"], data[f"d{d}_counts"],
                                        delay, error, sigma, pairs, background, when))
    return out


def _peak_model(h: ArrivalHistogram, merge: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """Counts per (`merge` fine) bins of the fitted peak at t - delay (t in s)."""
    width = float(h.edges_s[1] - h.edges_s[0])

    def model(t: np.ndarray) -> np.ndarray:
        gauss = np.exp(-0.5 * (t / h.sigma_s) ** 2) / (h.sigma_s * math.sqrt(2 * math.pi))
        return merge * (h.background_per_bin + h.pairs * width * gauss)
    return model


DISPLAY_BINS = 60
"""Bins an arrival histogram is drawn with (the calibration's 10 ps bins hold a click or two
each: summed for the eye; the fit was made on the fine ones)."""


def _rebinned(h: ArrivalHistogram) -> tuple[np.ndarray, np.ndarray, int]:
    """(edges, counts, bins merged) with about `DISPLAY_BINS` bins."""
    merge = max(1, h.counts.size // DISPLAY_BINS)
    n = (h.counts.size // merge) * merge
    return h.edges_s[:n + 1:merge], h.counts[:n].reshape(-1, merge).sum(axis=1), merge


def _arm_figure(histograms: list[ArrivalHistogram], path: Path) -> ReportFigure:
    columns = min(len(histograms), 2)
    rows = math.ceil(len(histograms) / columns)
    fig = Figure(figsize=(6 * columns, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, h in zip(axes, histograms, strict=False):
        edges, counts, merge = _rebinned(h)
        # Drawn against the fitted delay (in the title), so the ticks read '-5 ns', '0 s'.
        histogram_with_fit(ax, edges - h.delay_s, counts, unit="s",
                           model=_peak_model(h, merge),
                           fit_label="fit: Gaussian peak on a flat background")
        ax.set_title(f"{h.node}, detector {h.detector}: delay "
                     f"{format_fit(h.delay_s, h.delay_error_s, 's')}, width "
                     f"{format_value(float(f'{h.sigma_s:.3g}'), 's')} rms", fontsize=9)
        ax.set_xlabel("arrival after the round's sync, minus the fitted delay")
    for ax in axes[len(histograms):]:
        ax.set_visible(False)
    fig.savefig(path, dpi=100)
    whens = sorted({h.measured for h in histograms})
    return ReportFigure(path, "Arm delays: each node's photon arrivals after the sync tag "
                              "of their round, per detector, with the fitted peak (Gaussian on "
                              "a flat background, Poisson likelihood); the titles give the "
                              f"fitted delay and its error. Measured in {', '.join(whens)}.")


def _short(seconds: float) -> str:
    """A time to 3 significant digits with an SI prefix: '5.17 ms'."""
    return format_value(float(f"{seconds:.3g}"), "s")


def _latency_figure(report: Any, cutoff_s: float, path: Path) -> ReportFigure | None:
    lat = np.asarray(report.latency_s, float)
    lat = lat[np.isfinite(lat) & (lat > 0)]
    if not lat.size:
        return None
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.subplots()
    lo = min(float(lat.min()), cutoff_s) / 2
    hi = max(float(lat.max()), cutoff_s) * 2
    edges = np.geomspace(lo, hi, 60)
    counts, _ = np.histogram(lat, edges)
    median, p99 = np.percentile(lat, [50, 99])
    histogram_with_fit(ax, edges, counts, unit="s",
                       mark={f"median {_short(float(median))}": float(median),
                             f"99th percentile {_short(float(p99))}": float(p99),
                             f"memory cutoff {_short(cutoff_s)}": cutoff_s})
    ax.set_xscale("log")
    si_axis(ax.xaxis, "s")
    ax.set_xlabel("herald latency: station decision to the later node's receipt")
    ax.set_ylabel("heralds per bin")
    fig.savefig(path, dpi=100)
    return ReportFigure(path, f"Herald latency of {lat.size} heralds heard by both nodes "
                              "(station decision to the later node agent's receipt, "
                              "logarithmic bins), against the nodes' memory cutoff: a herald "
                              "later than the cutoff expires its pair.")


@dataclass(frozen=True)
class Comparison:
    """A measured quantity against its prediction."""

    name: str
    unit: str
    measured: float
    measured_error: float
    expected: float
    expected_error: float

    @property
    def z(self) -> float:
        """(measured - expected) / combined sigma; NaN when either is unknown."""
        sigma = math.hypot(self.measured_error, self.expected_error)
        if not (math.isfinite(self.measured) and sigma > 0):
            return math.nan
        return (self.measured - self.expected) / sigma

    def row(self) -> list[str]:
        def shown(v: float, e: float) -> str:
            if not math.isfinite(v):
                return "not measured"
            return format_fit(v, e, self.unit) if math.isfinite(e) and e > 0 else \
                format_value(v, self.unit)

        z = self.z
        return [self.name, shown(self.measured, self.measured_error),
                shown(self.expected, self.expected_error),
                "" if not math.isfinite(z) else f"{z:+.1f} \N{GREEK SMALL LETTER SIGMA}"]


def comparisons(delivery: Any) -> list[Comparison]:
    r = delivery.report
    rate_err = r.rate_hz / math.sqrt(r.delivered) if r.delivered else math.nan
    out = [Comparison("pair rate (pairs/s)", "Hz", r.rate_hz, rate_err, delivery.expected_rate,
                      getattr(delivery, "expected_rate_error", math.nan))]
    truth = delivery.truth
    out.append(Comparison(
        "fidelity" + (" (simulation ground truth)" if truth is not None else ""), "",
        truth.fidelity_mean if truth is not None else math.nan,
        truth.fidelity_stderr if truth is not None else math.nan,
        delivery.expected_fidelity, getattr(delivery, "expected_fidelity_error", math.nan)))
    return out


def _comparison_figure(rows: list[Comparison], path: Path) -> ReportFigure:
    fig = Figure(figsize=(8, 2.8), layout="constrained")
    axes = fig.subplots(1, len(rows), squeeze=False)[0]
    for ax, c in zip(axes, rows, strict=True):
        for y, v, e, colour in ((1, c.measured, c.measured_error, "C0"),
                                (0, c.expected, c.expected_error, "C1")):
            if math.isfinite(v):
                ax.errorbar([v], [y], xerr=[[e if math.isfinite(e) else 0.0]] * 2, fmt="o",
                            color=colour, capsize=4)
        ax.set_yticks([0, 1], ["predicted", "measured"])
        ax.set_ylim(-0.7, 1.7)
        ax.set_title(c.name, fontsize=9)
        if c.unit:
            si_axis(ax.xaxis, c.unit)
        ax.margins(x=0.3)
    fig.savefig(path, dpi=100)
    return ReportFigure(path, "The delivered pair rate and the pairs' fidelity (one-sigma "
                              "error bars) against the prediction from the calibrated parts "
                              "(its one-sigma error from the calibrations' errors). A fidelity "
                              "is only known on the simulated profile (its ground truth): a "
                              "real link's takes state tomography.")


def link_block(config: Any, delivery: Any, folder: Path, stem: str,
               histograms: list[ArrivalHistogram] | None = None,
               run_id: int | None = None) -> ReportBlock:
    """The link section (module docstring); its figures saved as ``<stem>_*.png`` in
    `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    r = delivery.report
    a, b = config.link.nodes
    agree = r.agreement
    paragraphs = [f"Link {config.link.id} ({config.link.scheme} scheme) between {a} and {b} "
                  f"over {config.nodes[a].fibre_length_km:g} km + "
                  f"{config.nodes[b].fibre_length_km:g} km of fibre (nominal), profile "
                  f"{delivery.profile}: {r.delivered} of {r.requested} pairs delivered "
                  f"(counted from the {r.delivered_from}); both nodes agree: {agree}."]
    if delivery.trouble or r.failed:
        paragraphs.append(f"Trouble: {delivery.trouble or r.failed}.")
    figures: list[ReportFigure] = []
    if histograms:
        figures.append(_arm_figure(histograms, folder / f"{stem}_arm_delays.png"))
    else:
        paragraphs.append("No arm-delay histogram to show: the arm delays were not measured "
                          "in this session and none was kept from an earlier one.")
    cutoff = min(config.nodes[n].memory_cutoff for n in (a, b))
    latency = _latency_figure(r, cutoff, folder / f"{stem}_latency.png")
    if latency is not None:
        figures.append(latency)
    rows = comparisons(delivery)
    figures.append(_comparison_figure(rows, folder / f"{stem}_rate_fidelity.png"))
    tables = {"Rate and fidelity against the prediction":
              (["quantity", "delivered", "predicted from the calibrations", "difference"],
               [c.row() for c in rows]),
              "Herald latency": (["measured from", "median", "99th percentile", "max",
                                  "heralds"], _latency_rows(r)),
              "Error counters": (["counter", "count", "what it counts"],
                                 [[k, str(v), ERROR_MEANINGS.get(k, "(not described)")]
                                  for k, v in r.errors.items()])}
    if r.clock:
        tables["Clock synchronisation"] = (
            ["node", "offset residual (rms)", "one-way delay"],
            [[n, format_value(c["residual_rms_s"], "s"), format_value(c["delay_s"], "s")]
             for n, c in r.clock.items()])
    data: dict[str, Any] = {
        "delivered": int(r.delivered), "requested": int(r.requested),
        "comparisons": [{"name": c.name, "unit": c.unit, "measured": c.measured,
                         "measured_error": c.measured_error, "expected": c.expected,
                         "expected_error": c.expected_error, "z": c.z,
                         "measured_text": c.row()[1], "expected_text": c.row()[2]}
                        for c in rows],
        "errors": {k: int(v) for k, v in r.errors.items()},
        "memory_cutoff_s": cutoff,
        "arm_delays": [{"node": h.node, "detector": h.detector, "delay_s": h.delay_s,
                        "delay_error_s": h.delay_error_s, "sigma_s": h.sigma_s,
                        "text": format_fit(h.delay_s, h.delay_error_s, "s")}
                       for h in histograms or []]}
    if run_id is not None:
        data["run_ids"] = [f"link run {run_id}"]
    return ReportBlock("Link", paragraphs, tables, figures, data)


def _latency_rows(report: Any) -> list[list[str]]:
    rows = []
    for label, name in (("tag block at the station", "block_latency_s"),
                        ("station hand-off", "handoff_latency_s"),
                        ("herald timestamp (decision)", "latency_s")):
        lat = np.asarray(getattr(report, name, np.zeros(0)), float)
        if len(lat):
            median, p99 = np.percentile(lat, [50, 99])
            rows.append([label, _short(float(median)), _short(float(p99)),
                         _short(float(lat.max())), str(len(lat))])
    return rows


def kept_histograms(folder: Path, nodes: Any) -> list[ArrivalHistogram]:
    """The arrival histograms the last arm-delay calibrations kept in `folder`."""
    return [h for node in nodes for h in _load(folder / f"arm_delay_{node}.npz")]


def link_report(config: Any, delivery: Any, db: Path) -> Any:
    """`qnetlab link`'s own report (HTML + JSON beside the link's database `db`): the link
    section with the arm delays the calibration kept, and the provenance."""
    import time

    from qnetlab.sequences.report import Report
    from qnetlab.sequences.report_provenance import collect_provenance

    stem = f"link_{time.strftime('%Y%m%d-%H%M%S')}"
    block = link_block(config, delivery, db.parent, stem,
                       kept_histograms(db.parent, config.link.nodes), delivery.run_id)
    r = delivery.report
    verdict = (f"{r.delivered} of {r.requested} pairs delivered" if delivery.ok else
               f"not delivered as asked: {delivery.trouble or r.failed or 'see the counters'}")
    seed = (config.simulation or {}).get("seed") if delivery.profile == "sim" else None
    return Report(title=f"Link run: {Path(config.path).name}", db_path=db, good=delivery.ok,
                  verdict=verdict, summary={"pairs delivered": f"{r.delivered} of "
                                                               f"{r.requested}"},
                  blocks=[block], name=stem,
                  provenance=collect_provenance(config.path, seed=seed,
                                                profile=delivery.profile))
