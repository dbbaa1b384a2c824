"""The bridge's optical switch in the loop (issue 15, item 2 and the switch part of 1/3): the
orchestrator sets every assigned path up through the `OpticalSwitch` role (the Polatis
Series 6000 driver against its twin over the in-process VISA transport, loaded from the
switch's lab config as any instrument is), waits for the settle the switch reports, reads the
connection map back, and turns a switch that refuses or does not answer into an ERR for the
request with the bench left with no half-made connection.

The engine tests run `BridgeEngine` without sockets on a clock the test moves (seeded: the
herald draws are the fabric's, fixed). The link physics behind the switch stays the
simulated link model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from qnetlab.drivers.polatis import PolatisSeries6000
from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.station import load_station
from qnetlab.network import ProcessGroup
from qnetlab.network.bridge import Scheduler, load_bridge_config
from qnetlab.network.bridge.arm_setup import SetupResult
from qnetlab.network.bridge.client import BridgeClient
from qnetlab.network.bridge.engine import BridgeEngine
from qnetlab.network.bridge.fabric import (
    ArmMeasurement,
    PathSetup,
    PathSetupError,
    SimulatedLinkFabric,
)
from qnetlab.network.bridge.path_calibration import PathCalibrations, path_node, path_value
from qnetlab.network.bridge.service import BridgeServiceSettings, run_bridge_orchestrator
from qnetlab.network.bridge.switch_loop import SwitchedFabric, orchestrator_fabric
from qnetlab.network.bridge.wire import Delivered, Err, RequestPairs
from qnetlab.network.keys import generate_lab_keys
from qnetlab.sequences.calibration import CalibrationOutcome, ParameterStore
from qnetlab.sim_instruments.devices.polatis_6000 import SWITCHING_TIME
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import REPO, wait_until

BRIDGE = REPO / "lab_configs" / "bridge_8.yaml"
SWITCH_BENCH = REPO / "lab_configs" / "optical_switch_bench.yaml"
CONFIG = load_bridge_config(BRIDGE)
TOPOLOGY = CONFIG.topology()
PORTS = TOPOLOGY.switch_ports
LONG = 20.0
"""Bridge s by which one or two pairs at ~27 Hz have long been heralded (every test is
seeded, so this is a fixed run, not a wait)."""


@pytest.fixture
def switch() -> Iterator[Any]:
    """The bridge's switch as its config names it (optical_switch_bench.yaml, sim profile:
    the Polatis driver on its twin over the in-process VISA backend), with no paths."""
    station = load_station(CONFIG.switch.lab, "sim")
    sw = station.instrument(CONFIG.switch.instrument)
    sw.disconnect_all()
    try:
        yield sw
    finally:
        bench_of(sw).faults(sw.name).clear()
        station.close()


def _engine(switch: Any, seed: int = 1) -> tuple[BridgeEngine, list[dict[str, Any]]]:
    log: list[dict[str, Any]] = []
    fabric = SwitchedFabric(TOPOLOGY, switch, seed=seed, log=log.append)
    return BridgeEngine(TOPOLOGY, Scheduler(TOPOLOGY), fabric, seed, log.append), log


def _map(switch: Any) -> dict[int, int]:
    """The twin's paths as the switch holds them (not as the driver says)."""
    return dict(bench_of(switch).world.optical_switches[switch.name].connections)


def _ask(engine: BridgeEngine, rid: str, a: str, b: str, now: float) -> None:
    engine.handle("app", RequestPairs(rid, a, b, 1, 0.55, None), now)


def _assigned(log: list[dict[str, Any]], rid: str) -> str:
    station = next(r["station"] for r in log
                   if r.get("action") == "ASSIGN" and r.get("request") == f"app/{rid}")
    return str(station)


def _wanted(station: str, a: str, b: str) -> dict[int, int]:
    return {PORTS[a]: PORTS[f"{station}/a"], PORTS[b]: PORTS[f"{station}/b"]}


def _replies(engine: BridgeEngine, kind: type) -> list[Any]:
    return [m for _, m in engine.outbox if isinstance(m, kind)]


# -- the path is made through the switch ----------------------------------------------------------

