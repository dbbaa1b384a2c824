"""The simulated world against the model's own formulas (docs/transducer.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qnetlab.sim_instruments.physics.fridge import FridgeModel
from qnetlab.sim_instruments.physics.presets import PRESETS, get_preset
from qnetlab.sim_instruments.physics.transducer import SPEED_OF_LIGHT
from qnetlab.sim_instruments.physics.world import LabWorld


def world_for(preset: str, seed: int = 1) -> LabWorld:
    # The clean lab (ideal): these tests hold the world to its formulas exactly; the
    # realistic lab's drifts and instrument errors have their own tests (test_drift.py,
    # test_instrument_realism.py).
    return LabWorld(get_preset(preset).model, FridgeModel(), seed=seed, ideal=True)


def tune(world: LabWorld, pump_power: float, pump_detuning: float = 0.0,
         mw_detuning: float = 0.0) -> None:
    m = world.transducer
    world.set_pump(power=pump_power, on=True,
                   wavelength=SPEED_OF_LIGHT / (m.optical_resonance_frequency + pump_detuning))
    world.set_mw_drive(frequency=m.mw_resonance_frequency + mw_detuning, power_dbm=0, on=True)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_reproduce_their_papers_at_the_operating_point(name):
    preset = PRESETS[name]
    world = world_for(name)
    tune(world, preset.operating_pump_power)
    assert world.efficiency() == pytest.approx(preset.quoted_efficiency, rel=1e-9)
    world.advance(1000 * preset.model.heating_tau_slow)  # heating reaches steady state
    assert world.added_noise() == pytest.approx(preset.quoted_added_noise, rel=1e-6)


@pytest.mark.parametrize("ratio", [0.1, 0.5, 1.0, 2.0, 5.0])
def test_electro_optic_efficiency_follows_cooperativity(ratio):
    world = world_for("bulk_eo_pulsed")
    m = world.transducer
    tune(world, ratio * m.pump_power_at_unit_cooperativity)
    c = ratio
    assert world.efficiency() == pytest.approx(m.external_efficiency * 4 * c / (1 + c) ** 2)


def test_electro_optic_peak_is_at_unit_cooperativity():
    world = world_for("bulk_eo_pulsed")
    m = world.transducer
    powers = np.linspace(0.2, 3, 281) * m.pump_power_at_unit_cooperativity
    effs = []
    for p in powers:
        tune(world, p)
        effs.append(world.efficiency())
    assert powers[int(np.argmax(effs))] == pytest.approx(m.pump_power_at_unit_cooperativity,
                                                         rel=0.011)


def test_optomechanical_efficiency_formula():
    world = world_for("membrane_eom")
    m = world.transducer
    for c_om in (0.5, 2.0, 4.0, 8.0):
        tune(world, c_om * m.pump_power_at_unit_cooperativity)
        c_em = m.em_cooperativity
        assert world.efficiency() == pytest.approx(
            m.external_efficiency * 4 * c_em * c_om / (1 + c_em + c_om) ** 2)


@pytest.mark.parametrize("fwhm_fraction", [0.0, 0.25, 0.5, 1.0, 3.0])
def test_detunings_multiply_in_lorentzians(fwhm_fraction):
    world = world_for("bulk_eo_cw")
    m = world.transducer
    p = 1e-3
    tune(world, p)
    on_resonance = world.efficiency()
    pump_detuning = fwhm_fraction * m.optical_linewidth
    mw_detuning = fwhm_fraction * m.mw_linewidth
    tune(world, p, pump_detuning=pump_detuning, mw_detuning=mw_detuning)
    expected = on_resonance / (1 + (2 * fwhm_fraction) ** 2) ** 2
    assert world.efficiency() == pytest.approx(expected, rel=1e-6)
    # half maximum at half the linewidth, in each detuning alone
    tune(world, p, pump_detuning=m.optical_linewidth / 2)
    assert world.efficiency() == pytest.approx(on_resonance / 2, rel=1e-6)


def test_pump_off_means_no_conversion_and_no_heating():
    world = world_for("bulk_eo_cw")
    tune(world, 5e-3)
    world.set_pump(on=False)
    world.advance(3600)
    assert world.efficiency() == 0
    assert world.added_noise() == pytest.approx(world.transducer.intrinsic_added_noise)
    assert world.mxc_temperature() == pytest.approx(world.fridge.base_temperature)


def test_heating_relaxes_with_fast_and_slow_time_constants():
    world = world_for("membrane_eom")
    m = world.transducer
    p = 4e-3
    tune(world, p)
    world.advance(100 * m.heating_tau_slow)
    world.set_pump(on=False)
    absorbed = m.absorbed_fraction * p
    for t in (0.5 * m.heating_tau_fast, 2 * m.heating_tau_fast, 0.3 * m.heating_tau_slow,
              m.heating_tau_slow, 3 * m.heating_tau_slow):
        w = world_for("membrane_eom")
        tune(w, p)
        w.advance(100 * m.heating_tau_slow)
        w.set_pump(on=False)
        w.advance(t)
        expected = m.intrinsic_added_noise + absorbed * (
            m.heating_noise_fast * math.exp(-t / m.heating_tau_fast)
            + m.heating_noise_slow * math.exp(-t / m.heating_tau_slow))
        assert w.added_noise() == pytest.approx(expected, rel=1e-9)


def test_fridge_warms_to_equilibrium_with_its_time_constant():
    world = world_for("bulk_eo_cw")
    f = world.fridge
    p = 5e-3
    tune(world, p)
    load = world.transducer.absorbed_fraction * p
    t_eq = math.sqrt(f.base_temperature**2 + load / f.cooling_coefficient)
    world.advance(f.time_constant)
    expected = t_eq + (f.base_temperature - t_eq) * math.exp(-1)
    assert world.mxc_temperature() == pytest.approx(expected, rel=1e-9)
    world.advance(50 * f.time_constant)
    assert world.mxc_temperature() == pytest.approx(t_eq, rel=1e-9)


def test_fridge_cooling_power_matches_reference():
    # docs/transducer.md#3-the-fridge: ~10-20 uW of cooling power at ~15 mK (marked
    # "check"); the model's a*(T^2 - T0^2) must land in that class.
    f = FridgeModel()
    power_at_15mk = f.cooling_coefficient * (0.015**2 - f.base_temperature**2)
    assert 3e-6 < power_at_15mk < 20e-6


def test_converted_power_conserves_photon_number():
    world = world_for("bulk_eo_cw")
    tune(world, 1e-3)
    s = world.settings
    mw_at_device = world.mw_power_at_device()
    ratio = world.optical_output_power() * 10 ** (s.optical_output_loss_db / 10) / mw_at_device
    f_opt = SPEED_OF_LIGHT / world.pump.wavelength
    leak = world.pump_power_at_device * 10 ** (-s.pump_filter_suppression_db / 10)
    expected = world.efficiency() * f_opt / world.mw_drive.frequency + leak / mw_at_device
    assert ratio == pytest.approx(expected, rel=1e-9)


def test_randomness_is_seeded_and_per_consumer():
    a, b = world_for("bulk_eo_cw", seed=7), world_for("bulk_eo_cw", seed=7)
    # the order in which consumers draw does not change what each one gets
    first_vna = a.rng("vna").normal(size=3)
    a.rng("power_meter").normal(size=100)
    b.rng("power_meter").normal(size=5)
    assert np.array_equal(first_vna, b.rng("vna").normal(size=3))
    assert not np.array_equal(first_vna, world_for("bulk_eo_cw", seed=8).rng("vna").normal(size=3))


def test_mw_reflection_dip_depth_and_width():
    world = world_for("bulk_eo_cw")
    m = world.transducer
    f0, kappa = m.mw_resonance_frequency, m.mw_linewidth
    s11 = world.mw_reflection(np.array([f0, f0 + kappa / 2, f0 + 100 * kappa]))
    assert s11[0] == pytest.approx(1 - 2 * m.mw_coupling_ratio)
    assert abs(s11[2]) == pytest.approx(1, abs=1e-3)
    # at half the linewidth the Lorentzian term has dropped to 1/sqrt(2) in magnitude
    assert abs(1 - s11[1]) == pytest.approx(2 * m.mw_coupling_ratio / math.sqrt(2))
