"""Polatis Series 6000 optical switch: the qnetlab driver against its twin, on both transports
(in-process VISA backend and `qnetlab sim serve` over TCP), the role's checks and the faults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies

from qnetlab.drivers.polatis import PolatisSeries6000
from qnetlab.drivers.polatis.series6000 import parse_connections
from qnetlab.instruments import NoLightError, OpticalSwitch, SwitchPortError
from qnetlab.instruments.conformance import assert_conforms
from qnetlab.instruments.errors import (
    InstrumentConnectionError,
    InstrumentReplyError,
    InstrumentReportedError,
    InstrumentTimeoutError,
)
from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.station import load_station
from qnetlab.sim_instruments.devices.polatis_6000 import (
    MAX_LOSS_DB,
    SWITCHING_TIME,
    TYPICAL_LOSS_DB,
)
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import REPO, free_port_run, sim_serving

SWITCH_BENCH = REPO / "lab_configs" / "optical_switch_bench.yaml"
NAME = "optical_switch"


def _paths(switch: Any) -> Any:
    """The twin's switched paths (`physics.optical_switch.SwitchPaths`) behind a driver."""
    return bench_of(switch).world.optical_switches[switch.name]


@pytest.fixture
def switch(sim_instrument) -> PolatisSeries6000:
    return sim_instrument(PolatisSeries6000, "polatis_6000")


# -- sim serve (TCP) ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    """`qnetlab sim serve` on the optical switch bench, on free ports; yields the config
    (real addresses on the servers) and a control client. Stopped at teardown."""
    folder = tmp_path_factory.mktemp("switch_served")
    lab = load_config(SWITCH_BENCH)
    base = free_port_run(lab.port_count + 1)
    config = lab.with_ports(base).to_yaml(folder / "optical_switch_bench.yaml").path
    control_port = base + lab.port_count
    with sim_serving(config, control_port, folder / "serve.log") as client:
        yield config, client


_TCP = pytest.param("real", marks=[pytest.mark.tcp, pytest.mark.processes, pytest.mark.slow])


@pytest.fixture(params=["sim", _TCP])
def station(request) -> Iterator[Any]:
    """The switch bench on either transport (the TCP one started only when asked for)."""
    if request.param == "sim":
        config, inject = SWITCH_BENCH, None
    else:
        config, client = request.getfixturevalue("served_switch")
        inject = client
    st = load_station(config, request.param)
    sw = st.instrument(NAME)
    if inject is None:
        faults = bench_of(sw).faults(NAME)
        st.arm = lambda fault, **kw: faults.inject(fault, **kw)
        clear = faults.clear
    else:
        st.arm = lambda fault, **kw: inject.inject(NAME, fault, **kw)
        clear = lambda: inject.request(op="clear")  # noqa: E731
    sw.disconnect_all()
    try:
        yield st
    finally:
        clear()
        sw.timeout(5.0)
        sw.disconnect_all()
        st.close()


# -- the role on both transports ----------------------------------------------------------------


def test_conforms_on_both_transports(station):
    sw = station.instrument(NAME)
    assert isinstance(sw, OpticalSwitch)
    report = assert_conforms(sw)
    assert "OpticalSwitch.connects_and_disconnects" in report.checked
    assert sw.connection_map() == {}  # the check put the switch back


class _Unchecked(PolatisSeries6000):
    """A driver that sends connect commands without the role's checks."""

    def connect(self, ingress: int, egress: int) -> None:
        self._make_path(ingress, egress)


def test_conformance_catches_a_driver_that_skips_the_port_checks(sim_instrument):
    sw = sim_instrument(_Unchecked, "polatis_6000")
    # the twin refuses the port (-222), but the role's contract is to refuse before the wire
    with pytest.raises(AssertionError, match=r"refuses_bad_ports: raised "
                                             r"InstrumentReportedError.*ingress port 33"):
        assert_conforms(sw)
    assert sw.connection_map() == {}


def test_connect_disconnect_and_map_round_trip(station):
    sw = station.instrument(NAME)
    assert (sw.ingress_ports, sw.egress_ports) == (range(1, 17), range(17, 33))
    sw.connect(1, 17)
    sw.connect(2, 32)
    sw.connect(16, 20)
    assert sw.connection_map() == {1: 17, 2: 32, 16: 20}
    assert sw.connections() == {1: 17, 2: 32, 16: 20}
    assert (sw.connected_to(32), sw.connected_to(2), sw.connected_to(3)) == (2, 32, None)
    sw.connect(1, 17)  # already made: nothing to do
    sw.disconnect(2, 32)
    sw.disconnect(16)
    assert sw.connection_map() == {1: 17}
    sw.disconnect_all()
    assert sw.connection_map() == {}


