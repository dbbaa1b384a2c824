"""The shared world of one simulated bench.

Every emulator of a bench holds the same `LabWorld`: the pump laser sets the pump, the
microwave source sets the drive, and the VNA, power meter and thermometry observe the
transducer and the fridge. The world integrates its slow state (transducer heating,
mixing-chamber temperature) lazily, exactly, for piecewise-constant inputs, whenever it is
read or its inputs change. Random numbers come from per-consumer generators derived from
one seed, so results do not depend on the order instruments are queried in.

What each model covers: docs/simulation.md#1-physics.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from .clock import Clock, VirtualClock
from .drift import DriftState, LabDrift
from .fridge import FridgeModel
from .optical_switch import SwitchPaths
from .photons import DetectionPath, incident_photon_rates
from .pump_lock import PumpLock
from .transducer import PLANCK, SPEED_OF_LIGHT, TransducerModel


@dataclass
class PumpLaser:
    power: float = 0.0
    """Output power, W."""
    wavelength: float = 1550.0e-9
    """m"""
    on: bool = False


@dataclass
class MicrowaveDrive:
    frequency: float = 8.0e9
    """Hz"""
    power_dbm: float = -20.0
    on: bool = False


@dataclass
class WorldSettings:
    mw_line_attenuation_db: float = 60.0
    """Attenuation from the microwave source to the device (fridge lines), dB."""
    pump_filter_suppression_db: float = 120.0
    """Suppression of pump light on the optical output path (filter cavities), dB."""
    optical_output_loss_db: float = 3.0
    """Loss from the device's optical port to the power meter, dB."""
    vna_noise: float = 2e-3
    """Standard deviation of the VNA's complex trace noise at 1 kHz IF bandwidth (linear)."""


IDEAL_DEFAULT = False
"""The simulated lab is realistic unless asked otherwise (issue 13): ``qnetlab.simulation.ideal:
true`` in a lab config, or ``LabWorld(..., ideal=True)``, gives the clean lab (exact
instruments, no drift, calibration constants exactly as stated)."""


