"""Thorlabs PM100D: the reused contrib driver, fixed, against its emulator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qnetlab.drivers.thorlabs import ThorlabsPM100D
from qnetlab.instruments.conformance import assert_conforms
from qnetlab.instruments.errors import InstrumentReportedError
from qnetlab.sim_instruments.devices.thorlabs_pm100d import ThorlabsPM100DEmulator, responsivity
from qnetlab.sim_instruments.visa_backend import bench_of

NOISE = ThorlabsPM100DEmulator.noise_floor
SAMPLE_TIME = ThorlabsPM100DEmulator.sample_time


def _light_on(meter):
    """Pump and microwave drive on resonance: converted light reaches the meter."""
    world = bench_of(meter).world
    world.set_pump(power=1e-3, wavelength=world.transducer.optical_resonance_wavelength, on=True)
    world.set_mw_drive(frequency=world.transducer.mw_resonance_frequency, power_dbm=0.0, on=True)
    meter.wavelength(world.pump.wavelength)
    return world


def test_conforms_to_optical_power_meter(sim_instrument):
    assert_conforms(sim_instrument(ThorlabsPM100D, "thorlabs_pm100d"))


def test_connect_and_read_without_sleeping(sim_instrument, monkeypatch):
    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"driver slept {seconds} s")

    monkeypatch.setattr("qcodes_contrib_drivers.drivers.Thorlabs.PM100D.sleep", no_sleep)
    meter = sim_instrument(ThorlabsPM100D, "thorlabs_pm100d")
    assert math.isfinite(meter.power())


def test_contrib_parameters_work(sim_instrument):
    meter = sim_instrument(ThorlabsPM100D, "thorlabs_pm100d")
    assert meter.averaging() == 300  # what the contrib driver sets at connect
    meter.averaging(17)
    assert meter.ask("SENS:AVER?") == "17"
    meter.beam_diameter(2.5e-3)
    assert meter.beam_diameter() == pytest.approx(2.5e-3)
    meter.attenuation(3.0)
    assert meter.attenuation() == 3.0
    meter.power_range(1e-3)
    assert meter.auto_range() is False  # a fixed range switches auto-ranging off
    meter.auto_range(True)
    assert meter.auto_range() is True
    assert meter.current_range() > 0
    assert meter.zero_value() == 0.0
    assert meter.frequency() == 0.0


def test_reads_the_converted_optical_power(sim_instrument):
    meter = sim_instrument(ThorlabsPM100D, "thorlabs_pm100d", ideal=True)
    world = _light_on(meter)
    meter.averaging(100)
    expected = world.optical_output_power()
    sigma_reading = NOISE / math.sqrt(100)
    assert expected > 100 * sigma_reading  # a real signal, well above the noise
    readings = np.array([meter.power() for _ in range(40)])
    assert abs(readings.mean() - expected) < 5 * sigma_reading / math.sqrt(len(readings))
    assert readings.std(ddof=1) == pytest.approx(sigma_reading, rel=0.3)


def test_averaging_reduces_the_noise_by_sqrt_count(sim_instrument):
    meter = sim_instrument(ThorlabsPM100D, "thorlabs_pm100d", ideal=True)
    _light_on(meter)
    meter.averaging(1)
    single = np.std([meter.power() for _ in range(60)], ddof=1)
    meter.averaging(100)
    averaged = np.std([meter.power() for _ in range(60)], ddof=1)
    assert single / averaged == pytest.approx(10, rel=0.35)


def test_no_light_reads_only_noise(sim_instrument):
    meter = sim_instrument(ThorlabsPM100D, "thorlabs_pm100d")
    meter.averaging(1)
    readings = np.array([meter.power() for _ in range(50)])
    assert abs(readings.mean()) < 5 * NOISE / math.sqrt(len(readings))


def test_corrections_scale_the_reading(sim_instrument):
    meter = sim_instrument(ThorlabsPM100D, "thorlabs_pm100d", ideal=True)
    world = _light_on(meter)
    meter.averaging(1000)  # noise 1.6 pW against a signal of nW
    true_power = world.optical_output_power()
    meter.wavelength(1310e-9)  # wrong correction wavelength
    ratio = responsivity(world.pump.wavelength) / responsivity(1310e-9)
    assert meter.power() == pytest.approx(true_power * ratio, rel=1e-2)
    meter.wavelength(world.pump.wavelength)
    meter.attenuation(10.0)  # a 10 dB attenuator in front of the sensor, compensated
    assert meter.power() == pytest.approx(10 * true_power, rel=1e-2)


def test_a_reading_takes_count_times_the_sample_time(sim_instrument):
    meter = sim_instrument(ThorlabsPM100D, "thorlabs_pm100d")
    world = bench_of(meter).world
    meter.averaging(250)
    t0 = world.now()
    meter.power()
    assert world.now() - t0 == pytest.approx(250 * SAMPLE_TIME)
    # A measurement runs while the lab's time passes: FETCh? after it is done does not wait.
    meter.write("INIT")
    world.advance(10.0)
    t1 = world.now()
    float(meter.ask("FETC?"))
    assert world.now() == t1
    # ... and FETCh? right after INIT waits for the rest of it.
    meter.write("INIT")
    t2 = world.now()
    float(meter.ask("FETCh?"))
    assert world.now() - t2 == pytest.approx(250 * SAMPLE_TIME)


def test_short_and_long_forms_case_insensitive(sim_instrument):
    meter = sim_instrument(ThorlabsPM100D, "thorlabs_pm100d")
    meter.write("sense:correction:wavelength 1310")
    assert float(meter.ask("CORR:WAV?")) == 1310
    assert meter.wavelength() == pytest.approx(1310e-9)
    meter.write("SENS:AVER:COUN 12")
    assert meter.ask("aver?") == "12"
    meter.write("Sense:Correction:Loss:Input:Magnitude 1.5")
    assert float(meter.ask("CORR?")) == 1.5
    assert float(meter.ask("measure:scalar:power?")) == pytest.approx(float(meter.ask("read?")),
                                                                      abs=1e-9)
    assert meter.ask("*IDN?").startswith("Thorlabs,PM100D,")


def test_measure_without_query_is_an_error(sim_instrument):
    # The contrib driver's `MEAS:POW` (no '?'): MEASure is query-only in the reference.
    meter = sim_instrument(ThorlabsPM100D, "thorlabs_pm100d")
    with pytest.raises(InstrumentReportedError, match="-113"):
        meter.write("MEAS:POW")


def test_out_of_range_is_reported_from_the_error_queue(sim_instrument):
    meter = sim_instrument(ThorlabsPM100D, "thorlabs_pm100d")
    meter.wavelength(1550e-9)
    with pytest.raises(InstrumentReportedError, match=r"-222.*Data out of range"):
        meter.wavelength(1800e-9)  # inside the console's range, outside the InGaAs sensor's
    assert meter.wavelength() == pytest.approx(1550e-9)
    with pytest.raises(InstrumentReportedError, match="-222"):
        meter.write("SENS:AVER 0")
    with pytest.raises(InstrumentReportedError, match="-113"):
        meter.write("SENS:CORR:WAVELENGHT 1550")
    meter._check_error()  # the queue is empty again: no raise