# -- physics: loss and settle time ----------------------------------------------------------------


def test_path_settles_after_the_switching_time_with_its_own_loss(switch):
    world = bench_of(switch).world
    paths = _paths(switch)
    assert switch.settle_time() == pytest.approx(SWITCHING_TIME)
    t0 = world.now()
    switch.connect(3, 21)
    # connect() returned once settled: that much lab time passed, and the path carries light
    assert world.now() - t0 == pytest.approx(SWITCHING_TIME)
    loss = paths.path_loss_db(3, 21)
    assert TYPICAL_LOSS_DB / 4 <= loss <= MAX_LOSS_DB
    assert world.switch_transmission(3, 21) == pytest.approx(10 ** (-loss / 10))
    # the paths differ (seeded per path), and the same seed gives the same losses
    assert len({round(paths.path_loss_db(i, 16 + i), 6) for i in range(1, 17)}) > 1


def test_light_goes_nowhere_until_settled(switch):
    world = bench_of(switch).world
    switch.write(":OXC:SWIT:CONN:ADD (@4),(@22)")  # the command, without waiting on *OPC?
    assert world.switch_transmission(4, 22) == 0.0  # still switching
    assert switch.ask("*OPC?") == "1"
    assert world.switch_transmission(4, 22) > 0


def test_unconnected_ports_transmit_nothing(switch):
    world = bench_of(switch).world
    switch.connect(1, 17)
    assert world.switch_transmission(1, 18) == 0.0  # connected, but elsewhere
    assert world.switch_transmission(5, 17) == 0.0  # not connected at all
    _paths(switch).light_in[5] = 1e-3
    at_ingress, at_egress = switch.port_power(5, 25)
    assert at_ingress == pytest.approx(0.0)  # 1 mW
    assert at_egress <= -50.0  # nothing arrives at any egress port
    switch.disconnect(1, 17)
    assert world.switch_transmission(1, 17) == 0.0


def test_insertion_loss_is_measured_by_the_power_monitors(switch):
    paths = _paths(switch)
    switch.connect(6, 30)
    with pytest.raises(NoLightError, match=r"no light on ingress port 6.*Fix: launch light"):
        switch.insertion_loss(6, 30)
    paths.light_in[6] = 0.5e-3
    assert switch.insertion_loss(6, 30) == pytest.approx(paths.path_loss_db(6, 30), abs=0.011)


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ingress", "egress", "message"), [
    (0, 17, r"ingress port 0 is not on this switch\. Fix: use one of 1\.\.16"),
    (17, 18, r"ingress port 17 is not on this switch"),
    (1, 33, r"egress port 33 is not on this switch\. Fix: use one of 17\.\.32"),
    (1, 5, r"egress port 5 is not on this switch"),
])
def test_ports_outside_the_switch_are_refused_before_the_wire(switch, ingress, egress, message):
    with pytest.raises(SwitchPortError, match=message):
        switch.connect(ingress, egress)
    assert switch.connection_map() == {}
    assert switch.ask(":SYST:ERR?").startswith("+0,")  # nothing reached the switch


def test_port_in_use_is_refused_naming_the_port_and_the_fix(switch):
    switch.connect(1, 17)
    with pytest.raises(SwitchPortError,
                       match=r"ingress port 1 is already connected to egress port 17\. Fix: "
                             r"disconnect\(1, 17\) first"):
        switch.connect(1, 18)
    with pytest.raises(SwitchPortError,
                       match=r"egress port 17 is already taken by ingress port 1\. Fix: "
                             r"disconnect\(1, 17\) first"):
        switch.connect(2, 17)
    with pytest.raises(SwitchPortError, match=r"no path from ingress port 2 .*not connected"):
        switch.disconnect(2)
    with pytest.raises(SwitchPortError, match=r"connected to 17.*Fix: read connection_map"):
        switch.disconnect(1, 18)
    with pytest.raises(SwitchPortError, match=r"not connected to egress port 18"):
        switch.insertion_loss(1, 18)
    assert switch.connection_map() == {1: 17}  # the bench as it was


def test_the_twin_refuses_conflicts_sent_around_the_role(switch):
    switch.connect(1, 17)
    with pytest.raises(InstrumentReportedError,
                       match=r"-221.*ingress port 1 is already connected to 17"):
        switch.write(":OXC:SWIT:CONN:ADD (@1),(@18)")
    with pytest.raises(InstrumentReportedError, match=r"-221.*egress port 17 is already"):
        switch.write(":oxc:swit:conn:add (@2),(@17)")
    with pytest.raises(InstrumentReportedError, match=r"-222.*ingress port 40 not in 1\.\.16"):
        switch.write(":oxc:switch:connect:add (@40),(@18)")
    assert switch.connection_map() == {1: 17}