@dataclass
class LabWorld:
    transducer: TransducerModel
    fridge: FridgeModel = field(default_factory=FridgeModel)
    seed: int = 0
    clock: Clock = field(default_factory=VirtualClock)
    settings: WorldSettings = field(default_factory=WorldSettings)
    ideal: bool = IDEAL_DEFAULT
    """False (the default): the realistic lab, with each instrument's data-sheet noise and
    accuracy and slow seeded drifts. True: the clean lab (exact instruments, no drift)."""

    def __post_init__(self) -> None:
        self.pump = PumpLaser(wavelength=self.transducer.optical_resonance_wavelength)
        self.mw_drive = MicrowaveDrive(frequency=self.transducer.mw_resonance_frequency)
        self.mw_drive_locked = False
        self._heating_fast = 0.0
        self._heating_slow = 0.0
        self._extra_heat_load = 0.0
        self._mxc_temperature = self.fridge.base_temperature
        self._t_last = self.clock.now()
        self.pump_coupling = 1.0
        """Pump power delivered to the device over the nominal, besides drift (a step fault:
        `faults_world.drop_pump_coupling`)."""
        # The drifts draw nothing until read, and only a realistic world reads them.
        self.drift = LabDrift(self.rng, photorefractive=self.transducer.kind == "electro_optic")
        self.optical_switches: dict[str, SwitchPaths] = {}
        """The optical switches on this bench, by instrument name (`switch_transmission`)."""
        self.pump_lock: PumpLock | None = None
        """The pump's lock to the optical resonance, on a bench with an offset synthesizer
        (`pump_lock`; the bench sets it); None: the laser runs free at its setting."""

    # -- randomness -----------------------------------------------------------------------
    def rng(self, consumer: str) -> np.random.Generator:
        """A generator for one consumer (an instrument), independent of all others."""
        return np.random.default_rng([self.seed, zlib.crc32(consumer.encode())])

    # -- time -------------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.now()

    def advance(self, seconds: float) -> None:
        """Let lab time pass (instantly on a virtual clock)."""
        self._integrate()
        self.clock.advance(seconds)
        self._integrate()

    def _integrate(self) -> None:
        t = self.clock.now()
        dt = t - self._t_last
        if dt <= 0:
            return
        if self.ideal:
            self._relax(dt, self.absorbed_pump_power)
        else:
            # The delivered pump drifts, held constant over each drift grid cell, so the
            # exact relaxation per cell keeps the result independent of the read cadence.
            nominal = self._nominal_pump_power()
            for piece, factor in self.drift.pump_cells(self._t_last, t):
                power = nominal * factor
                self._relax(piece, self.transducer.absorbed_fraction * power)
                self.drift.integrate(piece, power)
        self._t_last = t

    def _relax(self, dt: float, absorbed: float) -> None:
        """Heating and mixing chamber after `dt` s under a constant absorbed power (W)."""
        m = self.transducer
        self._heating_fast = absorbed + (self._heating_fast - absorbed) * math.exp(
            -dt / m.heating_tau_fast
        )
        self._heating_slow = absorbed + (self._heating_slow - absorbed) * math.exp(
            -dt / m.heating_tau_slow
        )
        self._mxc_temperature = self.fridge.relax(
            self._mxc_temperature, absorbed + self._extra_heat_load, dt
        )

    # -- inputs (instruments call these) ------------------------------------------------------
    def set_pump(
        self, *, power: float | None = None, wavelength: float | None = None, on: bool | None = None
    ) -> None:
        self._integrate()
        if power is not None:
            self.pump.power = power
        if wavelength is not None:
            self.pump.wavelength = wavelength
        if on is not None:
            self.pump.on = on

    def set_mw_drive(
        self, *, frequency: float | None = None, power_dbm: float | None = None,
        on: bool | None = None,
    ) -> None:
        if frequency is not None:
            self.mw_drive.frequency = frequency
        if power_dbm is not None:
            self.mw_drive.power_dbm = power_dbm
        if on is not None:
            self.mw_drive.on = on

    def set_extra_heat_load(self, watts: float) -> None:
        """A heat load on the mixing chamber besides the pump (a heater, a fault)."""
        self._integrate()
        self._extra_heat_load = watts

    # -- observables -------------------------------------------------------------------------
    def _nominal_pump_power(self) -> float:
        """Pump power at the device without drift, W (the coupling step fault applied)."""
        if not self.pump.on:
            return 0.0
        return self.pump.power * self.pump_coupling  # x 1.0 is exact: ideal unchanged

    @property
    def pump_power_at_device(self) -> float:
        """Pump power at the device, W; drifting with the fibre coupling in a realistic lab."""
        if self.ideal:
            return self._nominal_pump_power()
        return self._nominal_pump_power() * self.drift.pump_factor(self.clock.now())

    @property
    def absorbed_pump_power(self) -> float:
        return self.transducer.absorbed_fraction * self.pump_power_at_device

    @property
    def pump_detuning(self) -> float:
        """Pump laser frequency minus the optical resonance (as it has drifted), Hz: while
        the pump is locked, the lock's offset plus its residual error."""
        free = SPEED_OF_LIGHT / self.pump.wavelength - self.optical_resonance_frequency()
        lock = self.pump_lock
        if lock is not None and lock.holds(free):
            return lock.detuning(self.clock.now())
        return free

    @property
    def mw_detuning(self) -> float:
        """Microwave tone minus the microwave resonance (as it has drifted), Hz."""
        return self.mw_drive.frequency - self.mw_resonance_frequency()

    # -- drift (realistic lab only) ---------------------------------------------------------
    def optical_resonance_frequency(self) -> float:
        """The optical resonance now, Hz: the transducer's plus its drift (realistic lab)."""
        if self.ideal:
            return self.transducer.optical_resonance_frequency
        self._integrate()  # the photorefractive shift follows the pump up to now
        return (self.transducer.optical_resonance_frequency
                + self.drift.optical_shift(self.clock.now()))

    def mw_resonance_frequency(self) -> float:
        """The microwave resonance now, Hz: the transducer's plus its drift."""
        if self.ideal:
            return self.transducer.mw_resonance_frequency
        return self.transducer.mw_resonance_frequency + self.drift.mw_shift(self.clock.now())

    def drifted_transducer(self) -> TransducerModel:
        """The transducer as it is now: its resonances moved by the drifts (ideal: itself)."""
        if self.ideal:
            return self.transducer
        return self.transducer.with_changes(
            optical_resonance_wavelength=SPEED_OF_LIGHT / self.optical_resonance_frequency(),
            mw_resonance_frequency=self.mw_resonance_frequency())

    def detection_factor(self, channel: str | None = None) -> float:
        """Efficiency of detection path `channel` over its nominal now (fibre coupling and
        polarization drift); 1 in the ideal lab."""
        if self.ideal:
            return 1.0
        return self.drift.detection_factor(channel or "default", self.clock.now())

    def tagger_delay_drift_ps(self, tagger: str, tagger_input: int) -> int:
        """How far the hidden delay of `tagger` input `tagger_input` (from 1) has drifted
        now, whole ps; 0 in the ideal lab."""
        if self.ideal:
            return 0
        return round(self.drift.tagger_delay_ps(f"{tagger}/input{tagger_input}",
                                                self.clock.now()))

    def drift_state(self) -> DriftState:
        """Every drift now (all zero, factors 1, in the ideal lab)."""
        if self.ideal:
            return DriftState(time=self.now(), optical_shift=0.0, photorefractive_shift=0.0,
                              mw_shift=0.0, pump_factor=1.0)
        self._integrate()
        return self.drift.state(self.clock.now())

    def efficiency(self) -> float:
        return self.transducer.efficiency(
            self.pump_power_at_device, self.pump_detuning, self.mw_detuning
        )

    def added_noise(self) -> float:
        """N_add now (photons, referred to the input), including the heating state."""
        self._integrate()
        m = self.transducer
        return (
            m.intrinsic_added_noise
            + m.heating_noise_fast * self._heating_fast
            + m.heating_noise_slow * self._heating_slow
        )

    def mxc_temperature(self) -> float:
        """Mixing-chamber temperature, K."""
        self._integrate()
        return self._mxc_temperature

    def mw_power_at_device(self) -> float:
        """Microwave drive power at the transducer, W."""
        if not self.mw_drive.on:
            return 0.0
        dbm = self.mw_drive.power_dbm - self.settings.mw_line_attenuation_db
        return 1e-3 * 10 ** (dbm / 10)

    def mw_photon_flux(self) -> float:
        """Microwave photons per second arriving at the transducer (0 with the drive off)."""
        return self.mw_power_at_device() / (PLANCK * self.mw_drive.frequency)

    def detector_photon_rate(self, path: DetectionPath | None = None,
                             channel: str | None = None) -> float:
        """Photons/s incident on a detector behind `path`: converted signal, added noise and
        pump leakage (see `photons.incident_photon_rates` for the formulas). `channel` names
        the detector (e.g. ``snspd/slot1``): its path's efficiency drifts on its own."""
        return incident_photon_rates(self, path, channel=channel).total

    def optical_output_power(self) -> float:
        """Mean optical power at the power meter, W: converted signal plus leaked pump.

        Conversion preserves photon number, so the converted power scales with the ratio of
        the optical to the microwave photon energy.
        """
        s = self.settings
        mw_photon_flux = self.mw_power_at_device() / (PLANCK * self.mw_drive.frequency)
        optical_photon_energy = PLANCK * SPEED_OF_LIGHT / self.pump.wavelength
        signal = self.efficiency() * mw_photon_flux * optical_photon_energy
        leak = self.pump_power_at_device * 10 ** (-s.pump_filter_suppression_db / 10)
        return (signal + leak) * 10 ** (-s.optical_output_loss_db / 10)

    def switch_transmission(self, ingress: int, egress: int, switch: str | None = None) -> float:
        """Linear power transmission from `ingress` to `egress` of an optical switch on this
        bench now: the path's insertion loss once it has settled, 0 when the ports are not
        connected or the switch is still moving. `switch` names the instrument (needed only
        when the bench has more than one)."""
        if switch is None:
            if len(self.optical_switches) != 1:
                raise KeyError(f"this bench has {len(self.optical_switches)} optical switches "
                               f"({', '.join(self.optical_switches) or 'none'}): name one")
            (paths,) = self.optical_switches.values()
        else:
            paths = self.optical_switches[switch]
        return paths.transmission(ingress, egress, self.clock.now())

    def mw_reflection(self, frequency: np.ndarray) -> np.ndarray:
        """Noise-free S11 seen at the VNA port (the line is calibrated out), of the
        microwave mode as it has drifted."""
        return self.drifted_transducer().mw_reflection(frequency)
