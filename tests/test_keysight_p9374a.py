"""Keysight P9374A: the reused QCoDeS PNA driver against its emulator.

Noise tolerances come from the documented noise model, not from tuning: a point's complex
noise n has E|n|^2 = sigma^2 with sigma = vna_noise * sqrt(IF bandwidth / 1 kHz) / sqrt(N
averages), so P(|n| > k sigma) = exp(-k^2); at k = 5 that is 1.4e-11 a point.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from qnetlab.drivers.keysight import KeysightP9374A
from qnetlab.instruments.conformance import assert_conforms
from qnetlab.instruments.errors import InstrumentReportedError
from qnetlab.sim_instruments.visa_backend import bench_of

K = 5.0  # tolerance in units of the noise sigma (see the module docstring)


def sigma(vna: KeysightP9374A, averages: int = 1) -> float:
    world = bench_of(vna).world
    return world.settings.vna_noise * math.sqrt(vna.if_bandwidth() / 1e3) / math.sqrt(averages)


def residual_sigma(vna: KeysightP9374A) -> float:
    """One sweep's noise, estimated from its departure from the noise-free S11."""
    frequency, s = vna.sweep()
    residual = s - bench_of(vna).world.mw_reflection(frequency)
    return float(np.sqrt(np.mean(np.abs(residual) ** 2)))


def relative_spread(points: int) -> float:
    """Standard deviation of residual_sigma / sigma: 2 * points real quadratures, chi."""
    return 1 / math.sqrt(4 * points)


def test_conforms_to_vna(sim_instrument):
    assert_conforms(sim_instrument(KeysightP9374A, "keysight_p9374a"))


def test_short_and_long_forms_case_insensitive(sim_instrument):
    vna = sim_instrument(KeysightP9374A, "keysight_p9374a")
    vna.write("sense1:frequency:start 7.9 GHZ")
    assert float(vna.ask("SENS:FREQ:STAR?")) == 7.9e9
    assert vna.start() == 7.9e9
    vna.write(":SENSe:BWIDth:RESolution 300")
    assert float(vna.ask("sens:band?")) == 300.0
    vna.write("SOURce1:POWer1:LEVel:IMMediate:AMPLitude -12.5")
    assert vna.power() == -12.5
    assert float(vna.ask("SOUR:POW2?")) == -12.5  # port powers are coupled after preset
    vna.write("calculate:parameter:select 'CH1_S11_1';:CALC:FORMat mlinear")
    assert vna.ask("CALCulate1:SELected:FORMat?") == "MLIN"


def test_if_bandwidth_rounds_up_to_a_step(sim_instrument):
    vna = sim_instrument(KeysightP9374A, "keysight_p9374a")
    vna.if_bandwidth(1100)
    assert vna.if_bandwidth() == 1500.0


def test_out_of_range_is_reported_from_the_error_queue(sim_instrument):
    vna = sim_instrument(KeysightP9374A, "keysight_p9374a")
    vna.start(7.9e9)
    with pytest.raises(InstrumentReportedError, match=r"-222.*Data out of range"):
        vna.write("SENS:FREQ:STAR 25 GHz")
    assert vna.start() == 7.9e9
    with pytest.raises(InstrumentReportedError, match="-222"):
        vna.write("SOUR:POW 30")


def test_unknown_command_and_channel_are_reported(sim_instrument):
    vna = sim_instrument(KeysightP9374A, "keysight_p9374a")
    with pytest.raises(InstrumentReportedError, match="-113"):
        vna.write("SENS:FREQ:BEGIN 1e9")
    with pytest.raises(InstrumentReportedError, match="-114"):
        vna.write("SENS2:FREQ:STAR 1e9")
    # Errors wait in the queue, oldest first, until read.
    vna.visa_handle.write("SENS:SWE:POIN 0;SENS:SWE:TYPE SIDEWAYS")
    assert vna.ask("SYST:ERR:COUN?") == "2"
    assert vna.ask("SYST:ERR?").startswith("-222,")
    assert vna.ask("SYST:ERR?").startswith("-224,")
    assert vna.ask("SYST:ERR?") == '+0,"No error"'


@pytest.mark.parametrize("transducer", ["bulk_eo_cw", "bulk_eo_pulsed"])
def test_sweep_sees_the_microwave_resonance(sim_instrument, transducer):
    vna = sim_instrument(KeysightP9374A, "keysight_p9374a", transducer=transducer, seed=3,
                         ideal=True)
    model = bench_of(vna).world.transducer
    f0, kappa, eta = model.mw_resonance_frequency, model.mw_linewidth, model.mw_coupling_ratio
    vna.start(f0 - 5 * kappa)
    vna.stop(f0 + 5 * kappa)
    vna.points(201)
    vna.if_bandwidth(1e3)
    frequency, s = vna.sweep()
    tolerance = K * sigma(vna)
    # On resonance (the middle point) |S11| = |1 - 2 eta_e|; far off it the mode reflects all.
    assert frequency[100] == pytest.approx(f0)
    assert abs(s[100]) == pytest.approx(abs(1 - 2 * eta), abs=tolerance)
    assert abs(s[0]) == pytest.approx(abs(1 - 2 * eta / (1 - 10j)), abs=tolerance)
    # And the whole trace is the Lorentzian dip: every point within the noise of the model.
    assert np.max(np.abs(s - (1 - 2 * eta / (1 + 2j * (frequency - f0) / kappa)))) < tolerance


