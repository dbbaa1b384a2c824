"""A tunable laser's wavelength moving in lab time (the realistic lab's settling, issue 13).

`TuningPump` stands in for `LabWorld.pump` while a laser that tunes in lab time drives it
(the Santec TSL-570 emulator installs it): whatever reads the pump's wavelength (the
transducer's detuning, the photon energies, the power meter's responsivity) sees the old
wavelength until the laser has tuned, then the new one, however lab time passed meanwhile.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .world import PumpLaser

if TYPE_CHECKING:
    from .clock import Clock


class TuningPump(PumpLaser):
    """`LabWorld.pump` while a TSL-570 drives it in the realistic lab: its wavelength reaches a
    new setting only once the laser has tuned to it (`tune`, lab time); until then it is the
    wavelength it had. Setting ``wavelength`` directly (`LabWorld.set_pump`) moves it at once."""

    def __init__(self, pump: PumpLaser, clock: Clock) -> None:
        self._clock = clock
        self._from = self._to = pump.wavelength
        self._tuned_at = -math.inf
        super().__init__(power=pump.power, wavelength=pump.wavelength, on=pump.on)

    @property
    def wavelength(self) -> float:
        """m, the emitted wavelength now."""
        return self._to if self._clock.now() >= self._tuned_at else self._from

    @wavelength.setter
    def wavelength(self, value: float) -> None:
        self._from = self._to = value
        self._tuned_at = -math.inf

    def tune(self, wavelength: float, seconds: float) -> None:
        """Move to `wavelength` (m) `seconds` of lab time from now; until then hold the
        wavelength emitted now (the transient is not in the data sheet: the old wavelength
        stands for it)."""
        self._from = self.wavelength
        self._to = wavelength
        self._tuned_at = self._clock.now() + seconds

    @property
    def tuned_at(self) -> float:
        """World time (s) the last tuning ends (-inf: none since the last direct setting)."""
        return self._tuned_at
