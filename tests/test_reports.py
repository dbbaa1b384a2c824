"""Reports people want to read (issue 14, item 3): their structure, not their pixels.

The HTML page has a table of contents whose links all land, a provenance block (version,
commit, config path and SHA-256, seed, profile, run ids, time, host) in HTML and JSON, a
caption on every figure saying what it shows, SI prefixes (``µ``, never ``u``); the shared
curve fit draws 1- and 2-sigma bands and a residual panel; the efficiency map is a colour mesh;
the calibration graph is SVG with its nodes coloured by state and a legend; the link section
explains every error counter. Runs are real runs of the simulated bench through the drivers;
the calibration graph is a small lab of stand-in calibrations (as in
tests/test_calibration_graph.py). The whole bring-up's report: tests/test_network_bringup.py.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from matplotlib.collections import PolyCollection, QuadMesh

from qnetlab.bringup_report import node_states, story
from qnetlab.link import Delivery
from qnetlab.link_report import ERROR_MEANINGS, ArrivalHistogram, link_block
from qnetlab.network import LinkReport
from qnetlab.sequences.calibration import (
    CalibrationGraph,
    CalibrationNode,
    CalibrationOutcome,
    CheckOutcome,
    DataResult,
    LabContext,
    Maintainer,
    Scope,
)
from qnetlab.sequences.calibration.graph_svg import FONT_PX, STATE_COLOURS, graph_svg
from qnetlab.sequences.curve_analysis import CurveAnalysis, CurveData, Param
from qnetlab.sequences.data import load_run
from qnetlab.sequences.fitting import weighted_least_squares
from qnetlab.sequences.report import Report, ReportBlock, ReportFigure, ReportSection
from qnetlab.sequences.report_provenance import collect_provenance
from qnetlab.sequences.transducer.efficiency import EfficiencyMap
from qnetlab.sequences.transducer.efficiency_map_figure import MAX_TICKS, grid_of
from qnetlab.sequences.transducer.optical_resonance import OpticalResonanceScan
from qnetlab.sim_instruments.physics.presets import PRESETS

from conftest import bench_config

SVG = "{http://www.w3.org/2000/svg}"
SIGMA = "\N{GREEK SMALL LETTER SIGMA}"
ONE_SIGMA, TWO_SIGMA = f"fit ± 1{SIGMA}", f"fit ± 2{SIGMA}"


# -- a real run on the simulated bench -------------------------------------------------------
@pytest.fixture(scope="module")
def bench_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An optical resonance scan (a curve fit) and an efficiency map on the simulated bench."""
    from qnetlab.instruments.station import load_station

    folder = tmp_path_factory.mktemp("bench")
    config = bench_config(folder, "bulk_eo_cw")
    station = load_station(config)
    try:
        f_mw = PRESETS["bulk_eo_cw"].model.mw_resonance_frequency
        db = folder / "lab.db"
        optical = OpticalResonanceScan(mw_frequency=f_mw).run(station, db, quiet=True)
        emap = EfficiencyMap(mw_frequency=f_mw).run(station, db, quiet=True)
    finally:
        station.close()
    return {"config": config, "db": db, "optical": optical, "map": emap}


