"""The pump-heating scan's first look: before the delays are measured, one heating pulse is
watched from the cold start to its end, and the scan chooses its pulse length and how many
cycles it counts per delay from what it saw (`plan_from_look`), as a lab scientist does
before a long pump-probe run.

Why. The delays' counting error must be small against the heating the pulse leaves, or the
slow channel (the membrane_eom preset's: ~3 % of the noise floor, tau_slow 5 s, Brubaker
2022) is seen at a few delays only and its time comes out unconstrained or, worse, pulled
low with an error bar too small for it (docs/transducer.md#the-first-look).

The look (pump on the probe's power and detuning, tone off). After `cool_down` s with the
pump off, the detector counts `look_windows` windows at once after the pump comes on (the
cold rate R_0: no heating yet on the simulated bench, whose clock stands still while it
counts; on hardware a 1 s count also holds the fast channel, which only lowers the contrast
below and so asks for more counting), then at a quarter, half and the end of the pulse
(R_1, R_2, R_3). Then:

* the heating contrast C = R_3 - R_0 (Hz) sets the cycles per delay: the probe's counting
  error at zero delay, sqrt(R_3 / (n T)) for n cycles of T s of counting, must be
  `target_snr` times below C, so n = (target_snr / C)^2 R_3 / T, between the options'
  `repeats` and `max_repeats`; a contrast not seen (C below 3 of its errors), or one that
  even `max_repeats` would show at less than a quarter of the target, or below 2 % of the
  rate (the lab's gain wander), keeps `repeats` (more counting cannot resolve heating this
  pulse hardly makes);
* the slow channel has settled when R_3 - R_2 is within 3 of its errors of 0; otherwise the
  rises D_1 = R_2 - R_1 and D_2 = R_3 - R_2 over the pulse's second quarter and second half
  give its time: for one exponential e^(-t/tau), D_2 / D_1 = x (1 + x) with x =
  e^(-pulse / (4 tau)), and the pulse is lengthened to max(2 pulse, 5 tau), at most
  `max_pulse_duration` (the bench's limit: a longer pulse heats the mixing chamber longer),
  and looked at again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from qnetlab.instruments.station import LabStation

from .counting import COUNTER_WINDOW_S, DeadTimeModel, count_clicks

SETTLED_SIGMAS = 3.0
"""A rise over the pulse's second half above this many of its errors: not settled."""
SETTLED_FRACTION = 0.05
"""A rise over the pulse's second half below this fraction of the contrast: settled (a
channel with tau = pulse / 2 rises by ~14 % of its amplitude there, one with tau = pulse / 5
by 2 %)."""
SEEN_SIGMAS = 3.0
"""A heating contrast below this many of its errors is not seen by the look."""
HOPELESS_FACTOR = 4.0
"""More cycles are not spent when `max_repeats` would reach only 1/4 of the target."""
MIN_RELATIVE_CONTRAST = 0.02
"""Heating below this fraction of the steady rate: its slow part (~30 %) is below the
references' ~0.5 % per-cycle error and the lab's gain wander between them
(`heating_references`), which more cycles do not beat."""
SETTLE_TAUS = 5.0
"""A lengthened pulse lasts at least this many slow times (the slow channel charged to
99.3 %)."""


@dataclass(frozen=True)
class Look:
    """Count rates (Hz, dead-time corrected) and their one-sigma errors over one pulse."""

    pulse: float
    """s, the pulse looked at."""
    rates: tuple[float, float, float, float]
    """R_0 (pump just on), R_1 (a quarter in), R_2 (half), R_3 (the end)."""
    errors: tuple[float, float, float, float]

    @property
    def contrast(self) -> tuple[float, float]:
        """R_3 - R_0 and its error, Hz."""
        return self.rates[3] - self.rates[0], math.hypot(self.errors[3], self.errors[0])

    @property
    def late_rise(self) -> tuple[float, float]:
        """R_3 - R_2 and its error, Hz: the slow channel still charging."""
        return self.rates[3] - self.rates[2], math.hypot(self.errors[3], self.errors[2])

    @property
    def seen(self) -> bool:
        """The pulse raised the rate by more than `SEEN_SIGMAS` of its errors."""
        contrast, err = self.contrast
        return contrast > SEEN_SIGMAS * err

    @property
    def settled(self) -> bool:
        """No heating seen, or its rise over the pulse's second half is within its errors
        or below `SETTLED_FRACTION` of the contrast (the lab's gain wanders by more than
        the counting error of a MHz rate over seconds: a significant but tiny rise is that
        wander, not a slow channel still charging)."""
        rise, err = self.late_rise
        return not (self.seen and rise > SETTLED_SIGMAS * err
                    and rise > SETTLED_FRACTION * self.contrast[0])

    def slow_time(self) -> float:
        """s: the slow channel's time from the rises (module docstring); inf when the rise
        does not slow down (D_2 >= 2 D_1: no exponential fits) and 0 when it has stopped."""
        d1 = self.rates[2] - self.rates[1]
        d2, _ = self.late_rise
        if d2 <= 0:
            return 0.0
        if d1 <= 0 or d2 >= 2 * d1:
            return math.inf
        x = (-1.0 + math.sqrt(1.0 + 4.0 * d2 / d1)) / 2.0
        return -self.pulse / (4.0 * math.log(x)) if 0 < x < 1 else math.inf