def test_an_assigned_path_is_made_through_the_switch_and_read_back(switch):
    """qnu0-qnu1: the ASSIGN's station gets qnu0's port on its arm a and qnu1's on arm b on
    the twin itself; each connect waited the settle the switch reports (*OPC?: the twin's lab
    clock moved one switching time per path); the decision log has the map read back; the
    pair is then heralded and DELIVERED."""
    engine, log = _engine(switch)
    world = bench_of(switch).world
    t0 = world.now()
    _ask(engine, "r1", "qnu0", "qnu1", 0.0)
    station = _assigned(log, "r1")
    assert _map(switch) == _wanted(station, "qnu0", "qnu1")
    assert world.now() - t0 == pytest.approx(2 * SWITCHING_TIME)
    switched = [r for r in log if r.get("event") == "switch"]
    assert switched[-1]["connections"] == [[i, e] for i, e in
                                           sorted(_wanted(station, "qnu0", "qnu1").items())]
    engine.advance(LONG)
    delivered = _replies(engine, Delivered)
    assert [d.request_id for d in delivered] == ["r1"]
    assert delivered[0].station == station


def test_a_qnu_moved_to_another_station_leaves_its_old_path(switch):
    """A QNU's port goes to one arm at a time: serving qnu0-qnu2 after qnu0-qnu1 breaks
    qnu0's old path wherever the new pair is placed, and the new station's arms carry the
    new pair. Reusing a connected station switches nothing."""
    engine, log = _engine(switch)
    _ask(engine, "r1", "qnu0", "qnu1", 0.0)
    engine.advance(LONG)
    first = _assigned(log, "r1")
    _ask(engine, "r2", "qnu0", "qnu2", LONG)
    second = _assigned(log, "r2")
    made = _map(switch)
    assert {i: made.get(i) for i in _wanted(second, "qnu0", "qnu2")} == \
        _wanted(second, "qnu0", "qnu2")
    arms = set(_wanted(second, "qnu0", "qnu2").values())
    assert {i: e for i, e in made.items() if e in arms} == _wanted(second, "qnu0", "qnu2")
    if second != first:
        assert made.get(PORTS["qnu1"]) == PORTS[f"{first}/b"]  # qnu1's path is left alone
    engine.advance(2 * LONG)
    assert [d.request_id for d in _replies(engine, Delivered)] == ["r1", "r2"]
    # the same pair again: its station is still connected, no path is made
    before = sum(r.get("event") == "switch" and bool(r["made"]) for r in log)
    _ask(engine, "r3", "qnu2", "qnu0", 2 * LONG)
    assert _assigned(log, "r3") == second
    assert sum(r.get("event") == "switch" and bool(r["made"]) for r in log) == before
    assert _map(switch) == made


def test_the_scheduler_weighs_the_settle_time_the_switch_reports(tmp_path):
    """The orchestrator's topology takes its settle time from the switch (`settle_time()`),
    the config's only as the data sheet's guess; ready and summary files name the switch."""
    settings = BridgeServiceSettings.from_config(CONFIG, tmp_path, run_dir=tmp_path)
    log: list[dict[str, Any]] = []
    topology, fabric, station = orchestrator_fabric(settings, log.append, lambda: 0.0)
    try:
        assert isinstance(fabric, SwitchedFabric)
        assert topology.settle_time == fabric.switch.settle_time() == SWITCHING_TIME
        opened = next(r for r in log if r.get("event") == "switch_opened")
        assert opened["instrument"] == CONFIG.switch.instrument and opened["profile"] == "sim"
    finally:
        assert station is not None
        station.close()


# -- a switch that refuses or does not answer ----------------------------------------------------

class _FailsOnPath(PolatisSeries6000):
    """The real driver; the twin's next command fails (-240, the instrument_error fault)
    when the `fail_on`-th path is made: the fault is timed, the wire and the twin are
    real."""

    fail_on = 1

    def _make_path(self, ingress: int, egress: int) -> None:
        self.paths_made = getattr(self, "paths_made", 0) + 1
        if self.paths_made == self.fail_on:
            bench_of(self).faults(self.name).inject("instrument_error")
        super()._make_path(ingress, egress)