def test_a_hostile_connection_map_is_refused(switch):
    for reply in ("(@1,2),(@17)", "(@1),(@40)", "(@1,1),(@17,18)", "1,17", "(@x),(@17)"):
        with pytest.raises(InstrumentReplyError, match="could not parse the reply"):
            switch.connections.get_parser(reply)


def test_short_and_long_forms_and_common_commands(switch):
    assert switch.ask("*IDN?").startswith("POLATIS,")
    assert switch.ask(":OXC:SWITCH:SIZE?") == "16,16"
    switch.write(":oxc:switch:connect:add (@1,2),(@17,18)")
    assert switch.ask(":OXC:SWIT:CONN:STAT?") == "(@1,2),(@17,18)"
    assert switch.ask(":oxc:swit:conn:port? 18") == "2"
    switch.write(":OXC:SWITCH:CONNECT:SUBTRACT (@1),(@)")
    assert switch.connection_map() == {2: 18}
    switch.write("*RST")  # breaks every path
    assert switch.connection_map() == {}


# -- faults ----------------------------------------------------------------------------------------


def _recovers(sw: Any) -> None:
    before = sw.connection_map()
    sw.connect(7, 27)
    assert sw.connection_map() == {**before, 7: 27}


def test_no_reply_is_a_named_timeout_then_recovers(station):
    sw = station.instrument(NAME)
    sw.timeout(0.5)
    station.arm("no_reply")
    with pytest.raises(InstrumentTimeoutError, match=rf"{NAME} at .*did not answer"):
        sw.connection_map()
    _recovers(sw)


def test_dropped_connection_is_reported_then_reconnects(station):
    sw = station.instrument(NAME)
    sw.timeout(0.5)
    station.arm("drop_connection")
    with pytest.raises((InstrumentConnectionError, InstrumentTimeoutError), match=f"{NAME} at"):
        sw.connection_map()
    _recovers(sw)


def test_garbage_reply_is_refused_then_recovers(station):
    sw = station.instrument(NAME)
    station.arm("garbage_reply")
    with pytest.raises(InstrumentReplyError, match=rf"{NAME} at .*could not parse the reply"):
        sw.connection_map()
    _recovers(sw)


def test_instrument_error_leaves_the_paths_as_they_were(station):
    sw = station.instrument(NAME)
    sw.timeout(0.5)
    sw.connect(1, 17)
    station.arm("instrument_error")
    with pytest.raises(InstrumentReportedError, match=rf"{NAME} at .* reported -240"):
        sw.connect(2, 18)
    assert sw.connection_map() == {1: 17}
    _recovers(sw)


def test_latency_delays_replies_but_loses_nothing(station):
    sw = station.instrument(NAME)
    station.arm("latency", seconds=0.1)
    t = time.perf_counter()
    sw.connect(3, 19)
    assert time.perf_counter() - t >= 0.1
    assert sw.connection_map() == {3: 19}


def test_latency_beyond_timeout_is_a_timeout_then_recovers(station):
    sw = station.instrument(NAME)
    sw.timeout(0.5)
    station.arm("latency", seconds=1.0)
    with pytest.raises(InstrumentTimeoutError):
        sw.connection_map()
    station.arm("latency", seconds=0.001)
    # A measured wait, not for an event: the 1.0 s latency runs out, so the late reply is
    # due; it must not be read as the answer to a later query.
    time.sleep(1.0)
    _recovers(sw)


# -- the connection map's wire format --------------------------------------------------------


@given(strategies.dictionaries(strategies.integers(1, 16), strategies.integers(17, 32),
                              max_size=16)
       .filter(lambda made: len(set(made.values())) == len(made)))
@settings(max_examples=60, deadline=None)
def test_any_map_survives_the_wire(made):
    # ONLY sets exactly these paths; STATe? gives them back in the manual's format, which
    # the driver's parser reads back to the same map.
    from qnetlab.sim_instruments.devices import create_emulator
    from qnetlab.sim_instruments.physics.presets import get_preset
    from qnetlab.sim_instruments.physics.world import LabWorld

    twin = create_emulator("polatis_6000", LabWorld(get_preset("bulk_eo_cw").model), "sw")
    twin.handle("*RST")
    pairs = sorted(made.items())
    twin.handle(f":OXC:SWIT:CONN:ONLY (@{','.join(str(i) for i, _ in pairs)}),"
                f"(@{','.join(str(e) for _, e in pairs)})")
    assert twin.next_error().startswith("+0,")
    assert parse_connections(str(twin.handle(":OXC:SWIT:CONN:STAT?"))) == made
