"""Lake Shore Model 372: the reused QCoDeS driver against its emulator."""

from __future__ import annotations

import re
import socket
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from qnetlab.drivers.lakeshore import LakeshoreModel372
from qnetlab.instruments.conformance import assert_conforms
from qnetlab.instruments.errors import InstrumentReportedError
from qnetlab.sim_instruments.bench import build_bench
from qnetlab.sim_instruments.devices.lakeshore_372 import (
    RESISTANCE_NOISE,
    Lakeshore372Emulator,
    resistance_of,
    temperature_of,
)
from qnetlab.sim_instruments.physics.presets import get_preset
from qnetlab.sim_instruments.physics.world import LabWorld
from qnetlab.sim_instruments.visa_backend import bench_of

TWIN = "lakeshore_372"
NR3 = re.compile(r"^[+-]\d\.\d{4}E[+-]\d{2}$")  # the manual's +n.nnnnE+nn


@pytest.fixture
def ls(sim_instrument):
    # The clean lab: these tests hold the twin to the 372 manual and its RuOx curve exactly;
    # the realistic lab's calibration-curve error is test_instrument_realism.py's.
    return sim_instrument(LakeshoreModel372, TWIN, ideal=True)


def test_conforms_to_temperature_controller(ls):
    assert_conforms(ls)


def test_terminator_is_cr_lf_both_ways(ls):
    assert ls.visa_handle.read_termination == "\r\n"
    assert ls.visa_handle.write_termination == "\r\n"
    assert bench_of(ls).endpoints[ls.name].terminator == b"\r\n"
    # Nothing of the terminator may leak into the next reply.
    assert [ls.ask("RDGST? 6") for _ in range(3)] == ["000"] * 3


def test_mxc_reading_follows_the_fridge(ls):
    world = bench_of(ls).world
    assert ls.temperature() == pytest.approx(world.fridge.base_temperature, rel=2e-3)
    world.set_extra_heat_load(20e-6)
    world.advance(600)  # ten time constants of the mixing chamber
    expected = world.fridge.equilibrium_temperature(20e-6)
    assert expected > 2 * world.fridge.base_temperature
    assert ls.temperature() == pytest.approx(expected, rel=2e-3)
    assert ls.ch06.temperature() == pytest.approx(expected, rel=2e-3)


@pytest.mark.parametrize(
    ("channel", "stage"),
    [(1, "plate_50k_temperature"), (2, "plate_4k_temperature"), (5, "still_temperature"),
     (7, "cold_plate_temperature")],
)
def test_sensor_channel_selects_the_input(sim_instrument, channel, stage):
    inst = sim_instrument(LakeshoreModel372, TWIN, sensor_channel=channel, ideal=True)
    assert inst.sensor_channel == channel
    fridge = bench_of(inst).world.fridge
    # RuOx sensitivity falls with temperature, so the kelvin noise grows at 45 K.
    assert inst.temperature() == pytest.approx(getattr(fridge, stage), rel=1e-2)


def test_default_sensor_is_the_mixing_chamber(ls):
    assert ls.sensor_channel == 6
    assert ls.temperature.source is ls.ch06.temperature


@pytest.mark.parametrize("bad", [0, 17, "6", True])
def test_sensor_channel_must_be_a_measurement_input(sim_instrument, bad):
    with pytest.raises(ValueError, match="sensor_channel"):
        sim_instrument(LakeshoreModel372, TWIN, sensor_channel=bad)


def test_readings_have_the_manual_format_and_agree_with_the_curve(ls):
    kelvin, ohms = ls.ask("KRDG? 6"), ls.ask("SRDG? 6")
    assert NR3.match(kelvin) and NR3.match(ohms)
    assert float(ohms) == pytest.approx(resistance_of(0.010), rel=1e-3)
    assert temperature_of(float(ohms)) == pytest.approx(float(kelvin), rel=1e-3)
    assert ls.ch06.sensor_status() == "OK"


def _raw_readings(seed: int, n: int = 50) -> np.ndarray:
    device = Lakeshore372Emulator(LabWorld(get_preset("bulk_eo_cw").model, seed=seed), "fridge")
    return np.array([float(device.handle("SRDG? 6") or "nan") for _ in range(n)])