class _Stuck(PolatisSeries6000):
    """A switch that acknowledges a connect but does not switch (a stuck mirror): only the
    connection map read back can tell."""

    def _make_path(self, ingress: int, egress: int) -> None:
        self._wait_settled()


def _refused(engine: BridgeEngine, rid: str) -> Err:
    errs = [m for m in _replies(engine, Err) if m.request_id == rid]
    assert len(errs) == 1, engine.outbox
    return errs[0]


@pytest.mark.parametrize("fail_on", [1, 2])
def test_a_refused_path_is_an_err_and_leaves_no_half_made_connection(sim_instrument, fail_on):
    """The switch refuses the first or the second path (-240): the request gets ERR
    NO_RESOURCES saying so, and the station's arms hold nothing (the first path, made
    before the second was refused, is broken again). The switch then serves the next
    request."""
    sw = sim_instrument(_FailsOnPath, "polatis_6000")
    sw.fail_on = fail_on
    engine, log = _engine(sw)
    world = bench_of(sw).world
    t0 = world.now()
    _ask(engine, "r1", "qnu0", "qnu1", 0.0)
    # the paths before the refused one were made (and settled) on the twin
    assert world.now() - t0 == pytest.approx((fail_on - 1) * SWITCHING_TIME)
    refused = _refused(engine, "r1")
    assert refused.code == "NO_RESOURCES"
    assert "refused" in refused.reason and "-240" in refused.reason
    assert "were cleared" in refused.reason
    assert _map(sw) == {}
    assert engine.counters["switch_failures"] == 1
    assert any(r.get("event") == "switch_failed" for r in log)
    _ask(engine, "r2", "qnu0", "qnu1", 1.0)
    engine.advance(LONG)
    assert [d.request_id for d in _replies(engine, Delivered)] == ["r2"]
    assert _map(sw) == _wanted(_assigned(log, "r2"), "qnu0", "qnu1")


def test_a_switch_that_does_not_answer_is_an_err_naming_it(switch):
    """No reply to the map query: ERR saying the switch did not answer; nothing is made;
    the next request is served once it answers again."""
    switch.timeout(0.5)
    bench_of(switch).faults(switch.name).inject("no_reply")
    engine, _ = _engine(switch)
    _ask(engine, "r1", "qnu0", "qnu1", 0.0)
    refused = _refused(engine, "r1")
    assert refused.code == "NO_RESOURCES" and "did not answer" in refused.reason
    assert _map(switch) == {}
    _ask(engine, "r2", "qnu0", "qnu1", 1.0)
    engine.advance(LONG)
    assert [d.request_id for d in _replies(engine, Delivered)] == ["r2"]


def test_a_dead_switch_says_the_arms_could_not_be_cleared(switch):
    """A switch that stays silent: the ERR says the station's arms could not be cleared
    (read the map before using it); the request is closed, nothing waits on it."""
    switch.timeout(0.3)
    bench_of(switch).faults(switch.name).inject("no_reply", count=None)
    engine, _ = _engine(switch)
    _ask(engine, "r1", "qnu0", "qnu1", 0.0)
    refused = _refused(engine, "r1")
    assert "did not answer" in refused.reason and "could NOT be cleared" in refused.reason
    assert engine.open == {}


def test_a_path_missing_from_the_map_read_back_is_an_err(sim_instrument):
    """The switch acknowledged the connects but its map read back lacks them: the request
    is refused naming what is missing; nothing heralds on a path that is not there."""
    sw = sim_instrument(_Stuck, "polatis_6000")
    engine, _ = _engine(sw)
    _ask(engine, "r1", "qnu0", "qnu1", 0.0)
    refused = _refused(engine, "r1")
    assert "read back lacks" in refused.reason
    engine.advance(LONG)
    assert _replies(engine, Delivered) == []
    assert engine.fabric.next_time() is None


def test_a_path_that_is_not_the_bridges_is_never_broken(switch):
    """A bench path (ingress 12, no QNU's) on both stations' arm a: the bridge refuses
    rather than break it, naming the path and the fix; the paths stay as they were."""
    switch.connect(12, PORTS["st0/a"])
    switch.connect(13, PORTS["st1/a"])
    before = _map(switch)
    engine, _ = _engine(switch)
    _ask(engine, "r1", "qnu0", "qnu1", 0.0)
    refused = _refused(engine, "r1")
    assert "not the bridge's" in refused.reason and "Fix: free it" in refused.reason
    assert _map(switch) == before


