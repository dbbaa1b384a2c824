"""`qnetlab bringup`, its report and `qnetlab calibrate` on the simulated two-node lab.

The shipped configs (two_node_link.yaml and the labs it names: both nodes' and the heralding
station's) are copied into a temp folder with every tcp port moved to free ports, so the lab's
databases, keys and runs land in that folder and nothing collides with another run. The graph's
rules are tested in tests/test_calibration_graph.py, a node lab's faults in
tests/test_calibration_lab.py and the link's in tests/test_link_calibration.py; here: the whole
story from cold, then fresh. The same bring-up on the real profile, against `qnetlab sim serve`
of the network: tests/test_network_rehearsal.py.

One lab for the whole file, brought up from cold once (about a minute on one core: every
calibration of both nodes, the station and the link, then the delivery); under pytest-xdist's
`--dist loadfile` a module fixture is shared only within its file, so everything that needs a
cold bring-up lives here. Each stage is a fixture of its own, so its cost falls on the first
test that needs it (each test keeps its own 120 s timeout):

- `bringup`: from cold. The story (every calibration, 60 pairs delivered, the delivery a QCoDeS
  dataset) and its report (issue 14, item 3): contents, provenance with the config's hash,
  captions, the graph as inline SVG coloured by state, the link section with its histograms,
  rates against the prediction and every error counter explained, the session in sentences.
- `warm`: the same command again, all fresh, only the delivery: the report shows every current
  value with its error, age and timeout.
- `link_report`: `qnetlab link` once more, its own report with the link section; then
  `qnetlab link` stopped by SIGTERM and SIGHUP (exit 130, every process it started gone).
- Then `qnetlab calibrate` (fresh: nothing measured; one node diagnosed) and a fibre change
  diagnosed to its arm.

The tests run in file order and the order matters: the warm bring-up must find the cold one's
calibrations untouched, so the tests that diagnose or recalibrate come last.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qnetlab_subprocess import DEADLINE_S, run_qnetlab

from qnetlab.cli import main
from qnetlab.sequences.calibration.graph_svg import STATE_COLOURS

from conftest import network_lab_on_free_ports

pytestmark = [pytest.mark.slow, pytest.mark.processes]


@dataclass(frozen=True)
class Run:
    """One `qnetlab` command that writes a report: its exit code and the report it wrote."""

    code: int
    json: dict[str, Any]
    html: str
    path: Path
    """The JSON summary (the HTML page beside it)."""


def _run(lab: Path, argv: list[str], pattern: str) -> Run:
    """`qnetlab ARGV` on `lab`, and the one new report matching `pattern` in its lab_data."""
    folder = lab.parent.parent / "lab_data"
    before = set(folder.glob(pattern))
    code = main([argv[0], str(lab), *argv[1:]])
    (summary,) = set(folder.glob(pattern)) - before
    return Run(code, json.loads(summary.read_text()),
               summary.with_suffix(".html").read_text(encoding="utf-8"), summary)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield network_lab_on_free_ports(tmp_path_factory.mktemp("network_lab"))


@pytest.fixture(scope="module")
def bringup(lab: Path) -> Run:
    """The bring-up from cold: every calibration runs, then 60 pairs."""
    return _run(lab, ["bringup", "--pairs", "60", "--quiet"], "bringup_*.json")


@pytest.fixture(scope="module")
def warm(bringup: Run, lab: Path) -> Run:
    """The bring-up again right after the cold one: everything fresh, only the delivery."""
    return _run(lab, ["bringup", "--pairs", "20", "--quiet"], "bringup_*.json")


@pytest.fixture(scope="module")
def link_report(warm: Run, lab: Path) -> Run:
    """`qnetlab link` on the calibrated lab, after both bring-ups."""
    return _run(lab, ["link", "--pairs", "20"], "link_*.json")


# -- from cold ------------------------------------------------------------------------------------


def test_bringup_calibrates_both_nodes_and_the_link_then_delivers(bringup: Run) -> None:
    code, report = bringup.code, bringup.json
    assert code == 0, report["verdict"]
    assert report["good"] is True
    states = report["states"]
    assert isinstance(states, dict) and set(states.values()) == {"calibrated"}
    for lab in ("node_a", "node_b"):
        assert {f"{lab}.{n}" for n in ("dark_counts", "detector_efficiency", "tagger_delays",
                                       "awg_skew", "mw_resonance", "optical_resonance",
                                       "transducer_efficiency", "added_noise",
                                       "link_operating_point")} <= set(states)
    assert {"station.detector_efficiency_ch1", "station.detector_efficiency_ch2",
            "station.dark_counts"} <= set(states)
    assert {"link.arm_delay_node_a", "link.arm_delay_node_b", "link.heralding"} <= set(states)
    summary = report["summary"]
    assert isinstance(summary, dict)
    assert str(summary["pairs delivered"]).startswith("60 of 60, both nodes agree: yes")
    # The sim profile joins the twin's ground truth to the delivered pairs, and says so.
    assert "(simulation ground truth; genuine" in str(summary["mean fidelity"])
    # One report beside its figures: the graph figure and every calibration run's figures,
    # embedded.
    page = bringup.path.with_suffix(".html")
    assert page.parent == Path(str(report["figures"][0])).parent
    assert page.read_text().count("data:image/png;base64,") >= 10
    # Every calibrated value now, with its error, the node that measured it, its age and
    # the node's timeout: what one wants to see each morning.
    values = report["tables"]["Calibrated values now"]
    by_name = {(row["lab"], row["value"]): row for row in values}
    resonance = by_name[("node_a", "optical_resonance_wavelength")]
    assert " ± " in resonance["now"] and resonance["now"].endswith("µm")
    assert resonance["measured by"] == "node_a.optical_resonance"
    assert resonance["timeout"] and resonance["age"].endswith(("s", "min"))
    assert resonance["state"] == "calibrated"
    assert "Calibrated values now" in page.read_text()


def test_the_cold_report_has_contents_provenance_captions_and_the_graph_as_svg(
        bringup: Run, lab: Path) -> None:
    assert bringup.code == 0, bringup.json["verdict"]
    report, page = bringup.json, bringup.html
    anchors = re.findall(r"<a href='#([^']+)'>", page)
    ids = re.findall(r" id='([^']+)'", page)
    assert len(anchors) == len(report["contents"]) and set(anchors) <= set(ids)
    assert {"Summary", "Calibrated values now", "What was done", "Figures", "Link",
            "Provenance"} <= set(report["contents"])
    prov = report["provenance"]
    assert prov["config_sha256"] == hashlib.sha256(lab.read_bytes()).hexdigest()
    assert prov["profile"] == "sim" and isinstance(prov["seed"], int)
    assert any(r.startswith("node_a run ") for r in prov["run_ids"])
    assert any(r.startswith("link run ") for r in prov["run_ids"])
    # Every figure captioned (a numbered caption per figure element), none by file name.
    assert page.count("<figure>") == page.count("<figcaption>Figure ") >= 10
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    assert not any(c.endswith(".png") for c in captions)
    # The graph inline as SVG, every node coloured by its state, with a legend.
    svg = page[page.index("<svg"):page.index("</svg>")]
    states = dict(re.findall(r'data-node="([^"]+)" data-state="([^"]+)"', svg))
    assert set(states) == set(report["states"]) and set(states.values()) == {"calibrated"}
    assert STATE_COLOURS["calibrated"] in svg and 'class="legend"' in svg
    # The session in sentences, not the terminal's log lines.
    notes = report["notes"]
    assert "node_a.dark_counts was calibrated (run 1) because it was never calibrated" in \
        " ".join(notes)
    assert not any(n.startswith(("state ", "CALIBRATED")) or "; why:" in n for n in notes)


def test_the_link_section_has_histograms_rates_against_prediction_and_counters(
        bringup: Run) -> None:
    report, page = bringup.json, bringup.html
    (link,) = [b for b in report["blocks"] if b["title"] == "Link"]
    names = [Path(f["path"]).name for f in link["figures"]]
    assert names[0].endswith("_arm_delays.png")
    assert any(n.endswith("_latency.png") for n in names)
    assert any(n.endswith("_rate_fidelity.png") for n in names)
    assert len(link["arm_delays"]) == 4  # two nodes x two detectors
    assert all(" ± " in a["text"] and a["text"].endswith("µs") for a in link["arm_delays"])
    rows = {r["quantity"]: r for r in link["tables"]["Rate and fidelity against the prediction"]}
    rate = rows["pair rate (pairs/s)"]
    assert " ± " in rate["delivered"] and " ± " in rate["predicted from the calibrations"]
    assert rate["difference"].endswith("\N{GREEK SMALL LETTER SIGMA}")
    assert " ± " in rows["fidelity (simulation ground truth)"]["delivered"]
    counters = link["tables"]["Error counters"]
    assert counters and all(c["what it counts"] != "(not described)" for c in counters)
    assert "memory cutoff" in page and "id='link'" in page


def test_the_delivery_is_a_qcodes_dataset_in_the_links_database(
        bringup: Run, lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qcodes.dataset import load_by_id

    from qnetlab.network import load_network_config
    from qnetlab.sequences.data import open_database

    config = load_network_config(lab)
    db = Path(config.database or config.run_dir / "link.db")
    capsys.readouterr()
    assert main(["runs", "--db", str(db)]) == 0
    listed = [line.split() for line in capsys.readouterr().out.splitlines()[3:]]
    # The cold bring-up's delivery, by the run id its report names (the later deliveries of
    # this file land in the same database).
    (delivery,) = [r for r in bringup.json["provenance"]["run_ids"]
                   if r.startswith("link run ")]
    (link_run,) = [row for row in listed
                   if row[1] == "link" and row[0] == delivery.removeprefix("link run ")]
    with open_database(db) as conn:
        ds = load_by_id(int(link_run[0]), conn=conn)
        data = ds.get_parameter_data()
        summary = json.loads(ds.metadata["qnetlab_link"])
        assert "station:" in ds.metadata["qnetlab_network_config"]
        xr = ds.to_xarray_dataset()  # what plottr and xarray users read
    assert summary["delivered"] == summary["requested"] == 60 and summary["agree"] is True
    pairs = data["attempt_id"]
    assert pairs["attempt_id"].size == 60 and pairs["pair"].size == 60
    assert set(np.unique(data["bell_state"]["bell_state"])) <= {0, 1}
    assert np.all(np.diff(data["herald_time"]["herald_time"]) > 0)
    latency = data["latency"]["latency"]
    assert latency.size >= 60 and np.all(latency > 0)
    assert "attempt_id" in xr


# -- warm, then `qnetlab link` --------------------------------------------------------------------


def test_the_warm_report_shows_every_value_with_error_age_and_timeout(warm: Run) -> None:
    assert warm.code == 0, warm.json["verdict"]
    report = warm.json
    assert report["summary"]["calibrations"].startswith("0 recalibrated, 0 measurements")
    values = report["tables"]["Calibrated values now"]
    assert len(values) > 40
    by_name = {(row["lab"], row["value"]): row for row in values}
    for key in (("node_a", "optical_resonance_wavelength"), ("node_a", "eta_max"),
                ("link", "arm_delay_node_a"), ("station", "dark_count_rate_ch1")):
        row = by_name[key]
        assert " ± " in row["now"], row  # its own error or its stored _error companion
        assert row["age"] and row["timeout"] and row["state"] == "fresh"
    # An error stored as a value of its own is shown with its value, not as a row.
    assert ("node_a", "eta_max_error") not in by_name
    assert not any(row["state"] in ("good", "fail") for row in values)
    # Warm: the arm-delay histograms kept from the cold calibration are shown.
    (link,) = [b for b in report["blocks"] if b["title"] == "Link"]
    assert len(link["arm_delays"]) == 4
    assert "last calibration" in link["figures"][0]["caption"]


def test_qnetlab_link_writes_its_own_report_with_the_link_section(
        link_report: Run, lab: Path) -> None:
    assert link_report.code == 0, link_report.json["verdict"]
    report = link_report.json
    assert report["contents"] == ["Summary", "Link", "Provenance"]
    (block,) = report["blocks"]
    assert len(block["arm_delays"]) == 4 and len(block["figures"]) == 3
    prov = report["provenance"]
    assert prov["config_sha256"] == hashlib.sha256(lab.read_bytes()).hexdigest()
    assert prov["run_ids"] and prov["run_ids"][0].startswith("link run ")
    assert link_report.html.count("data:image/png;base64,") == 3


# -- `qnetlab link` stopped by a signal (on this calibrated lab) ---------------------------------


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found |= {int(p) for p in task.read_text().split()}
    return found


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_signal_stops_link_and_every_process_it_started(bringup: Run, lab: Path,
                                                        signame: str) -> None:
    """`qnetlab link` (its CURVE keys and calibrations from the bring-up: it refuses an
    uncalibrated link) stopped by a signal once it serves: exit 130, no process left."""
    assert bringup.code == 0
    runs = lab.parent.parent / "lab_data" / "runs" / "two_node_link"
    before = set(runs.glob("*"))  # an earlier test's run folders
    link = run_qnetlab("link", str(lab), "--pairs", "1000000")
    # Serving: both node agents have opened their event logs in this run's folder.
    deadline = time.monotonic() + DEADLINE_S

    def logs() -> int:
        return sum(len(list(run.glob("node_*_events.jsonl")))
                   for run in set(runs.glob("*")) - before)

    while not (logs() == 2 and len(_children(link.proc.pid)) >= 4):
        assert link.proc.poll() is None, link.text
        assert time.monotonic() < deadline, f"the link did not start: {link.text}"
        time.sleep(0.05)
    children = _children(link.proc.pid)
    # The station lab's twins serve from a process of their own (qnetlab.station_twin), among
    # the children that must all stop.
    (run,) = set(runs.glob("*")) - before
    ready = json.loads((run / "station_twins_ready.json").read_text())
    assert ready["pid"] in children
    os.kill(link.proc.pid, getattr(signal, signame))
    assert link.finish() == 130, link.text
    # The link's own SIGTERM handler (network._proc.sigterm_as_interrupt) says "interrupted".
    assert re.search(rf"qnetlab: (stopped by {signame}|interrupted)", link.text["err"])
    assert "Traceback" not in link.text["err"]
    deadline = time.monotonic() + DEADLINE_S
    while left := [pid for pid in children if _running(pid)]:
        assert time.monotonic() < deadline, f"processes left running: {left}"
        time.sleep(0.05)


# -- calibrate and diagnose (these may recalibrate: after the warm run) --------------------------


def test_afterwards_calibrate_finds_everything_fresh_and_measures_nothing(
        bringup: Run, lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["calibrate", str(lab), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "0 measurements, 0 recalibrations" in out
    assert "fresh, nothing measured: node_a.dark_counts" in out


def test_calibrate_one_node_and_unknown_names(bringup: Run, lab: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["calibrate", str(lab), "optical_resonance", "--quiet"]) == 2  # ambiguous
    assert "no calibration 'optical_resonance'" in capsys.readouterr().err
    assert main(["calibrate", str(lab), "node_b.optical_resonance", "--diagnose",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    # The diagnosis measures the node and walks back only where the data are out of spec.
    # On the realistic lab (the default) this new session's laser lands anew within its
    # +-0.5 pm repeatability, beyond the check's 0.05 pm: then the node is recalibrated, and
    # only it and what it depends on in node B's lab (on the clean lab it is in spec).
    checked = re.search(r"checked    node_b\.optical_resonance: (in spec|out of spec)", out)
    assert checked is not None, out
    calibrated = set(re.findall(r"CALIBRATED (\S+):", out))
    if checked.group(1) == "in spec":
        assert not calibrated, out
    else:
        assert "node_b.optical_resonance" in calibrated, out
        assert all(name.startswith("node_b.") for name in calibrated), out
    assert "node_a." not in out


def _variant(lab: Path, name: str, *, node_b_km: float, true_b_km: float) -> Path:
    """A copy of the network config beside `lab` (same folder: the same node and station
    labs and their databases) with node_b's nominal spool `node_b_km`, its true fibre
    `true_b_km`, and a link database of its own."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    document = yaml.load(lab.read_text())
    document["network"]["database"] = str(
        Path(document["network"]["database"]).with_name("unequal_arms_link.db"))
    document["nodes"]["node_b"]["fibre_length_km"] = node_b_km
    document["simulation"]["nodes"]["node_b"]["fibre_length_km"] = true_b_km
    # The longer arm's round trip (2 x 2.52 km x 4.9 us/km = 24.7 us) bounds the period.
    document["link"]["attempt_period"] = 2.5e-5
    path = lab.with_name(name)
    with path.open("w") as out:
        yaml.dump(document, out)
    return path