def test_readings_carry_small_seeded_noise():
    first, again, other = _raw_readings(3), _raw_readings(3), _raw_readings(4)
    np.testing.assert_array_equal(first, again)  # same seed and name, same readings
    assert not np.array_equal(first, other)
    spread = first.std() / first.mean()
    assert 0.3 * RESISTANCE_NOISE < spread < 3 * RESISTANCE_NOISE


def test_unwired_and_disabled_inputs(ls):
    assert ls.ch04.sensor_status() == "CS OVL"  # nothing connected: current source overload
    assert ls.ch04.temperature() == 0.0
    ls.ch06.enabled(False)
    assert ls.ch06.temperature() == 0.0
    ls.ch06.enabled(True)
    assert ls.ch06.temperature() > 0


def test_qcodes_parameters_round_trip(ls):
    ls.ch03.dwell(25)
    ls.ch03.pause(5)
    assert (ls.ch03.dwell(), ls.ch03.pause(), ls.ch03.curve_number()) == (25, 5, 23)
    ls.ch06.units("ohms")
    assert ls.ch06.units() == "ohms"
    assert ls.ch06.excitation_mode() == "current"
    ls.ch06.sensor_name("MXC RuOx")
    assert ls.ch06.sensor_name() == "MXC RuOx"
    ls.ch06.t_limit(1.5)
    assert ls.ch06.t_limit() == 1.5
    heater = ls.sample_heater
    heater.P(40)
    heater.I(300)
    heater.D(2)
    assert (heater.P(), heater.I(), heater.D()) == (40, 300, 2)
    heater.input_channel(6)
    heater.mode("closed_loop")
    assert (heater.mode(), heater.input_channel()) == ("closed_loop", 6)
    heater.output_range("100μA")
    assert heater.output_range() == "100μA"
    heater.setpoint_ramp_enabled(True)
    heater.setpoint_ramp_rate(0.5)
    assert (heater.setpoint_ramp_enabled(), heater.setpoint_ramp_rate()) == (True, 0.5)
    assert heater.setpoint_ramp_status() is False
    heater.setpoint.post_delay = 0  # the driver waits 0.5 s for the real instrument
    heater.setpoint(0.05)
    assert heater.setpoint() == 0.05
    assert heater.output() == 0.0


def test_headers_are_case_insensitive(ls):
    ls.write("inset 3,0")  # an empty or missing field keeps its value
    assert ls.ask("Inset? 3") == "0,010,003,23,1"
    assert NR3.match(ls.ask("krdg? 6"))


def test_unknown_command_is_a_command_error(ls):
    with pytest.raises(InstrumentReportedError, match=r"command error \(CME.*'KRDGX 6'"):
        ls.write("KRDGX 6")
    ls.write("INSET 6,1")  # the register was cleared by reading it


def test_out_of_range_is_an_execution_error_and_changes_nothing(ls):
    before = ls.ask("INSET? 6")
    with pytest.raises(InstrumentReportedError, match=r"execution error \(EXE"):
        ls.write("INSET 6,1,500,3,26,1")  # dwell is 1-200 s
    assert ls.ask("INSET? 6") == before
    with pytest.raises(InstrumentReportedError, match="execution error"):
        ls.write("RANGE 0,9")  # the sample heater has ranges 0-8
    with pytest.raises(InstrumentReportedError, match="execution error"):
        ls.write("KRDG? 17")  # a query sent as a write is still checked


def test_unknown_query_is_reported_not_left_for_the_next_write(ls):
    with pytest.raises(InstrumentReportedError, match=r"command error.*'SYST:ERR\?'"):
        ls.ask("SYST:ERR?")  # the 372 has no SCPI error queue: no reply, CME set
    ls.write("INSET 6,1")  # nothing stale left in *ESR?
    assert ls.temperature() > 0


