"""Photon counting through the transducer setup's detector channel: whole counter windows
read until a click count or a time (`count_clicks`, also used by the detector calibrations),
and the detector-plus-tagger dead-time correction (`DeadTimeModel`). Derivation and where
the defaults come from: docs/detectors.md#3-counting-and-dead-time.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special
from scipy.optimize import brentq

from qnetlab.instruments.station import TAGGER_COUNTER_WINDOW_S, LabStation

log = logging.getLogger(__name__)

COUNTER_WINDOW_S = TAGGER_COUNTER_WINDOW_S
"""s: what one ``count_rate`` reading integrates over."""
MAX_DEAD_TIME_LOSS = 0.25
"""A counted rate more than this fraction below the incident one is saturated, not measured."""


@dataclass(frozen=True)
class DeadTimeModel:
    """The counting chain's dead times, s (model: docs/detectors.md#3-counting-and-dead-time).

    Defaults: t_d = 20 ns and tau = 8 ns are the simulated SNSPD's
    (`sim_instruments.physics.snspd.SnspdModel`; docs/detectors.md gives a 20-50 ns
    recovery), t_c = 3 ns the simulated ID1000 input's (a modelling choice, not a datasheet
    value). On hardware take t_d and tau from the detector's measured recovery and t_c from
    the tagger's datasheet (usually 0: the detector's dead time dominates).
    """

    dead_time: float = 20e-9
    """t_d, s: the detector counts nothing this long after a click."""
    recovery_time: float = 8e-9
    """tau, s: the detector's efficiency then recovers as 1 - exp(-u / tau)."""
    counter_dead_time: float = 3e-9
    """t_c, s: the tagger input's non-paralysable dead time."""

    def __post_init__(self) -> None:
        if min(self.dead_time, self.recovery_time, self.counter_dead_time) < 0:
            raise ValueError("dead_time, recovery_time and counter_dead_time must be >= 0 s")

    @property
    def max_counted_rate(self) -> float:
        """Hz: what the chain counts under an infinite incident rate."""
        total = self.dead_time + self.counter_dead_time
        return math.inf if total <= 0 else 1.0 / total

    def counted_rate(self, incident: float) -> float:
        """Mean counted rate (Hz) for an incident click hazard `incident` (Hz)."""
        if incident <= 0:
            return 0.0
        tau = self.recovery_time
        if tau > 0:
            a = incident * tau
            # in logs: e^a a^-a Gamma(a) overflows for large a, Gamma(a) for small a
            log_wait = (math.log(tau) + a - a * math.log(a) + special.gammaln(a)
                        + math.log(special.gammainc(a, a)))
            r1 = 1.0 / (self.dead_time + math.exp(log_wait))
        else:
            r1 = incident / (1.0 + incident * self.dead_time)
        return r1 / (1.0 + r1 * self.counter_dead_time)

    def incident_rate(self, counted: float) -> float:
        """The incident rate (Hz) whose mean counted rate is `counted` (Hz); inf at or above
        saturation."""
        if counted <= 0:
            return 0.0
        if counted >= self.max_counted_rate:
            return math.inf
        lo, hi = counted, 2.0 * counted
        while self.counted_rate(hi) < counted:
            hi *= 2.0
            if hi > 1e15:
                return math.inf
        return float(brentq(lambda r: self.counted_rate(r) - counted, lo, hi, xtol=1e-9,
                            rtol=1e-13))

    def correct(self, counts: np.ndarray, exposure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Incident rates (Hz) and their Poisson standard errors from clicks counted over
        `exposure` s: the counted rate N / T (error sqrt(max(N, 1)) / T) through the inverse
        model, the error scaled by its derivative."""
        n = np.asarray(counts, float)
        t = np.asarray(exposure, float)
        measured = np.where(t > 0, n / np.where(t > 0, t, 1.0), math.nan)
        err = np.sqrt(np.maximum(n, 1.0)) / np.where(t > 0, t, math.nan)
        rate = np.array([self.incident_rate(float(m)) if np.isfinite(m) else math.nan
                         for m in measured])
        gain = np.array([_derivative(self, float(r)) for r in rate])
        return rate, err / gain

    def loss(self, counts: np.ndarray, exposure: np.ndarray) -> np.ndarray:
        """Fraction of the incident clicks the chain lost, per reading (0 when none)."""
        n = np.asarray(counts, float)
        t = np.asarray(exposure, float)
        rate, _ = self.correct(n, t)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(rate > 0, 1.0 - (n / t) / rate, 0.0)


def _derivative(model: DeadTimeModel, incident: float) -> float:
    """d(counted)/d(incident) at `incident` (Hz), by a central difference."""
    if not math.isfinite(incident):
        return math.nan
    h = max(incident * 1e-6, 1e-3)
    lo = max(incident - h, 0.0)
    return (model.counted_rate(incident + h) - model.counted_rate(lo)) / (incident + h - lo)


@dataclass(frozen=True)
class Count:
    """Clicks counted over `exposure` s."""

    clicks: int
    exposure: float


def count_clicks(channel: Any, *, min_clicks: float, max_time: float,
                 window: float = COUNTER_WINDOW_S) -> Count:
    """Read whole counter windows of `channel` until `min_clicks` or `max_time` s (at least
    one window)."""
    clicks, readings = 0, 0
    while readings == 0 or (clicks < min_clicks and (readings + 1) * window <= max_time
                            + 1e-9):
        clicks += round(float(channel.count_rate()) * window)
        readings += 1
    return Count(clicks, readings * window)


def detector_channel(station: LabStation, sequence: str) -> Any:
    """The setup's photon-counting channel; ValueError naming the fix if there is none."""
    setup = station.setup
    if setup is None:
        raise ValueError(f"{sequence} needs the station's transducer_setup (add "
                         "qnetlab.transducer_setup to the lab config)")
    if setup.detector is None:
        raise ValueError(f"{sequence} counts photons with the transducer setup's detector, "
                         "and it has none: add 'detector: <snspd>.ch<n>' under "
                         "qnetlab.transducer_setup in the lab config")
    return setup.detector


def counter_input_switch(channel: Any) -> Any | None:
    """The ``enabled`` parameter of the tagger input that counts `channel` (the station's
    counter hook, `instruments.station`), or None when the counter is not a tagger input."""
    counter = getattr(getattr(channel, "parent", None), "counter", None)
    tagger = getattr(counter, "tagger", None)
    inputs = getattr(counter, "inputs", None)
    slot = getattr(channel, "slot", None)
    if tagger is None or not isinstance(inputs, dict) or slot not in inputs:
        return None
    return tagger.tagger_channels[inputs[slot]].parameters.get("enabled")