def test_ports_the_switch_does_not_have_are_a_config_error(switch):
    """A bridge whose ports lie beyond the switch's size (as the switch reports it) is
    refused when the fabric is made, naming the entry and the fix."""
    beyond = replace(TOPOLOGY, switch_ports={**PORTS, "st1/b": 40})
    with pytest.raises(ConfigError, match=r"st1/b.*port 40 is not an egress port.*17\.\.32"):
        SwitchedFabric(beyond, switch)


# -- per-path calibrations ------------------------------------------------------------------------

T0 = 1.0e9
"""s since the epoch on the tests' store clock (fixed: no wall time in the records)."""


def _store(tmp_path: Path, clock: list[float] | None = None) -> PathCalibrations:
    clock = clock or [T0]
    return PathCalibrations(tmp_path / "bridge_calibration.db", CONFIG.path_seeds(),
                            source="bridge_8.yaml", recheck_time=CONFIG.recheck_time,
                            now=lambda: clock[0])


def _commit(cal: PathCalibrations, qnu: str, station: str, delay: float, at: float) -> None:
    """A calibration of the path committed at `at` (as `qnetlab calibrate` would)."""
    ParameterStore(cal.db_path, now=lambda: at).record_calibration(
        path_node(qnu, station), CalibrationOutcome(True, "measured", {
            path_value(qnu, station): (delay, "s")}))


def test_each_path_is_seeded_once_from_the_config_then_read_from_the_store(tmp_path):
    """Every path without a record is seeded from the config (its arm delay, at now - its
    age, the event saying so and that nothing was measured); once recorded, the store is the
    truth: other seeds do not overwrite it, a later calibration is what the bridge reads."""
    cal = _store(tmp_path)
    assert len(cal.seed()) == len(CONFIG.paths) == 16
    record = cal.record("qnu0", "st0")
    assert (record.arm_delay, record.calibrated, record.checked) == (5.488e-7, T0 - 678, T0 - 678)
    (event,) = cal.store.events(path_node("qnu0", "st0"))
    assert "seeded from bridge_8.yaml" in event.detail and "NOT measured" in event.detail
    again = PathCalibrations(cal.db_path, {("qnu0", "st0"): (0.0, 6e-7)}, now=lambda: T0)
    assert again.seed() == [] and again.record("qnu0", "st0").arm_delay == 5.488e-7
    _commit(cal, "qnu7", "st0", 5.6e-7, T0 - 10.0)
    topology = cal.anchored(TOPOLOGY)
    assert topology.calibrated_at("qnu7", "st0") == pytest.approx(-10.0)  # was 865 s old
    assert topology.calibrated_at("qnu0", "st0") == pytest.approx(-678.0)
    assert cal.record("qnu7", "st0").arm_delay == 5.6e-7


def test_a_stale_path_is_rechecked_before_use_and_its_record_renewed(switch, tmp_path):
    """qnu0's paths are stored stale with their own arm delay (not the config's): the
    orchestrator switches qnu0-qnu1 in, logs the stored arm delays it switched in, re-checks
    qnu0's path (a RECORDED step, not a measurement: the event says so and its cost), and the
    record's checked time is the re-check's; a topology read afterwards has it fresh."""
    cal = _store(tmp_path)
    cal.seed()
    for station in TOPOLOGY.stations:
        _commit(cal, "qnu0", station, 6.1e-7, T0 - 1.5 * CONFIG.calibration_lifetime)
    topology = cal.anchored(TOPOLOGY)
    log: list[dict[str, Any]] = []
    fabric = SwitchedFabric(topology, switch, seed=1, log=log.append)
    engine = BridgeEngine(topology, Scheduler(topology), fabric, 1, log.append,
                          calibrations=cal)
    _ask(engine, "r1", "qnu0", "qnu1", 0.0)
    station = _assigned(log, "r1")
    (recheck,) = [r for r in log if r.get("action") == "RECHECK" and r["qnus"][0] == "qnu0"]
    values = next(r for r in log if r.get("event") == "path_values")
    assert values["arm_delay"]["qnu0"] == 6.1e-7  # the store's, not the config's 5.4e-7
    assert values["arm_delay"]["qnu1"] == CONFIG.arm_delay("qnu1", station)
    checks = [e for e in cal.store.events(path_node("qnu0", station)) if e.operation == "recheck"]
    assert len(checks) == 1 and checks[0].outcome == "not measured"
    assert "NOT measured" in checks[0].detail and f"costing {CONFIG.recheck_time:g} s" \
        in checks[0].detail
    assert cal.record("qnu0", station).checked == pytest.approx(T0 + recheck["ready_at"])
    assert cal.record("qnu0", station).arm_delay == 6.1e-7  # kept
    assert -cal.anchored(TOPOLOGY).calibrated_at("qnu0", station) < CONFIG.calibration_lifetime
    engine.advance(LONG)
    assert [d.request_id for d in _replies(engine, Delivered)] == ["r1"]


