"""The transducer presets against their papers (issue 13, item 4).

Each preset's model, driven on the simulated lab at each of its paper's operating points,
gives the paper's efficiency and the paper's added noise referred to the input (converted
where the paper quotes it at the output); the pulsing fields the link model reads are present
and consistent. The numbers below are typed from the papers' abstracts (the presets' comments
name them), not read back from the presets, so a preset that drifts from its paper fails here.
The world's efficiency and added noise are exact functions of the model (no noise), in both
the ideal and the realistic lab: the presets are the truth, not a noisy reading of it.
"""

from __future__ import annotations

import math

import pytest

from qnetlab.sim_instruments.physics.fridge import FridgeModel
from qnetlab.sim_instruments.physics.link import node_optics_from_preset
from qnetlab.sim_instruments.physics.presets import PRESETS, TransducerPreset, get_preset
from qnetlab.sim_instruments.physics.world import LabWorld

# preset: [(efficiency, input-referred N_add as the paper gives it or converted), ...]
PAPERS: dict[str, list[tuple[float, float]]] = {
    # Sahu 2022: 8.7 % at 0.16 input photons, up to 15 % at 0.41
    "bulk_eo_pulsed": [(0.087, 0.16), (0.15, 0.41)],
    # Hease 2020: total efficiency 0.03 %, added OUTPUT noise <= 0.074: 0.074 / 3e-4 at input
    "bulk_eo_cw": [(3e-4, 0.074 / 3e-4)],
    "piezo_om_integrated": [(0.009, 3.0)],
    "piezo_om": [(0.05, 100.0)],
    # Zhao 2024: 2.2 % at 0.94, 0.47 % at 0.58 (input-referred)
    "silicon_cw": [(0.022, 0.94), (0.0047, 0.58)],
    # Brubaker 2022: maximum efficiency 47 %; minimum input-referred N_add 3.2
    "membrane_eom": [(0.47, 4.0), (0.47 / 0.75 * 0.48, 3.2)],
}


def world_at(preset: TransducerPreset, pump_power: float, ideal: bool) -> LabWorld:
    """The world tuned on both resonances at `pump_power`, heating in steady state."""
    world = LabWorld(preset.model, FridgeModel(), seed=3, ideal=ideal)
    m = world.transducer
    world.set_pump(power=pump_power, on=True, wavelength=m.optical_resonance_wavelength)
    world.set_mw_drive(frequency=m.mw_resonance_frequency, power_dbm=0, on=True)
    world.advance(1000 * m.heating_tau_slow)
    return world


def test_every_preset_has_a_paper_entry() -> None:
    assert set(PAPERS) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_operating_point_gives_the_papers_numbers(name: str) -> None:
    preset = get_preset(name)
    points = preset.operating_points
    got = [x for p in points for x in (p.efficiency, p.added_noise)]
    assert got == pytest.approx([x for pair in PAPERS[name] for x in pair], rel=1e-12)
    for point in points:
        world = world_at(preset, point.pump_power, ideal=True)
        assert world.efficiency() == pytest.approx(point.efficiency, rel=1e-9), point
        assert world.added_noise() == pytest.approx(point.added_noise, rel=1e-6), point
    # the primary point is what the rest of the code (link model, tests) reads
    first = points[0]
    assert (preset.operating_pump_power, preset.quoted_efficiency,
            preset.quoted_added_noise) == (first.pump_power, first.efficiency,
                                           first.added_noise)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_the_realistic_lab_has_the_same_truth(name: str) -> None:
    """Realism adds instrument errors and drifts around the device, not a different device:
    the realistic world's transducer is the preset's, and its noise at an operating point
    (heating from the delivered, drifting pump power) stays at the paper's within the
    pump-power drift."""
    preset = get_preset(name)
    point = preset.operating_points[0]
    world = world_at(preset, point.pump_power, ideal=False)
    assert world.transducer == preset.model
    m = preset.model
    delivered = world.pump_power_at_device
    assert delivered == pytest.approx(point.pump_power, rel=0.2)  # drift, not a new device
    assert m.efficiency(point.pump_power, 0.0, 0.0) == pytest.approx(point.efficiency,
                                                                     rel=1e-9)


def test_hease_noise_is_converted_from_the_output() -> None:
    point = get_preset("bulk_eo_cw").operating_points[0]
    assert point.paper_referred == "output" and point.paper_added_noise == 0.074
    assert point.added_noise == pytest.approx(246.67, rel=1e-4)
    assert "0.074 / 0.0003" in point.conversion


def test_two_best_cases_are_two_operating_points() -> None:
    # Brubaker: the 47 % and the 3.2 photons are not reached at one pump power.
    best_eta, low_noise = get_preset("membrane_eom").operating_points
    assert best_eta.efficiency == 0.47 and low_noise.added_noise == 3.2
    assert low_noise.pump_power < best_eta.pump_power
    assert low_noise.efficiency < best_eta.efficiency
    assert low_noise.added_noise < best_eta.added_noise


def test_jiang_heating_adds_less_than_two_photons() -> None:
    preset = get_preset("piezo_om")
    m = preset.model
    heating = m.steady_added_noise(m.absorbed_fraction * preset.operating_pump_power) \
        - m.intrinsic_added_noise
    assert 0 < heating < 2.0
    assert m.steady_added_noise(m.absorbed_fraction * preset.operating_pump_power) \
        == pytest.approx(100.0)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_pulsing_fields_are_present_and_consistent(name: str) -> None:
    preset = get_preset(name)
    assert 0 < preset.pump_duty_cycle <= 1
    if preset.repetition_rate is None:
        assert preset.pump_pulse_length is None and preset.pump_duty_cycle == 1.0
    else:
        assert preset.pump_pulse_length is not None
        assert preset.repetition_rate > 0 and preset.pump_pulse_length > 0
        # a pulse fits in its period, and the duty cycle is what the two give
        assert preset.pump_pulse_length < 1.0 / preset.repetition_rate
        assert preset.pump_duty_cycle == pytest.approx(
            preset.repetition_rate * preset.pump_pulse_length, rel=1e-12)


def test_pulsed_and_cw_devices_are_the_papers() -> None:
    pulsed = {name for name, p in PRESETS.items() if p.repetition_rate is not None}
    assert pulsed == {"bulk_eo_pulsed", "piezo_om_integrated", "piezo_om"}
    # Sahu 2022 is a Hz-class pulsed device
    sahu = get_preset("bulk_eo_pulsed")
    assert sahu.repetition_rate is not None and sahu.repetition_rate <= 10.0


def test_a_preset_with_inconsistent_pulsing_is_refused() -> None:
    preset = get_preset("bulk_eo_pulsed")
    with pytest.raises(ValueError, match="pump_duty_cycle"):
        TransducerPreset(preset.model, preset.operating_pump_power, preset.quoted_efficiency,
                         preset.quoted_added_noise, 1.0, 1e-6, 0.5)
    with pytest.raises(ValueError, match="both repetition_rate and pump_pulse_length"):
        TransducerPreset(preset.model, preset.operating_pump_power, preset.quoted_efficiency,
                         preset.quoted_added_noise, 1.0, None, 1.0)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_the_link_node_takes_the_primary_point(name: str) -> None:
    optics = node_optics_from_preset(name, 10.0)
    first = get_preset(name).operating_points[0]
    assert optics.transducer_efficiency == pytest.approx(first.efficiency, rel=1e-9)
    assert optics.transducer_added_noise == pytest.approx(first.added_noise, rel=1e-9)
    assert math.isfinite(optics.transducer_added_noise)
