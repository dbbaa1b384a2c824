"""Tektronix AWG5208: the reused QCoDeS driver and the `AWG` role against the emulator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qnetlab.drivers.tektronix import TektronixAWG5208
from qnetlab.instruments.awg import AwgStep, AwgWaveform, WaveformRejectedError
from qnetlab.instruments.conformance import assert_conforms
from qnetlab.instruments.errors import InstrumentReportedError
from qnetlab.sim_instruments.visa_backend import bench_of

N = 2400  # the emulator's shortest waveform


def emulator(awg: TektronixAWG5208):
    return bench_of(awg).device(awg.name)


def pulse_step(n: int = N, high: tuple[int, int] = (100, 200), repeat: int = 1) -> AwgStep:
    markers = np.zeros((4, n), dtype=bool)
    markers[0, high[0]:high[1]] = True
    samples = np.sin(np.linspace(0, 2 * np.pi, n)) * 0.5
    return AwgStep({1: AwgWaveform(samples, markers), 3: AwgWaveform(samples, markers)},
                   repeat)


def test_conforms_to_awg(sim_instrument):
    report = assert_conforms(sim_instrument(TektronixAWG5208, "tektronix_awg5208"))
    assert "AWG.channel_parameters" in report.checked


def test_short_and_long_forms_case_insensitive(sim_instrument):
    awg = sim_instrument(TektronixAWG5208, "tektronix_awg5208")
    awg.write("clock:srate 1.2e9")
    assert awg.sample_rate() == 1.2e9
    awg.write("SOUR3:VOLT:LEV:IMM:AMPL 0.8;:sour3:volt:offs 0.05")
    assert awg.ch3.amplitude() == 0.8
    assert awg.ch3.awg_amplitude() == 0.8
    assert awg.ch3.offset() == 0.05
    awg.write("SOURce2:SKEW 12 PS")
    assert awg.ch2.skew() == pytest.approx(12e-12)
    awg.write("outp5 on")
    assert awg.ch5.output() is True
    assert awg.ask("OUTPut5:STATe?") == "1"


def test_out_of_range_is_reported_from_the_error_queue(sim_instrument):
    awg = sim_instrument(TektronixAWG5208, "tektronix_awg5208")
    with pytest.raises(InstrumentReportedError, match=r"-222.*Data out of range"):
        awg.write("SOUR1:VOLT 3")
    with pytest.raises(InstrumentReportedError, match="-114"):
        awg.write("SOUR9:SKEW 0")
    with pytest.raises(InstrumentReportedError, match="-113"):
        awg.write("AWGC:JUMP")
    awg.visa_handle.write("CLOCK:SRATE 9e9;:SOUR1:SKEW 1")
    assert awg.ask("SYST:ERR?").startswith("-222,")
    assert awg.ask("SYST:ERR?").startswith("-222,")
    # AWG5200 programmer manual: an empty queue reads 0,"No error", no sign.
    assert awg.ask("SYST:ERR?") == '0,"No error"'


@pytest.mark.parametrize(("step", "match"), [
    (AwgStep({2: AwgWaveform(np.full(N, 1.2))}), r"channel 2: samples up to 1.2.*\[-1, 1\]"),
    (AwgStep({1: AwgWaveform(np.zeros(100))}), r"channel 1: 100 samples, fewer than.*2400"),
    (AwgStep({1: AwgWaveform(np.zeros(N)), 2: AwgWaveform(np.zeros(N + 1))}),
     "different lengths"),
    (AwgStep({1: AwgWaveform(np.zeros(N), np.zeros((2, N), bool))}), "markers of shape"),
    (AwgStep({9: AwgWaveform(np.zeros(N))}), "channel 9: no such channel"),
    (AwgStep({1: AwgWaveform(np.zeros(3000))}, repeat=1), "waveform memory"),
])
def test_bad_sequences_are_refused_before_any_upload(sim_instrument, step, match):
    awg = sim_instrument(TektronixAWG5208, "tektronix_awg5208")
    emu = emulator(awg)
    emu.model = dataclasses.replace(emu.model, memory_samples=5000)
    steps = [step] if "memory" not in match else [step, step]
    emu.received.clear()
    with pytest.raises(WaveformRejectedError, match=match) as info:
        awg.upload_sequence(steps)
    assert "Fix:" in str(info.value)
    # Only the limit queries went out: no list was cleared, no byte of data sent.
    assert all("LMAX" in m or "LMIN" in m or "GRAN" in m for m in emu.received), emu.received
    assert not emu.waveforms and not emu.sequences


def test_upload_reaches_the_emulator_intact(sim_instrument):
    awg = sim_instrument(TektronixAWG5208, "tektronix_awg5208")
    rng = np.random.default_rng(0)
    # Random float32 data holds newlines, quotes, commas and semicolons as bytes.
    samples = rng.uniform(-1, 1, N).astype(np.float32).astype(float)
    markers = rng.random((4, N)) < 0.5
    awg.upload_sequence([AwgStep({4: AwgWaveform(samples, markers)}, repeat=3)], name="rnd")
    emu = emulator(awg)
    wave = emu.waveforms["rnd_s1_ch4"]
    np.testing.assert_array_equal(wave.samples, samples)
    np.testing.assert_array_equal(wave.markers, markers)
    assert emu.sequences["rnd"].repeats == [3]
    assert awg.sequenceList == ["rnd"]
    assert awg.waveformList == ["rnd_s1_ch4"]
    assert awg.ch4.assigned_asset() == "rnd,1"


def test_sequence_runs_and_marker_edges_carry_the_skew(sim_instrument):
    awg = sim_instrument(TektronixAWG5208, "tektronix_awg5208")
    emu = emulator(awg)
    awg.sample_rate(2.5e9)
    awg.upload_sequence([pulse_step(repeat=2)])
    awg.ch1.output(True)
    awg.ch3.output(True)
    awg.ch3.skew(250e-12)
    assert emu.marker_edges(1e-6) == {}  # stopped: no edges
    awg.run()
    assert awg.run_state() == "Running"
    with pytest.raises(TimeoutError, match="still playing"):
        awg.wait_until_done(timeout=0.05)
    duration = 2e-6  # 5000 samples: 2 passes of 2 x 2400 samples and a bit
    edges = emu.marker_edges(duration)
    period_ps = 400.0
    expected = np.array([100, 2500, 4900]) * period_ps  # one edge a repetition
    intrinsic = [s * 1e12 for s in emu.intrinsic_skews_s]
    t0 = emu.run_start_ps
    np.testing.assert_array_equal(edges[(1, 1)], np.rint(t0 + expected + intrinsic[0]))
    np.testing.assert_array_equal(edges[(3, 1)],
                                  np.rint(t0 + expected + intrinsic[2] + 250.0))
    assert edges[(1, 2)].size == 0
    # The hidden skews differ between channels: what a calibration must find.
    assert abs(intrinsic[0] - intrinsic[2]) > 1.0
    awg.stop()
    awg.wait_until_done(timeout=1.0)
    assert awg.run_state() == "Stopped"


def test_run_without_a_sequence_is_reported(sim_instrument):
    awg = sim_instrument(TektronixAWG5208, "tektronix_awg5208")
    with pytest.raises(InstrumentReportedError, match="-221"):
        awg.run()


def test_transports_keep_binary_blocks_whole():
    from qnetlab.sim_instruments.faults import split_messages

    block = b"#14a\n;\n"  # a 4-byte block holding terminators
    stream = b'W:DATA "x",' + block + b"\n*OPC?\n" + b"W:DATA #15ab"
    messages, used = split_messages(stream, b"\n")
    assert messages == [b'W:DATA "x",' + block, b"*OPC?"]
    assert stream[used:] == b"W:DATA #15ab"  # its block has not fully arrived: wait


def test_qcodes_channel_settings_are_answered(sim_instrument):
    """The QCoDeS driver's marker, hold, function-generator and clock settings (AWG5200
    programmer manual) are kept and read back, in the forms its parameters parse."""
    awg = sim_instrument(TektronixAWG5208, "tektronix_awg5208")
    ch = awg.ch2
    ch.marker3_high(1.2)
    ch.marker3_low(0.1)
    assert (ch.marker3_high(), ch.marker3_low(), ch.marker1_high()) == (1.2, 0.1, 1.0)
    assert ch.marker3_waitvalue() == "LOW" and ch.marker3_stoppedvalue() == "LOW"
    ch.marker3_waitvalue("HIGH")
    assert ch.marker3_waitvalue() == "HIGH"
    assert ch.hold() == "ZERO"
    ch.fgen_type("SQUARE")
    ch.fgen_frequency(2e6)
    ch.fgen_signalpath("DC High Voltage")
    assert (ch.fgen_type(), ch.fgen_frequency(), ch.fgen_period()) == ("SQUARE", 2e6, 5e-7)
    assert ch.fgen_signalpath() == "DC High Voltage"
    assert awg.ch1.fgen_type() == "SINE"  # the other channels keep theirs
    assert awg.clock_external_frequency() == 2.5e9
    assert awg.all_output_off() is False
    with pytest.raises(InstrumentReportedError, match="-222"):
        awg.write("SOURce1:MARKer1:VOLTage:HIGH 3")


def test_dac_resolution_takes_markers_away(sim_instrument):
    awg = sim_instrument(TektronixAWG5208, "tektronix_awg5208")
    emu = emulator(awg)
    markers = np.ones((4, N), dtype=bool)
    markers[:, N // 2:] = False
    awg.upload_sequence([AwgStep({1: AwgWaveform(np.zeros(N), markers)})])
    awg.ch1.output(True)
    awg.ch1.resolution(14)  # 16 - 14 = 2 markers left
    awg.run()
    assert sorted(emu.marker_edges(1e-6)) == [(1, 1), (1, 2)]
    awg.all_output_off(True)
    assert emu.marker_edges(1e-6) == {}