def test_a_path_the_switch_could_not_make_is_not_recorded_as_rechecked(sim_instrument,
                                                                        tmp_path):
    """The switch refuses: the stale path's re-check never happened, so none is recorded."""
    sw = sim_instrument(_FailsOnPath, "polatis_6000")
    cal = _store(tmp_path)
    topology = cal.anchored(TOPOLOGY)
    fabric = SwitchedFabric(topology, sw, seed=1)
    engine = BridgeEngine(topology, Scheduler(topology), fabric, 1, calibrations=cal)
    _ask(engine, "r1", "qnu0", "qnu1", 0.0)
    assert _refused(engine, "r1").code == "NO_RESOURCES"
    assert not [e for q in ("qnu0", "qnu1") for s in TOPOLOGY.stations
                for e in cal.store.events(path_node(q, s)) if e.operation == "recheck"]


class _MeasuringFabric(SimulatedLinkFabric):
    """The link model's heralds, and a station's set-ups as the test ends them (what
    `StationFabric` reports through `take_setups`)."""

    measures = True

    def __init__(self, topology: Any) -> None:
        super().__init__(topology, 1)
        self.asked: list[tuple[str, str, str, str, PathSetup | None]] = []
        self.ended: list[SetupResult] = []
        self.refused: list[SetupResult] = []

    def assign(self, station: str, request: str, a: str, b: str, ready_at: float,
               setup: PathSetup | None = None) -> None:
        super().assign(station, request, a, b, ready_at, setup)
        self.asked.append((station, request, a, b, setup))

    def take_setups(self) -> list[SetupResult]:
        done, self.ended = self.ended, []
        return done

    def take_refusals(self) -> list[SetupResult]:
        refused, self.refused = self.refused, []
        return refused


def _stale_qnu0(tmp_path: Path) -> tuple[PathCalibrations, Any]:
    cal = _store(tmp_path)
    cal.seed()
    for station in TOPOLOGY.stations:
        _commit(cal, "qnu0", station, 6.1e-7, T0 - 1.5 * CONFIG.calibration_lifetime)
    return cal, cal.anchored(TOPOLOGY)


