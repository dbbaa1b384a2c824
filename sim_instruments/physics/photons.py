"""The optical photons that reach a detector behind the transducer.

Three contributions, in photons/s at the device's optical port (REFERENCE.md section 1):

* converted signal: ``eta * Phi_mw`` with ``Phi_mw = P_mw / (h f_mw)`` the microwave photon
  flux at the device (zero with the drive off);
* added noise: ``N_add`` is referred to the input, so the output carries ``N_add * eta_0``
  photons per second per hertz of conversion band, with ``eta_0`` the efficiency at the
  centre of the band (pump detuning included, no microwave detuning: the noise does not
  follow the drive tone). Over the Lorentzian band of FWHM ``kappa_mw`` that is
  ``N_add * eta_0 * B`` with ``B = (pi / 2) kappa_mw``, the band's noise-equivalent width;
* pump leakage: ``P_pump * 10^(-S / 10) / (h c / lambda_pump)`` through filters of total
  suppression ``S`` dB.

The sum times the collection efficiency of the path (fibre coupling, filter-cavity passband,
connectors) is the incident rate at the detector. With the pump off all three vanish (eta,
and hence the output noise, is zero); with the microwave drive off noise and leakage remain,
which is how labs measure N_add: counts pump on vs off, over efficiency and eta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .transducer import PLANCK, SPEED_OF_LIGHT, TransducerModel

if TYPE_CHECKING:
    from .world import LabWorld


@dataclass(frozen=True)
class DetectionPath:
    """The optical path from the transducer's optical port to one detector."""

    collection_efficiency: float = 0.5
    """Transmission of fibre, couplers and the filter passband, 0..1 (typical; check)."""
    extra_pump_suppression_db: float = 0.0
    """Pump filtering in this path beyond `WorldSettings.pump_filter_suppression_db`, dB."""


@dataclass(frozen=True)
class PhotonRates:
    """Photon rates at the detector, Hz (collection efficiency applied)."""

    signal: float
    noise: float
    pump_leak: float

    @property
    def total(self) -> float:
        return self.signal + self.noise + self.pump_leak


def noise_bandwidth(transducer: TransducerModel) -> float:
    """Noise-equivalent bandwidth of the conversion band, Hz: (pi / 2) x microwave FWHM.

    The integral of a unit-peak Lorentzian of FWHM k over frequency is pi k / 2.
    """
    return 0.5 * math.pi * transducer.mw_linewidth


def incident_photon_rates(world: LabWorld, path: DetectionPath | None = None) -> PhotonRates:
    """The world's photon rates at a detector behind `path` now (Hz), by contribution."""
    path = path or DetectionPath()
    m = world.transducer
    collection = path.collection_efficiency

    signal = world.efficiency() * world.mw_photon_flux()
    band_centre_efficiency = m.efficiency(world.pump_power_at_device, world.pump_detuning, 0.0)
    noise = world.added_noise() * band_centre_efficiency * noise_bandwidth(m)
    suppression_db = world.settings.pump_filter_suppression_db + path.extra_pump_suppression_db
    pump_photon_energy = PLANCK * SPEED_OF_LIGHT / world.pump.wavelength
    leak = world.pump_power_at_device * 10 ** (-suppression_db / 10) / pump_photon_energy
    return PhotonRates(collection * signal, collection * noise, collection * leak)