def test_a_fibre_delay_change_is_diagnosed_to_its_arm_and_nothing_else(
        bringup: Run, lab: Path) -> None:
    """node_b's spool is 2.5 km against node_a's 2 km: its photons arrive 2.45 us later, far
    outside node_a's search (+-5 % of 9.8 us = +-490 ns) and not a whole number of rounds
    (12.5 us) away, so each arm-delay search sees only its own node's peak. (With equal arms
    both searches hold both peaks and cannot tell a shift of one arm from the other.)"""
    from qnetlab.sequences.calibration import Maintainer
    from qnetlab.sequences.calibration.network_lab import network_calibration

    assert bringup.code == 0  # the node and station labs calibrated and fresh
    unequal = _variant(lab, "two_node_link_unequal.yaml", node_b_km=2.5, true_b_km=2.5)
    with network_calibration(unequal) as session:
        setup = Maintainer(session.graph, session.ctx)
        assert setup.maintain("link.heralding"), [str(a) for a in setup.log]
        assert set(setup.recalibrated) == {"link.arm_delay_node_a", "link.arm_delay_node_b",
                                           "link.heralding"}
    # The world changes under the lab: 20 m more fibre on node_b's arm (its photons arrive
    # 98 ns later). Only the simulation section knows; the lab's config is the same.
    longer = _variant(lab, "two_node_link_longer_b.yaml", node_b_km=2.5, true_b_km=2.52)
    with network_calibration(longer) as session:
        doctor = Maintainer(session.graph, session.ctx)
        assert doctor.diagnose("link.heralding", "the pair rate collapsed"), [
            str(a) for a in doctor.log]
    assert doctor.recalibrated == ["link.arm_delay_node_b", "link.heralding"], [
        str(a) for a in doctor.log]
    # Nothing else was recalibrated (above). The node labs were consulted without measuring
    # (their operating points follow from stored models); the station's detectors only through
    # their quick checks (the arms and the heralding depend on them), all in spec.
    checked = {a.node for a in doctor.log if a.operation == "check_data"}
    assert {"link.arm_delay_node_a", "link.arm_delay_node_b"} <= checked
    log = "\n".join(str(a) for a in doctor.log)
    assert all(a.run is None for a in doctor.log if a.node.startswith("node_")), log
    station = [a for a in doctor.log if a.node.startswith("station.")]
    assert station and all(a.operation == "check_data" and a.outcome == "in spec"
                           for a in station), log