def test_status_register_bits_at_the_emulator(ls):
    device = bench_of(ls).device(ls.name)
    assert device.handle("NOSUCH 1") is None
    assert device.handle("*ESR?") == "32"  # CME
    assert device.handle("PID 0,5000,0,0") is None
    assert device.handle("*ESR?") == "16"  # EXE: P is 0-1000
    assert device.handle("*ESR?") == "0"  # reading clears it
    assert device.handle("SYST:ERR?") is None


def test_heater_setup_follows_the_372_manual(ls):
    ls.write("HTRSET 0,100,0,0,2")
    # Manual, HTRSET?: +nnn.nnn,n,+nnn.nnn,n for the sample heater, n,n,+nnn.nnn,n warm-up.
    assert ls.ask("HTRSET? 0") == "+100.000,0,+000.000,2"
    ls.write("HTRSET 1,2,0,0.5,1")
    assert ls.ask("HTRSET? 1") == "2,0,+000.500,1"
    # QCoDeS's heater_group sends the Model 335 layout, with an extra field: rejected.
    with pytest.raises(InstrumentReportedError, match="command error"):
        ls.write("HTRSET 0,0,1,0,0,1")


def test_reset_restores_power_up_state_but_keeps_configuration(ls):
    ls.write("RANGE 0,4")
    ls.write("INSET 3,0")
    ls.write("*RST")
    assert ls.ask("RANGE? 0") == "0"
    assert ls.ask("INSET? 3").startswith("0,")


@pytest.mark.tcp
def test_over_tcp_socket(tmp_path: Path):
    from qnetlab.sim_instruments.server import BenchServer

    with socket.socket() as probe:  # a free port for the simulated 372
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "ls_tcp.yaml"
    config.write_text(
        "qnetlab:\n  simulation: {seed: 1, ideal: true}\ninstruments:\n  fridge_ls:\n"
        "    type: qnetlab.drivers.lakeshore.LakeshoreModel372\n"
        f"    address: {{sim: {TWIN}, real: 'TCPIP0::127.0.0.1::{port}::SOCKET'}}\n"
    )
    server = BenchServer(build_bench(config))
    thread = threading.Thread(target=server.serve_forever, kwargs={"max_seconds": 30},
                              daemon=True)
    thread.start()
    inst = LakeshoreModel372(f"ls_tcp_{uuid.uuid4().hex[:6]}",
                             f"TCPIP0::127.0.0.1::{port}::SOCKET", visalib="@py")
    try:
        assert_conforms(inst)
        assert inst.temperature() == pytest.approx(0.010, rel=2e-3)
        with pytest.raises(InstrumentReportedError, match="execution error"):
            inst.write("INSET 6,1,500")
    finally:
        inst.close()
        server.stop()
        thread.join(5)


def test_rdg_queries_of_the_372_manual(ls):
    """Model 372 manual ch. 6: RDGK? (K), RDGR? (ohm), RDGPWR? (W), all +n.nnnnE+nn."""
    kelvin, ohm, power = (ls.ask(f"{q}? 6") for q in ("RDGK", "RDGR", "RDGPWR"))
    assert all(NR3.match(r) for r in (kelvin, ohm, power))
    assert float(kelvin) == pytest.approx(float(ls.ask("KRDG? 6")), rel=2e-3)
    assert float(ohm) == pytest.approx(resistance_of(float(kelvin)), rel=2e-3)
    # Excitation power: I^2 R for current excitation; range 7 is 1 nA (1 pA * 10^(6/2)).
    ls.write("INTYPE 6,1,7")
    assert float(ls.ask("RDGPWR? 6")) == pytest.approx((1e-9) ** 2 * float(ohm), rel=2e-3)
    # Voltage excitation: V^2 / R, range 3 is 20 uV.
    ls.write("INTYPE 6,0,3")
    assert float(ls.ask("RDGPWR? 6")) == pytest.approx((20e-6) ** 2 / float(ohm), rel=2e-3)
    assert float(ls.ask("RDGPWR? 4")) == 0.0  # no sensor on input 4


def test_heater_output_reads_in_the_manual_format(ls):
    assert re.fullmatch(r"[+-]\d\d\.\d{3}", ls.ask("HTR? 0"))  # +nn.nnn
    assert ls.sample_heater.output() == 0.0