def test_a_measured_recheck_is_committed_and_the_scheduler_plans_with_what_it_cost(tmp_path):
    """With a fabric that measures (station processes), the ASSIGN hands it the stored arm
    delays and the stale path; when the set-up ends, the measured arm delay is committed as
    the path's calibration with its error, the re-check logged as measured, and the
    scheduler plans the next re-check at what this one took."""
    cal, topology = _stale_qnu0(tmp_path)
    fabric = _MeasuringFabric(topology)
    log: list[dict[str, Any]] = []
    scheduler = Scheduler(topology)
    engine = BridgeEngine(topology, scheduler, fabric, 1, log.append, calibrations=cal)
    _ask(engine, "r1", "qnu0", "qnu1", 0.0)
    ((station, request, _, _, setup),) = fabric.asked
    assert setup is not None and setup.recheck == {"qnu0"}
    assert setup.arm_delays == {"qnu0": 6.1e-7, "qnu1": CONFIG.arm_delay("qnu1", station)}
    assert setup.recheck_time == CONFIG.recheck_time
    assert not [r for r in log if r.get("event") == "recheck"]  # not until it is measured
    fabric.ended.append(SetupResult(station, request, {"qnu0": ArmMeasurement(
        6.13e-7, 4e-10, "measured by the test")}, first_seq=3))
    engine.advance(0.55)
    (recheck,) = [r for r in log if r.get("event") == "recheck"]
    assert recheck["measured"] is True and recheck["arm_delay"] == 6.13e-7
    assert recheck["stored_before"] == 6.1e-7 and recheck["error"] == 4e-10
    record = cal.record("qnu0", station)
    assert record.arm_delay == 6.13e-7 and record.checked == pytest.approx(T0 + 0.55)
    (stored,) = [e for e in cal.store.events(path_node("qnu0", station))
                 if "measured by the test" in e.detail]
    assert stored.operation == "calibrate" and stored.outcome == "good"
    (cost,) = [r for r in log if r.get("event") == "recheck_cost"]
    assert cost["took"] == pytest.approx(0.55) and cost["paths"] == 1
    assert cost["planned"] == CONFIG.recheck_time
    assert scheduler.topology.recheck_time == pytest.approx(0.55)
    assert scheduler.switch.topology.recheck_time == pytest.approx(0.55)
    engine.advance(LONG)
    assert [d.request_id for d in _replies(engine, Delivered)] == ["r1"]


def _measuring(tmp_path: Path) -> tuple[PathCalibrations, _MeasuringFabric,
                                         list[dict[str, Any]], BridgeEngine]:
    """An engine on a fabric that measures, qnu0's paths stale, r1 (qnu0-qnu1) asked."""
    cal, topology = _stale_qnu0(tmp_path)
    fabric = _MeasuringFabric(topology)
    log: list[dict[str, Any]] = []
    engine = BridgeEngine(topology, Scheduler(topology), fabric, 1, log.append,
                          calibrations=cal)
    _ask(engine, "r1", "qnu0", "qnu1", 0.0)
    return cal, fabric, log, engine


def test_a_failed_setup_is_the_requests_err_and_keeps_what_was_measured(tmp_path):
    """The set-up ends failed after measuring (the windows could not be set): the request
    gets ERR NO_RESOURCES with the station's reason, the measurement is still committed, and
    no unmeasured re-check is recorded as done."""
    cal, fabric, log, engine = _measuring(tmp_path)
    ((station, request, *_),) = fabric.asked
    fabric.ended.append(SetupResult(
        station, request, {"qnu0": ArmMeasurement(6.12e-7, 5e-10, "measured by the test")},
        error=PathSetupError(f"station {station} did not move its windows: REFUSED")))
    engine.advance(0.6)
    err = _refused(engine, "r1")
    assert err.code == "NO_RESOURCES" and "did not move its windows" in err.reason
    assert cal.record("qnu0", station).arm_delay == 6.12e-7
    assert [r["event"] for r in log if r.get("event") in ("recheck", "path_setup_failed")] \
        == ["recheck", "path_setup_failed"]
    assert not [r for r in log if r.get("event") == "recheck_cost"]


def test_a_node_refusal_during_a_measured_recheck_fails_the_request_and_keeps_the_recheck(
        tmp_path):
    """A QNU's node agent refuses the request while its station still measures the stale
    path: the request gets ERR NO_RESOURCES with the node's reason, and the measurement,
    when it ends, is still committed and its cost learned (the refusal does not take the
    set-up's place)."""
    cal, fabric, log, engine = _measuring(tmp_path)
    ((station, request, *_),) = fabric.asked
    fabric.refused.append(SetupResult(station, request, error=PathSetupError(
        f"qnu1's node agent at {station} refused the request (NO_RESOURCES)"), current=True))
    engine.advance(0.3)
    err = _refused(engine, "r1")
    assert err.code == "NO_RESOURCES" and err.reason.startswith("qnu1's node agent")
    fabric.ended.append(SetupResult(station, request, {"qnu0": ArmMeasurement(
        6.13e-7, 4e-10, "measured by the test")}, first_seq=3))
    engine.advance(0.55)
    assert cal.record("qnu0", station).arm_delay == 6.13e-7
    (cost,) = [r for r in log if r.get("event") == "recheck_cost"]
    assert cost["took"] == pytest.approx(0.55)


