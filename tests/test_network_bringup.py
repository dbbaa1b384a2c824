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
from collections.abc import Iterator
from pathlib import Path

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
    assert "checked    node_b.optical_resonance: in spec" in out
    assert "node_a." not in out and "CALIBRATED" not in out


@pytest.mark.xfail(strict=False, reason=(
    "equal nominal arms (2 km each): both arms' delay searches contain both nodes' peaks, "
    "so with node_b's photons 98 ns later link.arm_delay_node_a fits node_b's new peak and "
    "link.arm_delay_node_b node_a's unchanged one (measured 2026-12-06); telling the arms "
    "apart needs one node blanked while the other's delay is measured"))
def test_a_fibre_delay_change_is_diagnosed_to_its_arm_and_nothing_else(
        bringup: tuple[int, dict[str, object]], lab: Path) -> None:
    from ruamel.yaml import YAML

    from qnetlab.sequences.calibration import Maintainer
    from qnetlab.sequences.calibration.network_lab import network_calibration

    # The world changes under the lab: 20 m more fibre on node_b's arm (its photons arrive
    # 98 ns later). Only the simulation section knows; the lab's config is the same.
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    document = yaml.load(lab.read_text())
    document["simulation"]["nodes"]["node_b"]["fibre_length_km"] = 2.02
    longer = lab.with_name("two_node_link_longer_b.yaml")  # same folder: same databases
    with longer.open("w") as out:
        yaml.dump(document, out)
    with network_calibration(longer) as session:
        doctor = Maintainer(session.graph, session.ctx)
        assert doctor.diagnose("link.heralding", "the pair rate collapsed")
    assert doctor.recalibrated == ["link.arm_delay_node_b", "link.heralding"]
    # The nodes' and the station's labs were only consulted through their cheap checks,
    # never re-measured.
    checked = {a.node for a in doctor.log if a.operation == "check_data"}
    assert {"link.arm_delay_node_a", "link.arm_delay_node_b"} <= checked
    assert all(a.run is None for a in doctor.log
               if a.node.startswith(("node_", "station.")))