@dataclass(frozen=True)
class Plan:
    """What the scan does after the look."""

    pulse: float
    """s, the heating pulse of every cycle."""
    repeats: int
    """Cycles counted per delay."""
    settled: bool
    """The look saw the slow channel settle within `pulse`."""
    contrast: float
    """Hz, the heating contrast the look saw (R_3 - R_0)."""
    contrast_err: float
    steady_rate: float
    """Hz, R_3."""
    slow_time: float
    """s, the slow time the rise gave (0 when it had settled; inf when not estimated)."""

    def describe(self) -> str:
        settled = "settled" if self.settled else (
            f"not settled (slow time ~{self.slow_time:.3g} s)")
        return (f"first look: heating contrast {self.contrast:.4g} ± {self.contrast_err:.2g} "
                f"Hz on {self.steady_rate:.4g} Hz, {settled} within the {self.pulse:.4g} s "
                f"pulse; {self.repeats} cycle(s) per delay")


def repeats_for(look: Look, target_snr: float, counting_time: float, least: int,
                most: int) -> int:
    """Cycles per delay for the contrast `look` saw (module docstring). `counting_time`: s
    counted per probe; `least`..`most` the allowed range."""
    if not look.seen:
        return least
    contrast = look.contrast[0]
    steady = max(look.rates[3], contrast)
    wanted = (target_snr / contrast) ** 2 * steady / counting_time
    if wanted > most * HOPELESS_FACTOR**2 or contrast < MIN_RELATIVE_CONTRAST * steady:
        # Even `most` cycles would show the heating at < 1/HOPELESS_FACTOR of the target, or
        # it is below the lab's gain wander: a weak heating (piezo_om's, < 2 photons on ~100)
        # is not resolved by counting longer; the scan says so at the least cost.
        return least
    return int(min(most, max(least, math.ceil(wanted - 1e-9))))


def plan_from_look(look: Look, *, target_snr: float, counting_time: float, least: int,
                   most: int) -> Plan:
    """The plan for a look that is final (settled, or at the longest pulse allowed)."""
    contrast, err = look.contrast
    return Plan(look.pulse, repeats_for(look, target_snr, counting_time, least, most),
                look.settled, contrast, err, look.rates[3],
                0.0 if look.settled else look.slow_time())


def next_pulse(look: Look, longest: float) -> float | None:
    """The pulse to look at next (s), or None when `look`'s is final: settled, or already
    `longest` (the bench's limit)."""
    if look.settled or look.pulse >= longest:
        return None
    tau = look.slow_time()
    wanted = 2.0 * look.pulse if not math.isfinite(tau) else max(2.0 * look.pulse,
                                                                  SETTLE_TAUS * tau)
    return min(longest, wanted)


def interleaved_order(n: int) -> list[int]:
    """Indices 0..n-1 in bit-reversed (van der Corput) order: consecutive indices are about
    n / 2 apart in the returned order, and any stretch of it spans the whole range."""
    bits = max(1, (n - 1).bit_length())
    return sorted(range(n), key=lambda i: int(f"{i:0{bits}b}"[::-1], 2))


def take_look(station: LabStation, channel: Any, pulse: float, cool_down: float,
              windows: int, dead: DeadTimeModel) -> Look:
    """Watch one heating pulse of `pulse` s after `cool_down` s with the pump off (module
    docstring); the pump is left off. The pump's power and detuning are the caller's."""
    setup = station.setup
    assert setup is not None
    setup.pump_on(False)
    station.sleep(cool_down)
    setup.pump_on(True)
    rates, errors = [], []
    try:
        for wait in (0.0, pulse / 4, pulse / 4, pulse / 2):
            station.sleep(wait)
            count = count_clicks(channel, min_clicks=math.inf,
                                 max_time=windows * COUNTER_WINDOW_S)
            rate, err = dead.correct(np.array([float(count.clicks)]),
                                     np.array([count.exposure]))
            rates.append(float(rate[0]))
            errors.append(float(err[0]))
    finally:
        setup.pump_on(False)
    return Look(pulse, (rates[0], rates[1], rates[2], rates[3]),
                (errors[0], errors[1], errors[2], errors[3]))
