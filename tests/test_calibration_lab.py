"""The calibration graph maintaining a real node lab (lab_configs/node_a_lab.yaml) on the
simulated bench: from cold, fresh, faults found by diagnose, a failing calibration.

The graph's rules are checked exactly on stand-ins in tests/test_calibration_graph.py and each
node's measurement in tests/test_calibration_nodes.py; here they meet: the real sequences, the
real store, faults injected into the simulated world. The lab's clock is a test clock, so
"a day later" costs nothing. Fault sizes are those of tests/test_calibration_nodes.py (far
outside the lab's spec, far inside the quick checks' reach).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qnetlab.instruments.lab_config import load_config
from qnetlab.sequences.calibration import LabContext, Maintainer, Scope
from qnetlab.sequences.calibration.graph_config import parse_calibration
from qnetlab.sequences.calibration.nodes import lab_graph
from qnetlab.sim_instruments.faults_world import drift_optical_resonance, drop_detector_efficiency

from conftest import REPO

pytestmark = pytest.mark.slow

NODE_A = REPO / "lab_configs" / "node_a_lab.yaml"
LAB = parse_calibration(load_config(NODE_A)).lab
GRAPH = lab_graph(NODE_A)
TOP = f"{LAB}.added_noise"


class Clock:
    def __init__(self) -> None:
        self.t = 2_000_000_000.0

    def __call__(self) -> float:
        return self.t


def context(db: Path, clock: Clock) -> LabContext:
    return LabContext({LAB: Scope(LAB, db, NODE_A)}, quiet=True, clock=clock)


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Maintainer]]:
    """One maintain of the whole graph from cold, into a database the tests copy."""
    db = tmp_path_factory.mktemp("cold") / "node_a.db"
    with context(db, Clock()) as ctx:
        session = Maintainer(GRAPH, ctx)
        assert session.maintain_all(), [str(a) for a in session.log]
    yield db, session


@pytest.fixture
def calibrated(cold: tuple[Path, Maintainer], tmp_path: Path) -> Iterator[tuple[LabContext,
                                                                                Clock]]:
    """The cold-calibrated lab, reopened (stored values applied at start-up)."""
    db = tmp_path / "node_a.db"
    shutil.copy(cold[0], db)
    clock = Clock()
    with context(db, clock) as ctx:
        yield ctx, clock


def test_from_cold_every_node_is_calibrated_once_in_dependency_order(
        cold: tuple[Path, Maintainer]) -> None:
    _, session = cold
    calibrated = session.recalibrated
    assert sorted(calibrated) == sorted(GRAPH.nodes)  # every node, once
    for name in calibrated:
        for dep in GRAPH[name].depends_on:
            assert calibrated.index(dep) < calibrated.index(name), (dep, name)
    assert not [a for a in session.log if a.operation == "check_data"]  # nothing to compare
    assert set(session.states.values()) == {"calibrated"}


def test_with_everything_fresh_maintain_measures_nothing(
        calibrated: tuple[LabContext, Clock]) -> None:
    ctx, clock = calibrated
    clock.t += 600.0
    session = Maintainer(GRAPH, ctx)
    assert session.maintain_all()
    assert session.measured == []
    assert all(a.operation == "check_state" and a.outcome == "pass" for a in session.log)


@pytest.mark.parametrize(("fault", "symptom", "responsible"), [
    (lambda station: drop_detector_efficiency(station, 0.7), "added_noise",
     "detector_efficiency"),
    # N_add is referred to the input, so a detuned pump does not change it; the efficiency
    # is where the drift shows.
    (lambda station: drift_optical_resonance(station, 150e6), "transducer_efficiency",
     "optical_resonance"),
], ids=["detector efficiency drops", "pump laser drifts off resonance"])
def test_diagnose_recalibrates_the_responsible_node_and_below_it_only(
        calibrated: tuple[LabContext, Clock], fault: Any, symptom: str,
        responsible: str) -> None:
    ctx, _ = calibrated
    fault(ctx.station(LAB))
    symptom, responsible = f"{LAB}.{symptom}", f"{LAB}.{responsible}"
    session = Maintainer(GRAPH, ctx)
    assert session.diagnose(symptom, "its value looked wrong"), [str(a) for a in session.log]
    expected = {responsible, *GRAPH.descendants(responsible)} & set(GRAPH.ancestors(symptom))
    assert set(session.recalibrated) == expected, [str(a) for a in session.log]
    assert session.recalibrated[0] == responsible
    # Unrelated nodes: never recalibrated (the timing branch is not even looked at).
    assert not (set(GRAPH.nodes) - expected) & set(session.recalibrated)
    assert not {a.node for a in session.log} & {f"{LAB}.tagger_delays", f"{LAB}.awg_skew"}
    # In spec again: a new session's diagnosis finds nothing to do.
    assert Maintainer(GRAPH, ctx).diagnose(symptom) is False


def test_a_day_later_maintain_finds_a_drift_through_the_cheap_checks(
        calibrated: tuple[LabContext, Clock]) -> None:
    ctx, clock = calibrated
    drift_optical_resonance(ctx.station(LAB), 150e6)
    clock.t += 3 * 24 * 3600.0  # past every timeout
    session = Maintainer(GRAPH, ctx)
    assert session.maintain_all(), [str(a) for a in session.log]
    assert f"{LAB}.optical_resonance" in session.recalibrated
    # Every node whose timeout had passed was checked; only the drifted chain recalibrated.
    stale = {a.node for a in session.log if a.operation == "check_state" and a.outcome == "stale"}
    assert stale and stale <= {a.node for a in session.log if a.operation == "check_data"}
    # the state says what it is, never a bare "fail"
    assert {a.outcome for a in session.log if a.operation == "check_state"} <= {
        "pass", "stale", "dependency changed", "dependency not fresh"}
    assert set(session.recalibrated) <= {f"{LAB}.optical_resonance",
                                         *GRAPH.descendants(f"{LAB}.optical_resonance")}


def test_a_failed_calibration_keeps_the_good_values_and_nothing_downstream_runs(
        calibrated: tuple[LabContext, Clock]) -> None:
    ctx, clock = calibrated
    store = ctx.store(LAB)
    before = {k: v.value for k, v in store.current_values().items()}
    station = ctx.station(LAB)
    # The detector dies (the tagger input stops seeing its pulses), and a day passes.
    station.instrument("tagger").input1.trigger_level(1.5)
    ctx.close()  # ...and the lab is reopened: the dead input must stay dead
    station = ctx.station(LAB)
    station.instrument("tagger").input1.trigger_level(1.5)
    clock.t += 3 * 24 * 3600.0
    session = Maintainer(GRAPH, ctx)
    assert not session.maintain(TOP)
    failed = [n for n, s in session.states.items() if s == "failed"]
    assert failed, [str(a) for a in session.log]
    assert session.states[TOP] == "skipped"
    assert not any(a.node == TOP and a.operation in ("calibrate", "check_data")
                   for a in session.log)
    after = {k: v.value for k, v in store.current_values().items()}
    assert after == before  # nothing committed from the failed calibration
    # The failure is in the store: the next session does not trust the node.
    ok, why = Maintainer(GRAPH, ctx).check_state(failed[0])
    assert not ok and "bad" in why


def test_the_graph_figure_shows_the_session(calibrated: tuple[LabContext, Clock],
                                            tmp_path: Path) -> None:
    ctx, _ = calibrated
    session = Maintainer(GRAPH, ctx)
    session.maintain_all()
    path = tmp_path / "graph.png"
    GRAPH.figure(session.states).savefig(path)
    assert path.stat().st_size > 10_000
