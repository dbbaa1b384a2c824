"""`qnetlab bringup` and `qnetlab calibrate` on the simulated two-node lab.

The shipped configs (two_node_link.yaml and the labs it names: both nodes' and the heralding
station's) are copied into a temp folder with every tcp port moved to free ports, so the lab's
databases, keys and runs land in that folder and nothing collides with another run. The graph's
rules are tested in tests/test_calibration_graph.py, a node lab's faults in
tests/test_calibration_lab.py and the link's in tests/test_link_calibration.py; here: the whole
story from cold, then fresh. The same bring-up on the real profile, against `qnetlab sim serve`
of the network: tests/test_network_rehearsal.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qnetlab.cli import main

from conftest import network_lab_on_free_ports

pytestmark = [pytest.mark.slow, pytest.mark.processes]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield network_lab_on_free_ports(tmp_path_factory.mktemp("network_lab"))


@pytest.fixture(scope="module")
def bringup(lab: Path) -> tuple[int, dict[str, object]]:
    code = main(["bringup", str(lab), "--pairs", "60", "--quiet"])
    (report,) = (lab.parent.parent / "lab_data").glob("bringup_*.json")
    return code, json.loads(report.read_text())


def test_bringup_calibrates_both_nodes_and_the_link_then_delivers(
        bringup: tuple[int, dict[str, object]]) -> None:
    code, report = bringup
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
    # One report: the graph figure and every calibration run's figures, embedded.
    html = Path(str(report["figures"][0])).parent  # type: ignore[index]
    (page,) = html.glob("bringup_*.html")
    assert page.read_text().count("data:image/png;base64,") >= 10
    # Every calibrated value now, with its error, the node that measured it, its age and
    # the node's timeout: what one wants to see each morning.
    values = report["tables"]["Calibrated values now"]  # type: ignore[index]
    by_name = {(row["lab"], row["value"]): row for row in values}
    resonance = by_name[("node_a", "optical_resonance_wavelength")]
    assert " ± " in resonance["now"] and resonance["now"].endswith("µm")
    assert resonance["measured by"] == "node_a.optical_resonance"
    assert resonance["timeout"] and resonance["age"].endswith(("s", "min"))
    assert resonance["state"] == "calibrated"
    assert "Calibrated values now" in page.read_text()


def test_afterwards_calibrate_finds_everything_fresh_and_measures_nothing(
        bringup: tuple[int, dict[str, object]], lab: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["calibrate", str(lab), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "0 measurements, 0 recalibrations" in out
    assert "fresh, nothing measured: node_a.dark_counts" in out


def test_calibrate_one_node_and_unknown_names(bringup: tuple[int, dict[str, object]],
                                              lab: Path,
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
        bringup: tuple[int, dict[str, object]], lab: Path) -> None:
    """node_b's spool is 2.5 km against node_a's 2 km: its photons arrive 2.45 us later, far
    outside node_a's search (+-5 % of 9.8 us = +-490 ns) and not a whole number of rounds
    (12.5 us) away, so each arm-delay search sees only its own node's peak. (With equal arms
    both searches hold both peaks and cannot tell a shift of one arm from the other.)"""
    from qnetlab.sequences.calibration import Maintainer
    from qnetlab.sequences.calibration.network_lab import network_calibration

    assert bringup[0] == 0  # the node and station labs calibrated and fresh
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


def test_the_delivery_is_a_qcodes_dataset_in_the_links_database(
        bringup: tuple[int, dict[str, object]], lab: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from qcodes.dataset import load_by_id

    from qnetlab.network import load_network_config
    from qnetlab.sequences.data import open_database

    config = load_network_config(lab)
    db = Path(config.database or config.run_dir / "link.db")
    capsys.readouterr()
    assert main(["runs", "--db", str(db)]) == 0
    listed = [line.split() for line in capsys.readouterr().out.splitlines()[3:]]
    (link_run,) = [row for row in listed if row[1] == "link"]
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