class _Ids(HTMLParser):
    """Every id, every in-page link, every figure and its caption of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.links: list[str] = []
        self.figures = 0
        self.captions: list[str] = []
        self._in_caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "a" and str(a.get("href", "")).startswith("#"):
            self.links.append(str(a["href"])[1:])
        self.figures += tag == "figure"
        if tag == "figcaption":
            self._in_caption = True
            self.captions.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data: str) -> None:
        if self._in_caption:
            self.captions[-1] += data


def test_a_report_has_contents_provenance_captions_and_si_values(
        bench_runs: dict[str, Any], tmp_path: Path) -> None:
    from qnetlab.sequences.analysis import FitValue

    config: Path = bench_runs["config"]
    svg = tmp_path / "graph.svg"
    svg.write_text('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" '
                   'width="10" height="10"></svg>')
    report = Report(
        "t", bench_runs["db"], True, "good",
        summary={"power": FitValue(2.0e-6, 1.0e-7, "W"), "bias": FitValue(9.9e-6, 0.0, "A")},
        sections=[ReportSection("optical resonance", bench_runs["optical"]),
                  ReportSection("efficiency map", bench_runs["map"], lab="bench")],
        figures=[ReportFigure(svg, "The calibration graph.")],
        notes=["bench.dark_counts was calibrated because it was never calibrated."],
        tables={"Calibrated values now": (["value", "now"], [["x", "1 µW"]])},
        blocks=[ReportBlock("Link", ["one paragraph"], data={"run_ids": ["link run 3"]})],
        provenance=collect_provenance(config, seed=1, profile="sim"), name="report")
    page, summary_path = report.write(tmp_path)
    text = page.read_text(encoding="utf-8")
    parsed = _Ids()
    parsed.feed(text)
    # The contents list every section, and every link lands on one.
    titles = ["Summary", "Calibrated values now", "What was done", "Figures", "Link",
              "optical resonance", "efficiency map", "Provenance"]
    assert len(parsed.links) == len(titles) and set(parsed.links) <= set(parsed.ids)
    assert len(set(parsed.ids)) == len(parsed.ids)
    # Every figure has a caption that says what it shows, never its file name.
    assert parsed.figures == len(parsed.captions) == 1 + sum(
        len(r.analysis.figures) for r in (bench_runs["optical"], bench_runs["map"]))
    assert all(len(c) > 40 and ".png" not in c for c in parsed.captions[1:])
    assert any("two-sigma" in c for c in parsed.captions)
    assert any("colour map" in c for c in parsed.captions)
    assert "<svg" in text and "<?xml" not in text  # inline, as HTML allows
    # Numbers with SI prefixes, never 'u' for micro or a bare '+-'.
    assert "2.00 ± 0.10 µW" in text and "9.9 µA" in text
    head = text.split("<section id='optical")[0]
    assert " uW" not in text and " uA" not in text and "+-" not in head
    summary = json.loads(summary_path.read_text())
    assert summary["summary"]["power"] == {"value": 2.0e-6, "stderr": 1.0e-7, "unit": "W",
                                           "text": "2.00 ± 0.10 µW"}
    assert summary["contents"] == titles
    assert summary["captions"] == [parsed.captions[0].removeprefix("Figure 1. ")]
    run = summary["runs"][0]
    assert set(run["value_texts"]) == set(run["analysis"]["values"])
    assert all(" ± " in text for text in run["value_texts"].values())
    assert len(run["captions"]) == len(run["analysis"]["figures"])
    # Provenance: the same block in both files, with the config's hash.
    prov = summary["provenance"]
    assert prov["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert prov["config_path"] == str(config.resolve())
    assert prov["seed"] == 1 and prov["profile"] == "sim" and prov["host"]
    assert prov["version"] and prov["created"].endswith("+00:00")
    assert prov["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", prov["commit"])
    assert prov["run_ids"] == [str(bench_runs["optical"].run_id),
                               f"bench run {bench_runs['map'].run_id}", "link run 3"]
    provenance_html = text.split("id='provenance'")[1]
    for value in (prov["config_sha256"], prov["created"], "sim", "link run 3"):
        assert value in provenance_html


def test_the_shared_curve_fit_draws_1_and_2_sigma_bands_and_normalised_residuals(
        bench_runs: dict[str, Any]) -> None:
    run = bench_runs["optical"]
    from qnetlab.sequences.transducer.optical_resonance import OpticalResonanceAnalysis

    analysis = OpticalResonanceAnalysis()
    stored = load_run(run.run_id, bench_runs["db"])
    result = analysis.analyze(stored)
    (fig,) = analysis.plot(stored, result).values()
    data_ax, res_ax = fig.axes[:2]
    bands = {c.get_label(): c for c in data_ax.collections if isinstance(c, PolyCollection)}
    assert {ONE_SIGMA, TWO_SIGMA} <= set(bands)
    # The 2-sigma band lies around the 1-sigma band.
    one, two = (np.ptp(bands[k].get_paths()[0].vertices[:, 1]) for k in (ONE_SIGMA,
                                                                           TWO_SIGMA))
    assert two > one > 0
    assert "residual" in res_ax.get_ylabel() and res_ax.get_position().y1 < \
        data_ax.get_position().y0
    # The residual panel shows one normalised residual per fitted point.
    (points,) = [line for line in res_ax.get_lines() if line.get_linestyle() == "None"]
    last = analysis.last_fit
    assert last is not None and len(points.get_ydata()) == last[1].x.size
    # y in SI prefixes: 'nW' on the ticks, the unit out of the label.
    fig.canvas.draw()
    ticks = [t.get_text() for t in data_ax.get_yticklabels()]
    assert any(t.endswith("nW") for t in ticks) and "(W)" not in data_ax.get_ylabel()


class _Line(CurveAnalysis):
    """y = a + b x: its band is known in closed form."""

    params = (Param("a"), Param("b"))

    def model(self, x: np.ndarray, *p: float) -> np.ndarray:
        return p[0] + p[1] * x

    def guess(self, data: CurveData) -> list[float]:
        return [0.0, 1.0]


def test_the_band_propagates_the_covariance_through_the_model() -> None:
    rng = np.random.default_rng(3)
    x = np.linspace(0.0, 10.0, 30)
    sigma = np.full(x.size, 0.5)
    fit = weighted_least_squares(_Line().model, x, 1.0 + 2.0 * x + rng.normal(0, 0.5, x.size),
                                 sigma, [0.0, 1.0], ("a", "b"))
    at = np.array([-5.0, 0.0, 5.0, 20.0])
    _, band = _Line().band(fit, at)
    jac = np.stack([np.ones_like(at), at], axis=1)
    expected = np.sqrt(np.einsum("ik,kl,il->i", jac, fit.covariance, jac))
    assert band == pytest.approx(expected, rel=1e-5)


def test_the_efficiency_map_is_a_colour_mesh_with_readable_si_ticks(
        bench_runs: dict[str, Any]) -> None:
    run = bench_runs["map"]
    analysis = EfficiencyMap.analysis_class()
    stored = load_run(run.run_id, bench_runs["db"])
    (fig,) = analysis.plot(stored, analysis.analyze(stored)).values()
    ax_map = fig.axes[0]
    meshes = [c for c in ax_map.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1 and not any(type(c).__name__ == "PathCollection"
                                        for c in ax_map.collections)
    assert meshes[0].colorbar is not None
    fig.canvas.draw()
    x_ticks = [t.get_text() for t in ax_map.get_xticklabels()]
    y_ticks = [t.get_text() for t in ax_map.get_yticklabels()]
    assert 3 <= len(x_ticks) <= MAX_TICKS
    assert any(t.endswith("MHz") or t.endswith("GHz") for t in x_ticks)
    assert any(t.endswith("mW") for t in y_ticks)
    assert not any("e-" in t or "e+" in t for t in x_ticks + y_ticks)
    # The labels never overlap: each tick label ends before the next begins.
    boxes = sorted((t.get_window_extent() for t in ax_map.get_xticklabels() if t.get_text()),
                   key=lambda b: b.x0)
    assert all(a.x1 <= b.x0 + 1 for a, b in itertools.pairwise(boxes))


def test_an_interrupted_map_leaves_blank_cells() -> None:
    p = np.repeat([1e-3, 2e-3], 3)[:-1]  # the second power's last detuning never measured
    d = np.tile([-1e6, 0.0, 1e6], 2)[:-1]
    powers, detunings, grid = grid_of(p, d, np.arange(5.0))
    assert powers.tolist() == [1e-3, 2e-3] and detunings.tolist() == [-1e6, 0.0, 1e6]
    assert grid[0].tolist() == [0.0, 1.0, 2.0] and math.isnan(grid[1, 2])


# -- the calibration graph -------------------------------------------------------------------
class _Toy(CalibrationNode):
    """Calibrates `world[name]` (fails when ``world[name + '.broken']``)."""

    def __init__(self, name: str, world: dict[str, Any], depends_on: tuple[str, ...] = ()
                 ) -> None:
        super().__init__(name, scope="lab", depends_on=depends_on, timeout=3600.0)
        self.world = world

    def check_data(self, ctx: Any) -> CheckOutcome:
        return CheckOutcome(DataResult.IN_SPEC, "as stored")

    def calibrate(self, ctx: Any) -> CalibrationOutcome:
        if self.world.get(f"{self.name}.broken"):
            return CalibrationOutcome(False, "the fit did not converge")
        return CalibrationOutcome(True, "ok", {self.name: (self.world[self.name], "Hz")})


EDGES = {"dark_counts": (), "efficiency": ("dark_counts",), "mw_resonance": (),
         "optical_resonance": ("mw_resonance",), "transducer": ("optical_resonance",),
         "link": ("efficiency", "transducer")}


@pytest.fixture
def toy(tmp_path: Path) -> tuple[CalibrationGraph, dict[str, Any], LabContext]:
    world: dict[str, Any] = {name: 10.0 + i for i, name in enumerate(EDGES)}
    graph = CalibrationGraph(_Toy(n, world, deps) for n, deps in EDGES.items())
    clock = SimpleNamespace(t=1_000_000.0)
    ctx = LabContext({"lab": Scope("lab", tmp_path / "lab.db")}, clock=lambda: clock.t)
    return graph, world, ctx


def test_the_session_is_told_in_sentences_and_never_calibrated_is_not_a_failure(
        toy: Any) -> None:
    graph, world, ctx = toy
    # A node nobody touched and nobody ever calibrated says so: not 'fail', not 'skipped'.
    first = Maintainer(graph, ctx)
    first.maintain("efficiency")
    states, details = node_states(first)
    assert states["mw_resonance"] == "never calibrated" and "mw_resonance" not in details
    assert states["dark_counts"] == "calibrated" and details["dark_counts"].startswith(
        "calibrated")
    world["optical_resonance.broken"] = True
    session = Maintainer(graph, ctx)
    session.maintain("link")
    lines = story(session)
    assert "mw_resonance was calibrated because it was never calibrated: ok." in lines
    assert ("optical_resonance could not be calibrated because it was never calibrated: the "
            "fit did not converge.") in lines
    assert "transducer was not calibrated: dependency optical_resonance is not good." in lines
    # Sentences, not the terminal's log lines.
    assert not any(line.startswith(("state ", "CALIBRATED")) or "; why:" in line
                   or " -- " in line for line in lines)
    states, details = node_states(session)
    assert states["optical_resonance"] == "failed" and states["dark_counts"] == "fresh"
    assert states["transducer"] == "skipped" and details["transducer"] == "never calibrated"
    assert "fail" not in " ".join(s for n, s in states.items() if n != "optical_resonance")
    assert "2 calibrations were fresh" in lines[-1] and "dark_counts" in lines[-1]


def test_the_graph_is_svg_with_state_colours_a_legend_and_unshrunk_labels(toy: Any) -> None:
    graph, world, ctx = toy
    world["optical_resonance.broken"] = True
    session = Maintainer(graph, ctx)
    session.maintain("link")
    states, details = node_states(session)
    root = ET.fromstring(graph_svg(graph, states, details))
    assert root.tag == f"{SVG}svg" and root.get("font-size") == f"{FONT_PX}px"
    # One font size for every label (nothing shrunk to fit): no text sets its own.
    assert all(t.get("font-size") is None for t in root.iter(f"{SVG}text"))
    nodes = {g.get("data-node"): g for g in root.iter(f"{SVG}g") if g.get("data-node")}
    assert set(nodes) == set(EDGES)
    for name, g in nodes.items():
        rect = g.find(f"{SVG}rect")
        assert rect is not None and rect.get("fill") == STATE_COLOURS[states[name]]
        longest = max(len(t.text or "") for t in g.iter(f"{SVG}text"))
        assert float(rect.get("width", 0)) >= longest * 7.0  # the box holds its text
    assert {g.get("data-state") for g in nodes.values()} == {"calibrated", "failed",
                                                             "skipped"}
    (legend,) = [g for g in root.iter(f"{SVG}g") if g.get("class") == "legend"]
    shown = " ".join(t.text or "" for t in legend.iter(f"{SVG}text"))
    for word in ("calibrated in this session", "failed", "skipped"):
        assert word in shown
    fills = {r.get("fill") for r in legend.iter(f"{SVG}rect")}
    assert {STATE_COLOURS[s] for s in ("calibrated", "failed", "skipped")} <= fills
    edges = [p for p in root.iter(f"{SVG}path") if p.get("marker-end")]
    assert len(edges) == sum(len(d) for d in EDGES.values())


# -- the link section --------------------------------------------------------------------------
COUNTERS = ("gaps", "recovered", "duplicates", "lost", "late", "resend_requests",
            "heralds_resent", "expired", "station_lost", "station_restarts", "resync_heralds",
            "resync_expired", "tail_gaps", "malformed", "disagreements", "boundary", "stale",
            "err_expired", "err_lost", "node_restarts", "node_lost")
"""Every counter `network.lab.read_report` tallies."""


def test_every_error_counter_the_link_reads_is_explained() -> None:
    source = (Path(__file__).resolve().parents[1] / "network" / "lab.py").read_text()
    read = source[source.index("def read_report"):]
    for key in COUNTERS:
        assert f'"{key}"' in read, key  # the list above is read_report's
        assert len(ERROR_MEANINGS[key].split()) >= 4, key


def test_the_link_section_shows_histograms_rates_against_prediction_and_counters(
        tmp_path: Path) -> None:
    from qnetlab.network.network_config import load_network_config

    config = load_network_config(Path(__file__).resolve().parents[1] / "lab_configs"
                                 / "two_node_link.yaml")
    rng = np.random.default_rng(1)
    latency = rng.lognormal(np.log(2e-3), 0.5, 200)
    report = LinkReport(requested=60, delivered=60, rate_hz=30.0, latency_s=latency,
                        errors={k: i for i, k in enumerate(COUNTERS)}, clock={}, failed="",
                        agree=True)
    delivery = Delivery(report, 32.0, 0.56, "", "", "real", None, 5.0, 0.01, 7)
    edges = np.linspace(9.79e-6, 9.81e-6, 101)
    histograms = [ArrivalHistogram(n, d, edges, rng.poisson(5.0, 100).astype(float), 9.8e-6,
                                   1e-10, 1e-9, 300.0, 1.0) for n in ("node_a", "node_b")
                  for d in (0, 1)]
    block = link_block(config, delivery, tmp_path, "t", histograms, delivery.run_id)
    captions = [f.caption for f in block.figures]
    assert [f.path.name for f in block.figures] == ["t_arm_delays.png", "t_latency.png",
                                                    "t_rate_fidelity.png"]
    assert all(f.path.read_bytes()[:4] == b"\x89PNG" for f in block.figures)
    assert "fitted peak" in captions[0] and "memory cutoff" in captions[1]
    _, rows = block.tables["Rate and fidelity against the prediction"]
    assert rows[0][:3] == ["pair rate (pairs/s)", "30.0 ± 3.9 Hz", "32.0 ± 5.0 Hz"]
    assert rows[1][1] == "not measured" and rows[1][2] == "0.560 ± 0.010"
    counters = {row[0]: row for row in block.tables["Error counters"][1]}
    assert set(counters) == set(COUNTERS)
    assert all(row[2] != "(not described)" for row in counters.values())
    latency_rows = block.tables["Herald latency"][1]
    assert latency_rows[0][0].startswith("herald timestamp") and latency_rows[0][1].endswith(
        "ms")
    assert block.data["memory_cutoff_s"] == min(config.nodes[n].memory_cutoff
                                               for n in config.link.nodes)
    assert block.data["run_ids"] == ["link run 7"]
    assert block.data["comparisons"][0]["measured_text"] == "30.0 ± 3.9 Hz"
    assert block.data["comparisons"][0]["z"] == pytest.approx(
        (30.0 - 32.0) / math.hypot(30.0 / math.sqrt(60), 5.0))
