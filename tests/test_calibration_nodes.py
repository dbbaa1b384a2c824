"""The per-node calibrations of a network node's lab (lab_configs/node_*_lab.yaml) on the
simulated bench: config parsing, each node's calibrate / check_data / apply, injected faults,
and start-up with the stored values; and the heralding station's lab
(lab_configs/heralding_station.yaml) calibrating its detectors from cold.

One cold calibration of node A (every node, in graph order) is made once for the module into
a database; tests that change the world copy that database and open a fresh simulated bench
(a new `sim_session`), which has the same hidden parameters (the config's seed) and gets the
stored values applied at start-up, as a lab opened the next morning would.

Statistics. The bench is seeded, so every run is deterministic; the tolerances are the lab's
spec (node_a_lab.yaml), and each fault is sized to exceed it by far more than the quick
check's resolution: a 30 % efficiency drop moves the plateau count rate (~7000 Hz, Poisson
error ~40 Hz in the quick scan) by ~2100 Hz against the 10 % (~700 Hz) allowed; a 150 MHz
optical drift (5 linewidths of the 30 MHz line) moves the resonance by ~1.2 pm against the
0.05 pm allowed, while the quick scan's window (+-250 MHz) still holds the line.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.station import load_station
from qnetlab.sequences.calibration import (
    CalibrationOutcome,
    DataResult,
    LabContext,
    ParameterStore,
    Scope,
)
from qnetlab.sequences.calibration.graph_config import parse_calibration
from qnetlab.sequences.calibration.nodes import SequenceNode, calibration_nodes, lab_graph
from qnetlab.sequences.calibration.startup import open_calibrated_station
from qnetlab.sim_instruments.faults_world import (
    drift_optical_resonance,
    drop_detector_efficiency,
    simulated_bench,
)
from qnetlab.sim_instruments.physics.transducer import SPEED_OF_LIGHT

from conftest import REPO

pytestmark = pytest.mark.slow

NODE_A_SHIPPED = REPO / "lab_configs" / "node_a_lab.yaml"


def _clean_lab_copy(path: Path) -> Path:
    """`path` pinned to the clean lab (``ideal: true``), written beside a temporary folder.
    These tests hold the graph's mechanics (calibrate, check, apply, faults, start-up) to
    exact truths on a bench reopened fresh each time; on the realistic lab a fresh bench's
    laser lands elsewhere within its +-0.5 pm repeatability, ten times the optical check's
    0.05 pm spec, so a reopened bench is rightly out of spec there. The drifting lab's
    maintenance on one bench kept open: tests/test_day_in_the_lab.py."""
    folder = Path(tempfile.mkdtemp(prefix="clean_node_lab"))
    return Path(load_config(path).with_simulation(ideal=True).to_yaml(folder / path.name).path)


NODE_A = _clean_lab_copy(NODE_A_SHIPPED)
NODE_B = REPO / "lab_configs" / "node_b_lab.yaml"
Outcomes = dict[str, CalibrationOutcome]
"""Node entry -> its cold calibration."""
ORDER = ("dark_counts", "tagger_delays", "mw_resonance", "fridge_load", "detector_efficiency",
         "awg_skew", "optical_resonance", "transducer_efficiency", "conversion_bandwidth",
         "pump_heating", "added_noise")


def context(db: Path, config: Path = NODE_A) -> LabContext:
    lab = parse_calibration(load_config(config)).lab
    return LabContext({lab: Scope(lab, db, config)}, quiet=True)


def nodes(config: Path = NODE_A) -> dict[str, SequenceNode]:
    return {n.spec.entry: n for n in calibration_nodes(config)}


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Outcomes]:
    """Node A calibrated from cold, node by node in graph order: its database and outcomes."""
    db = tmp_path_factory.mktemp("node_a") / "node_a.db"
    graph = lab_graph(NODE_A)
    outcomes: Outcomes = {}
    with context(db) as ctx:
        store = ctx.store("node_a")
        for name in graph.order:
            node = graph[name]
            outcome = node.calibrate(ctx)
            store.record_calibration(name, outcome)
            if outcome.good:
                node.apply(ctx, {k: v for k, (v, _) in outcome.values.items()})
            outcomes[name.removeprefix("node_a.")] = outcome
    return db, outcomes


@pytest.fixture
def lab(calibrated: tuple[Path, Outcomes], tmp_path: Path) -> Iterator[LabContext]:
    """A fresh bench of node A with a copy of the calibrated database."""
    db = tmp_path / "node_a.db"
    shutil.copy(calibrated[0], db)
    with context(db) as ctx:
        yield ctx


# -- the configs --------------------------------------------------------------------------------
def test_both_node_labs_declare_the_same_graph_on_their_own_bench() -> None:
    a, b = load_config(NODE_A_SHIPPED), load_config(NODE_B)
    for config, lab in ((a, "node_a"), (b, "node_b")):
        graph = lab_graph(config)
        assert [n.removeprefix(f"{lab}.") for n in graph.order] == list(ORDER)
        assert {n.scope for n in graph.nodes.values()} == {lab}
        assert set(graph[f"{lab}.added_noise"].depends_on) == {
            f"{lab}.transducer_efficiency", f"{lab}.detector_efficiency"}
        assert graph.ancestors(f"{lab}.added_noise")[:2] == [f"{lab}.dark_counts",
                                                             f"{lab}.mw_resonance"]
    assert a.simulation["seed"] != b.simulation["seed"]
    assert a.database != b.database and a.database is not None
    real_a = {i.addresses["real"] for i in a.instruments.values()}
    real_b = {i.addresses["real"] for i in b.instruments.values()}
    assert not real_a & real_b
    assert a.instruments["tagger"].init["data_address"] != \
        b.instruments["tagger"].init["data_address"]


@pytest.mark.parametrize(("old", "new", "message"), [
    ("sequence: optical_resonance_scan", "sequence: optical_resonanse_scan",
     "did you mean 'optical_resonance_scan'"),
    ("depends_on: [dark_counts]", "depends_on: [dark_count]", "unknown node 'dark_count'"),
    ("inputs: {mw_frequency: mw_resonance_frequency}",
     "inputs: {mw_frequency: mw_resonance_frequency, pump_power: eta_max}",
     "does not depend on"),
    ("inputs: {mw_frequency: mw_resonance_frequency}",
     "inputs: {mw_frequency: mw_resonanse_frequency}", "no node of this lab commits"),
    ("check_options: {span: 0.5e9, segments: 1}", "check_options: {spam: 0.5e9}",
     "unknown option 'spam'"),
    ("check_options: {span: 0.5e9, segments: 1}", "check_options: {span: -1.0}",
     "optical_resonance_scan refused them"),
    ("transducer.optical_resonance_wavelength", "transducr.optical_resonance_wavelength",
     "'transducr' is not an instrument"),
    ("eta_max: {relative: 0.1, sigmas: 5}", "eta_min: {relative: 0.1}",
     "unknown committed value 'eta_min'"),
    ("timeout: 3600\n        options: {span", "timeout: -1\n        options: {span",
     "expected a positive number"),
])
def test_config_errors_name_the_file_the_entry_and_the_fix(tmp_path: Path, old: str, new: str,
                                                           message: str) -> None:
    text = NODE_A_SHIPPED.read_text()
    assert old in text
    path = tmp_path / "broken_lab.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        parse_calibration(load_config(path))
    error = str(caught.value)
    assert str(path) in error and "qnetlab.calibration.nodes." in error
    assert message in error and "Fix:" in error


# -- calibrate, check, apply --------------------------------------------------------------------
def test_each_node_calibrates_and_applies_its_values_on_the_bench(
        calibrated: tuple[Path, Outcomes]) -> None:
    db, outcomes = calibrated
    for entry in ORDER:
        outcome = outcomes[entry]
        assert outcome.good, (entry, outcome.detail)
    store = ParameterStore(db)
    values = store.current_values()
    expected = {c.name for n in parse_calibration(load_config(NODE_A)).nodes.values()
                for c in n.commit}
    assert set(values) == expected
    noise = store.current_values("node_a.added_noise")
    assert noise["added_noise_intrinsic"].run_id is not None
    assert noise["added_noise_intrinsic"].unit == "photons"
    # The station opened on the stored values (a new bench: same seed, so same truth).
    with open_calibrated_station(NODE_A, "sim", store) as station:
        bench = simulated_bench(station)
        truth = bench.world.transducer
        optical = values["optical_resonance_wavelength"].value
        # 5 pm-class agreement would be luck; the scan's standard error is sub-fm here.
        assert optical == pytest.approx(truth.optical_resonance_wavelength, abs=0.05e-12)
        assert values["mw_resonance_frequency"].value == pytest.approx(
            truth.mw_resonance_frequency, abs=0.2e6)
        assert station.setup is not None
        assert station.setup.optical_resonance_wavelength() == optical
        assert station.setup.mw_frequency() == pytest.approx(
            values["mw_resonance_frequency"].value, abs=1.0)
        assert station.instrument("snspd").ch1.bias_current() == pytest.approx(
            values["bias_current_ch1"].value, abs=2e-9)  # the SIM900's bias DAC step
        # The delays applied align inputs 2 and 3 at the tagger to the ps (its resolution).
        tagger: Any = bench.zmq_devices["tagger"]
        hidden = {n: tagger.model.channels[n - 1].delay_ps for n in (2, 3)}
        user = tagger.user_delays_ps()
        assert hidden[2] + user[2] == pytest.approx(hidden[3] + user[3], abs=1)
        assert station.instrument("awg").ch2.skew() == pytest.approx(
            values["awg.ch2.skew"].value, abs=1e-13)


def test_every_check_is_in_spec_right_after_calibration(lab: LabContext) -> None:
    for entry, node in nodes().items():
        outcome = node.check_data(lab)
        assert outcome.result is DataResult.IN_SPEC, (entry, outcome.detail)
        assert outcome.run is not None and outcome.run.db_path == lab.db_path("node_a")


def test_a_detector_efficiency_drop_puts_that_node_out_of_spec(lab: LabContext) -> None:
    by_entry = nodes()
    drop_detector_efficiency(lab.station("node_a"), 0.7)
    outcome = by_entry["detector_efficiency"].check_data(lab)
    assert outcome.result is DataResult.OUT_OF_SPEC, outcome.detail
    assert "plateau_count_rate" in outcome.detail and "OUT OF SPEC" in outcome.detail
    # Unrelated nodes see nothing: dark counts do not depend on the efficiency, and the
    # transducer's calibrations do not use the detector.
    for entry in ("dark_counts", "optical_resonance", "mw_resonance"):
        assert by_entry[entry].check_data(lab).result is DataResult.IN_SPEC, entry
    # Recalibrating finds the lower plateau and is in spec again afterwards.
    store = lab.store("node_a")
    before = store.current("plateau_count_rate")
    assert before is not None
    again = by_entry["detector_efficiency"].calibrate(lab)
    assert again.good, again.detail
    assert again.values["plateau_count_rate"][0] == pytest.approx(0.7 * before.value, rel=0.05)
    store.record_calibration("node_a.detector_efficiency", again)
    assert by_entry["detector_efficiency"].check_data(lab).result is DataResult.IN_SPEC


def test_an_optical_resonance_drift_puts_that_node_out_of_spec(lab: LabContext) -> None:
    by_entry = nodes()
    new = drift_optical_resonance(lab.station("node_a"), 150e6)
    outcome = by_entry["optical_resonance"].check_data(lab)
    assert outcome.result is DataResult.OUT_OF_SPEC, outcome.detail
    # The detector's reference light is the pump parked 50 GHz off resonance: unaffected.
    for entry in ("detector_efficiency", "mw_resonance", "dark_counts"):
        assert by_entry[entry].check_data(lab).result is DataResult.IN_SPEC, entry
    again = by_entry["optical_resonance"].calibrate(lab)
    assert again.good, again.detail
    found = again.values["optical_resonance_wavelength"][0]
    step = 1550e-9 ** 2 * 12.5e6 / SPEED_OF_LIGHT  # m: one laser step (0.1 pm)
    assert found == pytest.approx(new, abs=step)
    lab.store("node_a").record_calibration("node_a.optical_resonance", again)
    by_entry["optical_resonance"].apply(lab, {"optical_resonance_wavelength": found})
    assert lab.station("node_a").setup.optical_resonance_wavelength() == found  # type: ignore[union-attr]
    assert by_entry["optical_resonance"].check_data(lab).result is DataResult.IN_SPEC


def test_a_bad_calibration_commits_nothing(lab: LabContext) -> None:
    node = nodes()["detector_efficiency"]
    store = lab.store("node_a")
    before = store.current_values("node_a.detector_efficiency")
    drop_detector_efficiency(lab.station("node_a"), 1e-6)  # a dead detector: no light seen
    outcome = node.calibrate(lab)
    assert not outcome.good and outcome.values == {}
    assert "no signal" in outcome.detail and outcome.run is not None
    store.record_calibration(node.name, outcome)
    assert store.current_values(node.name) == before
    last = store.last_event(node.name)
    assert last is not None and last.outcome == "bad" and last.run_id == outcome.run.run_id
    # Its quick check is bad data, not a number to compare.
    assert node.check_data(lab).result is DataResult.BAD_DATA


def test_a_node_whose_inputs_were_never_calibrated_does_not_run(tmp_path: Path) -> None:
    with context(tmp_path / "cold.db") as ctx:
        outcome = nodes()["added_noise"].calibrate(ctx)
        assert not outcome.good and outcome.run is None and outcome.values == {}
        assert "calibrate the node that commits it first" in outcome.detail


# -- start-up -----------------------------------------------------------------------------------
def test_startup_applies_stored_values_and_nothing_else(
        calibrated: tuple[Path, Outcomes], tmp_path: Path) -> None:
    store = ParameterStore(calibrated[0])
    empty = ParameterStore(tmp_path / "empty.db")
    with open_calibrated_station(NODE_A, "sim", empty) as station:
        assert station.setup is not None
        assert station.setup.optical_resonance_wavelength() == 1550.12e-9  # the config's
        assert station.instrument("tagger").input3.delay() == 0.0
    with open_calibrated_station(NODE_A, "sim", store) as station:
        assert station.instrument("tagger").input3.delay() == pytest.approx(
            store.current("tagger.input3.delay").value, abs=1e-12)  # type: ignore[union-attr]
    # An invalidated node's values are no longer applied.
    copy = tmp_path / "copy.db"
    shutil.copy(calibrated[0], copy)
    invalidated = ParameterStore(copy)
    invalidated.invalidate("node_a.tagger_delays")
    with open_calibrated_station(NODE_A, "sim", invalidated) as station:
        assert station.instrument("tagger").input3.delay() == 0.0


def test_a_sim_session_reopens_the_same_bench() -> None:
    with load_station(NODE_A, sim_session="calib-test") as station:
        world = simulated_bench(station).world
        station.instrument("snspd").ch1.bias_current(9.0e-6)
        drift_optical_resonance(station, 1e9)
    with load_station(NODE_A, sim_session="calib-test") as station:
        assert simulated_bench(station).world is world
        assert station.instrument("snspd").ch1.bias_current() == pytest.approx(9.0e-6,
                                                                               abs=2e-9)
    with load_station(NODE_A) as station:
        fresh = simulated_bench(station).world
        assert fresh is not world
        assert fresh.transducer.optical_resonance_wavelength == 1550.12e-9


# -- the heralding station's lab ----------------------------------------------------------------
STATION = REPO / "lab_configs" / "heralding_station.yaml"


def test_the_heralding_station_calibrates_its_detectors_from_cold(tmp_path: Path) -> None:
    """The station's graph on its own bench (the link dark): each detector's absolute
    efficiency against the reference source, then the dark counts at the biases applied.

    The twin's SNSPDs plateau at 0.9 and the reference delivers 7805 photons/s to each (its
    config value), so the plateau efficiency lies within Z = 4.5 of its error of 0.9 times
    the path's drift factor now (the realistic lab, the default: fibre polarization at each
    detector wanders by ~3 %, `LabWorld.detection_factor`; 1 on the clean lab); the
    dark counts at the recommended bias (~10 uA, below the 10.5 uA where the twin counts
    10 Hz) are a few Hz, each within Z errors of its own Poisson rate by construction."""
    graph = lab_graph(STATION)
    assert graph.order == ("station.detector_efficiency_ch1", "station.detector_efficiency_ch2",
                           "station.dark_counts")
    with context(tmp_path / "station.db", STATION) as ctx:
        store = ctx.store("station")
        for name in graph.order:
            outcome = graph[name].calibrate(ctx)
            assert outcome.good, outcome.detail
            store.record_calibration(name, outcome)
            graph[name].apply(ctx, {k: v for k, (v, _) in outcome.values.items()})
        factors = simulated_bench(ctx.station("station")).world.drift_state().detection_factors
        for ch in (1, 2):
            eta = store.current(f"detection_efficiency_ch{ch}")
            error = store.current(f"detection_efficiency_ch{ch}_error")
            assert eta is not None and error is not None
            (factor,) = [f for key, f in factors.items() if key.endswith(f"slot{ch}")] or [1.0]
            assert abs(eta.value - 0.9 * factor) < 4.5 * error.value, (ch, factors)
            dark = store.current(f"dark_count_rate_ch{ch}")
            assert dark is not None and 0.5 < dark.value < 10.0
            bias = ctx.station("station").instrument("snspd").detector_channels[ch]
            assert bias.bias_current() == pytest.approx(
                store.current(f"bias_current_ch{ch}").value, abs=1e-8)
