"""The whole simulated bench measures what the transducer model says, through the drivers.

The microwave tone is converted into light that the power meter reads; its mean must follow
``eta = eta_e eta_o 4C/(1+C)^2`` (C = P_pump / P_1) times the photon-energy ratio, within the
meter's noise. The tolerance is 5 standard errors of the mean of the readings (a chance of
about 6e-7 per comparison to fail with a correct bench), from the meter's stated noise floor.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.station import load_station
from qnetlab.sim_instruments.devices.thorlabs_pm100d import ThorlabsPM100DEmulator
from qnetlab.sim_instruments.physics.transducer import SPEED_OF_LIGHT
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import BENCH_CONFIG

READINGS = 10
AVERAGING = 100


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    # The clean lab: the bench against the model's formulas with the settings exact (the
    # realistic lab's instrument errors and drift: test_instrument_realism.py, test_drift.py).
    config = load_config(BENCH_CONFIG).with_simulation(ideal=True)
    path = config.to_yaml(tmp_path_factory.mktemp("bench") / "bench.yaml").path
    with load_station(path) as st:
        yield st


@pytest.mark.parametrize("pump_power", [0.5e-3, 2e-3, 8e-3])
def test_converted_power_follows_the_cooperativity_model(station, pump_power):
    setup = station.setup
    world = bench_of(setup.mw_source).world
    m = world.transducer
    setup.mw_frequency(m.mw_resonance_frequency)
    setup.mw_power(10.0)
    setup.mw_source.rf_output(True)
    setup.pump_detuning(0.0)
    setup.pump_power(pump_power)
    setup.pump_on(True)
    meter = setup.power_meter
    meter.wavelength(setup.pump_laser.wavelength())
    meter.averaging(AVERAGING)
    readings = np.array([meter.power() for _ in range(READINGS)])

    # the expectation, from the model's formulas and what was commanded through the drivers
    # (the wavelength as the laser reports it: it settles on its 0.1 pm grid)
    p = pump_power
    wavelength = setup.pump_laser.wavelength()
    c = p / m.pump_power_at_unit_cooperativity
    detuning = SPEED_OF_LIGHT / wavelength - SPEED_OF_LIGHT / m.optical_resonance_wavelength
    eta = (m.external_efficiency * 4 * c / (1 + c) ** 2
           / (1 + (2 * detuning / m.optical_linewidth) ** 2))
    s = world.settings
    mw_watts = 1e-3 * 10 ** ((10.0 - s.mw_line_attenuation_db) / 10)
    photon_ratio = (SPEED_OF_LIGHT / wavelength) / m.mw_resonance_frequency
    leak = p * 10 ** (-s.pump_filter_suppression_db / 10)
    expected = (eta * mw_watts * photon_ratio + leak) * 10 ** (-s.optical_output_loss_db / 10)

    sigma_mean = ThorlabsPM100DEmulator.noise_floor / math.sqrt(AVERAGING * READINGS)
    assert abs(readings.mean() - expected) < 5 * sigma_mean
    assert expected > 1000 * sigma_mean  # the test resolves the signal, not the noise


def test_microwave_tone_off_resonance_converts_less(station):
    setup = station.setup
    world = bench_of(setup.mw_source).world
    m = world.transducer
    setup.pump_power(2e-3)
    setup.pump_on(True)
    setup.mw_source.rf_output(True)
    setup.power_meter.averaging(AVERAGING)
    setup.mw_frequency(m.mw_resonance_frequency)
    on = np.mean([setup.optical_power() for _ in range(READINGS)])
    f0, f1 = m.mw_resonance_frequency, m.mw_resonance_frequency + m.mw_linewidth / 2
    setup.mw_frequency(f1)
    half = np.mean([setup.optical_power() for _ in range(READINGS)])
    sigma = ThorlabsPM100DEmulator.noise_floor / math.sqrt(AVERAGING * READINGS)
    # half maximum at half the linewidth; the same tone power at a higher frequency carries
    # fewer photons per second, by f0 / f1
    assert abs(half - on / 2 * f0 / f1) < 5 * math.sqrt(2) * sigma
