"""Microwave-to-optical transducer model: efficiency, added noise, microwave reflection.

Electro-optic (``eta = eta_e eta_o 4C / (1 + C)^2``) or opto-mechanical devices, cooperativity
proportional to pump power, a Lorentzian per detuning, and added noise referred to the input
with a fast and a slow heating channel driven by the absorbed pump power.

Model and sources: docs/transducer.md (sections 1-2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

SPEED_OF_LIGHT = 299_792_458.0  # m/s
PLANCK = 6.626_070_15e-34  # J s


def lorentzian(detuning: float | np.ndarray, fwhm: float) -> float | np.ndarray:
    """Unit-peak Lorentzian of full width at half maximum `fwhm` (same unit as detuning)."""
    return 1.0 / (1.0 + (2.0 * np.asarray(detuning) / fwhm) ** 2)


@dataclass(frozen=True)
class TransducerModel:
    """Parameters of one transducer; frequencies in Hz, powers in W, times in s."""

    name: str
    reference: str
    kind: Literal["electro_optic", "optomechanical"]
    external_efficiency: float
    """eta_e * eta_o: the external coupling ratios of both modes (the peak efficiency)."""
    pump_power_at_unit_cooperativity: float
    """Pump power (W, at the device) where the pump-driven cooperativity equals 1."""
    mw_resonance_frequency: float
    mw_linewidth: float
    """Microwave mode FWHM; also the conversion bandwidth (Hz)."""
    mw_coupling_ratio: float
    """eta_e = kappa_ext / kappa of the microwave mode: sets the depth of the S11 dip."""
    optical_resonance_wavelength: float
    optical_linewidth: float
    intrinsic_added_noise: float
    """N_add (photons, referred to the input) with a cold device."""
    absorbed_fraction: float
    """Fraction of the pump power absorbed at the mixing-chamber stage."""
    heating_noise_fast: float
    """Steady-state N_add per watt of absorbed power, fast heating channel (photons/W)."""
    heating_noise_slow: float
    heating_tau_fast: float
    heating_tau_slow: float
    em_cooperativity: float = 0.0
    """Electro-mechanical cooperativity C_em (opto-mechanical devices only; fixed)."""

    def with_changes(self, **changes: float | str) -> TransducerModel:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def optical_resonance_frequency(self) -> float:
        return SPEED_OF_LIGHT / self.optical_resonance_wavelength

    def cooperativity(self, pump_power: float) -> float:
        """Pump-driven cooperativity, proportional to the pump power at the device (W)."""
        return max(pump_power, 0.0) / self.pump_power_at_unit_cooperativity

    def internal_efficiency(self, pump_power: float) -> float:
        c = self.cooperativity(pump_power)
        if self.kind == "electro_optic":
            return 4.0 * c / (1.0 + c) ** 2
        c_em = self.em_cooperativity
        return 4.0 * c_em * c / (1.0 + c_em + c) ** 2

    def efficiency(self, pump_power: float, pump_detuning: float, mw_detuning: float) -> float:
        """Photon-number conversion efficiency (0..1).

        Args:
            pump_power: pump power at the device, W.
            pump_detuning: pump laser frequency minus optical resonance, Hz.
            mw_detuning: microwave tone frequency minus microwave resonance, Hz.
        """
        return float(
            self.external_efficiency
            * self.internal_efficiency(pump_power)
            * lorentzian(pump_detuning, self.optical_linewidth)
            * lorentzian(mw_detuning, self.mw_linewidth)
        )

    def steady_added_noise(self, absorbed_power: float) -> float:
        """N_add with the heating in steady state at `absorbed_power` (W)."""
        return self.intrinsic_added_noise + (
            self.heating_noise_fast + self.heating_noise_slow
        ) * max(absorbed_power, 0.0)

    def mw_reflection(self, frequency: np.ndarray) -> np.ndarray:
        """Complex S11 of the microwave mode, one-port reflection geometry."""
        detuning = np.asarray(frequency, dtype=float) - self.mw_resonance_frequency
        return 1.0 - 2.0 * self.mw_coupling_ratio / (1.0 + 2j * detuning / self.mw_linewidth)
