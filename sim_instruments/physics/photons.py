"""The optical photons that reach a detector behind the transducer.

Converted signal, added noise (over the conversion band's noise-equivalent width) and pump
leakage through the filters, in photons/s at the device's optical port, times the collection
efficiency of the path. Pump off: nothing; drive off: noise and leakage, which is how labs
measure N_add.

Derivation: docs/transducer.md#2-added-noise-and-heating.
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


def incident_photon_rates(world: LabWorld, path: DetectionPath | None = None, *,
                          channel: str | None = None) -> PhotonRates:
    """The world's photon rates at a detector behind `path` now (Hz), by contribution.

    `channel` names the detector whose path it is: in a realistic lab each path's efficiency
    (fibre coupling, polarization at the detector) drifts on its own
    (`LabWorld.detection_factor`), multiplying all three contributions.
    """
    path = path or DetectionPath()
    m = world.transducer
    collection = path.collection_efficiency
    if not world.ideal:
        collection *= world.detection_factor(channel)

    signal = world.efficiency() * world.mw_photon_flux()
    band_centre_efficiency = m.efficiency(world.pump_power_at_device, world.pump_detuning, 0.0)
    noise = world.added_noise() * band_centre_efficiency * noise_bandwidth(m)
    suppression_db = world.settings.pump_filter_suppression_db + path.extra_pump_suppression_db
    pump_photon_energy = PLANCK * SPEED_OF_LIGHT / world.pump.wavelength
    leak = world.pump_power_at_device * 10 ** (-suppression_db / 10) / pump_photon_energy
    return PhotonRates(collection * signal, collection * noise, collection * leak)
