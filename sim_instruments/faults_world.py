"""Faults injected into a simulated bench's physics, for tests of calibration and diagnosis.

Unlike `sim_instruments.faults` (a connection misbehaving), these change the lab itself, the
way drift and ageing do: nothing the drivers read says so, only measurements show it. Each
takes an open station of the sim profile (or its `SimulatedBench`) and returns the new true
value, so a test can compare a calibration's result with it.

* `drop_detector_efficiency`: an SNSPD channel's plateau efficiency falls (a fibre
  connector degrading, the detector's optical alignment moving);
* `drift_optical_resonance`: the transducer's optical resonance moves away from the pump
  laser (a temperature or strain drift of the optical mode);
* `shift_tagger_input_delay`: a time-tagger input's hidden delay changes (a cable or fibre
  replaced by a longer one);
* `heat_mixing_chamber`: an extra heat load on the fridge's mixing chamber (it warms with
  lab time, which on the simulated bench passes as a sequence or a ramp waits);
* `shift_mw_resonance`: the transducer's microwave resonance jumps (a flux or TLS jump);
* `drop_pump_coupling`: the pump power delivered to the device falls (the fibre coupling
  into the fridge or a connector degrading).

In the realistic lab (``qnetlab.simulation.ideal: false``) the same quantities also drift
slowly with lab time (`sim_instruments.physics.drift`); a step fault changes the quantity the
drift is added to (or multiplies), so the two compose: after a step the lab keeps drifting
around the new value. `drift_state` tells what the drifts are now; each fault returns the
true value now, drift included (in the ideal lab: the new value), except
`drop_detector_efficiency`, whose plateau efficiency is the detector's own (the drift of its
path multiplies the light that reaches it).

All the faults: docs/simulation.md#5-fault-injection.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .bench import SimulatedBench
from .physics.drift import DriftState
from .physics.transducer import SPEED_OF_LIGHT
from .visa_backend import bench_of


def simulated_bench(station: Any) -> SimulatedBench:
    """The simulated bench behind a station (or `station` itself if it is one)."""
    if isinstance(station, SimulatedBench):
        return station
    for inst in station.instruments().values():
        if hasattr(inst, "visa_handle"):
            return bench_of(inst)
    raise TypeError("the station has no instrument on the qnetlab simulator: load it with "
                    "profile='sim'")


def drop_detector_efficiency(station: Any, factor: float, *, detector: str = "snspd",
                             slot: int = 1) -> float:
    """Multiply the plateau efficiency of `detector` channel `slot` by `factor` (0 < f < 1
    for a drop); returns the new plateau efficiency. In the realistic lab the channel's
    path efficiency keeps drifting on top (`LabWorld.detection_factor`), so the efficiency
    seen is this times ``drift_state(station).detection_factors["<detector>/slot<n>"]``."""
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    module = simulated_bench(station).device(detector).module(slot)  # type: ignore[attr-defined]
    module.model = dataclasses.replace(module.model,
                                       max_efficiency=module.model.max_efficiency * factor)
    return float(module.model.max_efficiency)


def drift_optical_resonance(station: Any, shift: float) -> float:
    """Move the transducer's optical resonance by `shift` Hz (positive: to higher frequency,
    shorter wavelength), leaving the pump laser where it is; returns the new resonance
    wavelength, m (vacuum), drift included (the realistic lab keeps drifting around it)."""
    world = simulated_bench(station).world
    frequency = world.transducer.optical_resonance_frequency + shift
    world.transducer = world.transducer.with_changes(
        optical_resonance_wavelength=SPEED_OF_LIGHT / frequency)
    return float(world.drifted_transducer().optical_resonance_wavelength)


def shift_mw_resonance(station: Any, shift: float) -> float:
    """Move the transducer's microwave resonance by `shift` Hz (a jump of the superconducting
    resonator: a flux trap, a two-level system), leaving the microwave source where it is;
    returns the new resonance frequency, Hz, drift included."""
    world = simulated_bench(station).world
    world.transducer = world.transducer.with_changes(
        mw_resonance_frequency=world.transducer.mw_resonance_frequency + shift)
    return float(world.mw_resonance_frequency())


def drop_pump_coupling(station: Any, factor: float) -> float:
    """Multiply the pump power delivered to the device by `factor` (0 < f < 1 for a drop:
    the fibre coupling into the fridge degrading), from now on; the laser still reports
    what it emits. Returns the pump power now at the device, W (drift included)."""
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    world = simulated_bench(station).world
    world.set_pump()  # bring the heating up to now under the old coupling
    world.pump_coupling *= factor
    return float(world.pump_power_at_device)


def drift_state(station: Any) -> DriftState:
    """The slow drifts of the station's simulated lab now (`physics.drift.DriftState`):
    resonance shifts, pump and detection factors, tagger delay shifts; zeros and ones in the
    ideal lab. Detection channels and tagger inputs appear once an instrument has read them
    (keys ``<detector>/slot<n>`` and ``<tagger>/input<n>``)."""
    return simulated_bench(station).world.drift_state()


def shift_tagger_input_delay(station: Any, tagger_input: int, shift_ps: int, *,
                             tagger: str = "tagger") -> int:
    """Lengthen the hidden delay of `tagger` input `tagger_input` (from 1) by `shift_ps` ps;
    returns the new hidden delay now, ps, drift included (in the realistic lab the input's
    delay keeps drifting on top: `LabWorld.tagger_delay_drift_ps`)."""
    emulator = simulated_bench(station).zmq_devices[tagger]
    model = emulator.model  # type: ignore[attr-defined]
    channels = list(model.channels)
    old = channels[tagger_input - 1]
    channels[tagger_input - 1] = dataclasses.replace(old, delay_ps=old.delay_ps + int(shift_ps))
    emulator.model = dataclasses.replace(model, channels=tuple(channels))  # type: ignore[attr-defined]
    world = simulated_bench(station).world
    return int(channels[tagger_input - 1].delay_ps) + world.tagger_delay_drift_ps(
        tagger, tagger_input)


def heat_mixing_chamber(station: Any, watts: float) -> float:
    """Put an extra heat load of `watts` W on the mixing chamber (a heater left on, a thermal
    short), from now on, besides the absorbed pump power; 0 removes it. Returns the
    temperature (K) the mixing chamber relaxes towards, with its time constant, under the
    load and the pump as it is now."""
    if not watts >= 0:
        raise ValueError(f"watts must be >= 0, got {watts}")
    world = simulated_bench(station).world
    world.set_extra_heat_load(watts)
    return float(world.fridge.equilibrium_temperature(world.absorbed_pump_power + watts))
