"""The lab clock a station is given: how long things take, and how to let time pass.

On hardware it is real time (`RealTimeClock`); in the ``sim`` profile it is the simulated
world's clock, which the simulated bench hands the station when the station registers its
world (`instruments.station.load_station`): usually virtual, so a 60 s settle returns at once
and the fridge and heating still evolve over those 60 s. Ramps (`safety.install_ramp`), the
sequences' waits and the interlock guard (`sequences.interlock.PumpGuard`) all sleep on it.
"""

from __future__ import annotations

import time
from typing import Protocol


class LabClock(Protocol):
    """What a station needs of a clock (times in s)."""

    def now(self) -> float:
        """Seconds of lab time since an arbitrary origin (monotonic)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let `seconds` of lab time pass (instantly on a virtual clock)."""
        ...


class RealTimeClock:
    """Real time: `time.monotonic` and `time.sleep`. The clock of the ``real`` profile."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


__all__ = ["LabClock", "RealTimeClock"]