def test_noise_scales_with_if_bandwidth(sim_instrument):
    vna = sim_instrument(KeysightP9374A, "keysight_p9374a", seed=5, ideal=True)
    vna.start(7.5e9)
    vna.stop(8.5e9)
    vna.points(2001)
    tolerance = K * relative_spread(2001)
    measured = {}
    for ifbw in (100.0, 1e3, 10e3):
        vna.if_bandwidth(ifbw)
        measured[ifbw] = residual_sigma(vna)
        assert measured[ifbw] / sigma(vna) == pytest.approx(1, abs=tolerance)
    # sigma grows as sqrt(IF bandwidth): 10x the bandwidth, sqrt(10)x the noise (a ratio of
    # two independent estimates spreads sqrt(2) times as much as one).
    ratio_tolerance = math.sqrt(2) * tolerance
    assert measured[10e3] / measured[1e3] == pytest.approx(math.sqrt(10), rel=ratio_tolerance)
    assert measured[1e3] / measured[100.0] == pytest.approx(math.sqrt(10), rel=ratio_tolerance)


def test_averaging_divides_the_noise_and_costs_time(sim_instrument):
    vna = sim_instrument(KeysightP9374A, "keysight_p9374a", seed=7, ideal=True)
    vna.points(1001)
    vna.if_bandwidth(10e3)
    vna.averages(16)
    vna.averages_enabled(True)
    world = bench_of(vna).world
    t0 = world.now()
    noise = residual_sigma(vna)
    assert world.now() - t0 == pytest.approx(16 * 1001 / 10e3)
    assert noise / sigma(vna, averages=16) == pytest.approx(1, abs=K * relative_spread(1001))


def test_sweep_advances_virtual_time_by_the_sweep_time(sim_instrument):
    vna = sim_instrument(KeysightP9374A, "keysight_p9374a")
    vna.points(401)
    vna.if_bandwidth(100.0)
    world = bench_of(vna).world
    t0 = world.now()
    vna.sweep()
    assert world.now() - t0 == pytest.approx(401 / 100.0)
    assert vna.sweep_time() == pytest.approx(401 / 100.0)
    # Settings, queries and reading the held data take no lab time.
    t1 = world.now()
    vna.format("MLOG")
    vna.visa_handle.query_binary_values("CALC:DATA? FDATA", datatype="f", is_big_endian=True)
    assert world.now() == t1


def test_binary_block_and_ascii_data_agree(sim_instrument):
    vna = sim_instrument(KeysightP9374A, "keysight_p9374a")
    vna.points(64)
    vna.sweep()  # leaves the channel in continuous mode; hold it so the data stays put
    vna.sweep_mode("HOLD")
    vna.write("INIT:IMM")
    handle = vna.visa_handle
    big = handle.query_binary_values("CALC:DATA? SDATA", datatype="f", is_big_endian=True)
    vna.write("FORM:BORD SWAP")
    little = handle.query_binary_values("CALC:DATA? SDATA", datatype="f", is_big_endian=False)
    vna.write("FORM ASCii,0")
    text = [float(v) for v in vna.ask("CALC:DATA? SDATA").split(",")]
    assert len(big) == 2 * 64
    np.testing.assert_array_equal(big, little)
    np.testing.assert_allclose(big, text, rtol=1e-6, atol=1e-9)


def test_endpoint_sends_one_terminated_definite_length_block(sim_instrument):
    vna = sim_instrument(KeysightP9374A, "keysight_p9374a")
    vna.points(32)
    endpoint = bench_of(vna).endpoints[vna.name]
    reply = endpoint.exchange(b"FORM REAL,64;:CALC:DATA? SDATA").reply
    assert reply is not None and reply.endswith(endpoint.terminator)
    digits = int(reply[1:2])
    length = int(reply[2 : 2 + digits])
    assert reply[:1] == b"#" and length == 32 * 2 * 8
    assert len(reply) == 2 + digits + length + len(endpoint.terminator)


def test_port_two_is_open_and_unconnected(sim_instrument):
    vna = sim_instrument(KeysightP9374A, "keysight_p9374a")
    vna.points(101)
    vna.write("CALC:PAR:DEF:EXT 'ch1_s22','S22'")
    vna.write("CALC:PAR:DEF:EXT 'ch1_s21','S21'")
    assert vna.get_trace_catalog() == "CH1_S11_1,S11,ch1_s22,S22,ch1_s21,S21"
    traces = {tr.trace_name: tr for tr in vna.traces}
    tolerance = K * sigma(vna)
    assert np.max(np.abs(traces["ch1_s22"].polar() - 1)) < tolerance
    assert np.max(np.abs(traces["ch1_s21"].polar())) < tolerance
    with pytest.raises(InstrumentReportedError, match="-224"):
        vna.write("CALC:PAR:DEF:EXT 'x','S31'")