def test_the_calibration_database_is_relative_to_the_config_and_checked(tmp_path):
    """``calibration.database``: a .db path relative to the config file (default: under
    bridge.run_dir); anything else is refused naming the entry and the fix."""
    text = BRIDGE.read_text().replace("../lab_data/runs/bridge_8", "runs")
    for lab in ("optical_switch_bench", "node_a_lab", "node_b_lab", "heralding_station"):
        text = text.replace(f"{lab}.yaml", str(REPO / "lab_configs" / f"{lab}.yaml"))
    plain = tmp_path / "bridge.yaml"
    plain.write_text(text)
    assert load_bridge_config(plain).calibration_db == tmp_path / "runs" / \
        "bridge_calibration.db"
    named = tmp_path / "named.yaml"
    named.write_text(text.replace("  lifetime: 600", "  database: cal/paths.db\n  lifetime: 600"))
    assert load_bridge_config(named).calibration_db == tmp_path / "cal" / "paths.db"
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  lifetime: 600", "  database: 42\n  lifetime: 600"))
    with pytest.raises(ConfigError, match=r"calibration\.database.*not a database path.*"
                                          r"relative to this file"):
        load_bridge_config(bad)


# -- the process -----------------------------------------------------------------------------------

@pytest.mark.processes
@pytest.mark.slow
def test_the_orchestrator_process_drives_the_switch_its_config_names(tmp_path: Path):
    """`BridgeServiceSettings.from_config(bridge_8.yaml)`: the orchestrator process opens
    the config's switch (sim profile: the Polatis twin over the VISA transport), a client
    gets its pair, and the run's log holds the switch it opened (settle time as reported)
    and the map it read back with the pair's paths on the assigned station's arms."""
    keys = tmp_path / "keys"
    generate_lab_keys(keys, ["bridge_orchestrator", "app"])
    settings = BridgeServiceSettings.from_config(
        CONFIG, keys, run_dir=tmp_path / "run", time_scale=10.0, seed=1, max_seconds=120.0,
        clients=("app",), calibration_db=tmp_path / "bridge_calibration.db")
    with ProcessGroup() as group:
        group.start(settings.name, run_bridge_orchestrator, settings)
        ready = settings.run_dir / f"{settings.name}_ready.json"
        wait_until(ready.exists, 60.0, "the bridge orchestrator's ready file")
        info = json.loads(ready.read_text())
        assert info["switch"] == "optical_switch of optical_switch_bench.yaml (sim)"
        with BridgeClient(info["address"], keys, "app") as bridge:
            handle = bridge.request_pairs("qnu0", "qnu1", pairs=1, min_fidelity=0.55)
            delivered = bridge.wait(handle, 60.0)
    assert isinstance(delivered, Delivered)
    records = [json.loads(line) for line in
               (settings.run_dir / f"{settings.name}_decisions.jsonl").read_text().splitlines()]
    opened = next(r for r in records if r.get("event") == "switch_opened")
    assert opened["settle_time"] == SWITCHING_TIME
    switched = [r for r in records if r.get("event") == "switch"]
    station = delivered.station
    wanted = [[i, e] for i, e in sorted(_wanted(station, "qnu0", "qnu1").items())]
    assert switched and switched[-1]["station"] == station
    assert all(path in switched[-1]["connections"] for path in wanted)
    # the paths' records: seeded from the config at the start, the stale one re-checked
    started = next(r for r in records if r.get("event") == "path_calibrations")
    assert len(started["seeded"]) == 16
    cal = PathCalibrations(tmp_path / "bridge_calibration.db", {})
    stale = [q for q in ("qnu0", "qnu1") if CONFIG.paths[(q, station)].age >
             CONFIG.calibration_lifetime]
    for q in ("qnu0", "qnu1"):
        checks = [e for e in cal.store.events(path_node(q, station)) if e.operation == "recheck"]
        assert len(checks) == (q in stale), (q, station, checks)
