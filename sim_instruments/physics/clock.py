"""Clocks for the simulated lab.

Virtual time is the default: an integration of one second returns at once, and the
world integrates its slow dynamics (heating, fridge) over the virtual interval. A wall
clock is used where latency is the point (the network simulation).

Which clock when: docs/simulation.md#2-time-virtual-paced-wall.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the clock started."""
        ...

    def advance(self, seconds: float) -> None:
        """Let `seconds` of lab time pass (instantly in virtual time, by sleeping in real time)."""
        ...


class VirtualClock:
    """Time that moves only when the simulation says so."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"time cannot run backwards (advance by {seconds} s)")
        self._now += seconds


class WallClock:
    """Real time, for simulations whose latency is measured."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class PacedClock:
    """Virtual time that also keeps pace with real time: for the TCP rehearsal.

    Real seconds pass on it (so heating and the fridge evolve while a remote station waits
    with real sleeps, and interlocks can trip), and an acquisition that advances it (a sweep,
    an integration) still returns at once.
    """

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._ahead = 0.0

    def now(self) -> float:
        return time.monotonic() - self._t0 + self._ahead

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"time cannot run backwards (advance by {seconds} s)")
        self._ahead += seconds
