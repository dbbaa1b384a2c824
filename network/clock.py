"""Clock offset and drift of a node relative to its heralding station (NTP-style exchanges).

One exchange gives four timestamps (ns): t1 node sends, t2 station receives, t3 station
replies, t4 node receives. Its offset (station - node) is ``((t2 - t1) + (t3 - t4)) / 2``, off
from the truth by half the asymmetry of the two one-way delays, and its round trip is
``(t4 - t1) - (t3 - t2)``. Queueing makes delays long and asymmetric, so `ClockSync` keeps the
exchanges with the shortest round trips (delay filtering) and fits offset = a + drift * t by
least squares over them, t being node time. A fixed asymmetry of the path (different routes or
NIC latencies each way) cannot be seen by any two-way exchange: it stays in the offset.

See docs/link.md#clock-sync.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClockEstimate:
    offset_s: float
    """station - node, s, at node time `reference_ns`."""
    drift: float
    """d(offset)/d(node time), s/s (20e-6: the station gains 20 us per node second)."""
    residual_rms_s: float
    """rms of the fit residuals over the exchanges used, s."""
    samples: int
    """Exchanges held (the last `window`)."""
    delay_s: float
    """Smallest round trip held / 2, s (a one-way delay estimate)."""
    used: int
    """Exchanges that passed the delay filter and entered the fit."""
    reference_ns: int
    """Node time (ns) at which `offset_s` holds: the midpoint of the latest exchange."""


class ClockSync:
    """Offset and drift of the station clock seen from a node.

    `window`: exchanges kept (older ones are dropped, so a drift that changes is followed).
    `keep_fraction`: share of them, lowest round trip first, that enters the fit (>= 2).
    """

    def __init__(self, window: int = 256, keep_fraction: float = 0.25) -> None:
        if window < 2:
            raise ValueError(f"ClockSync window {window}: need at least 2 exchanges")
        if not 0.0 < keep_fraction <= 1.0:
            raise ValueError(f"ClockSync keep_fraction {keep_fraction}: need 0 < f <= 1")
        self.window = window
        self.keep_fraction = keep_fraction
        # Times are held relative to the first exchange, as float64 of ns: epoch-sized ns
        # (1e18) would lose ~100 ns in a float, differences of hours lose nothing.
        self._origin_mid2_ns: int | None = None
        self._origin_offset2_ns = 0
        self._exchanges: deque[tuple[float, float, int]] = deque(maxlen=window)
        """(midpoint - origin, 2 * offset - origin offset, round trip), ns."""
        self._latest_mid2_ns = 0
        self._fit: tuple[float, float] | None = None
        """(offset at the latest midpoint relative to the origin offset, ns; drift)."""
        self._estimate: ClockEstimate | None = None

    @property
    def ready(self) -> bool:
        """At least one exchange added: `to_station_ns` and `estimate` work."""
        return bool(self._exchanges)

    def reset(self) -> None:
        """Forget every exchange (e.g. the station restarted with a new clock)."""
        self._origin_mid2_ns = None
        self._exchanges.clear()
        self._fit = None
        self._estimate = None

    def add(self, t1_ns: int, t2_ns: int, t3_ns: int, t4_ns: int) -> None:
        """One exchange: node send t1, station receive t2, station send t3, node receive t4."""
        if t4_ns < t1_ns or t3_ns < t2_ns:
            raise ValueError(f"clock exchange with t1={t1_ns}, t2={t2_ns}, t3={t3_ns}, "
                             f"t4={t4_ns} ns: need t1 <= t4 (node) and t2 <= t3 (station)")
        mid2 = t1_ns + t4_ns
        offset2 = (t2_ns - t1_ns) + (t3_ns - t4_ns)
        if self._origin_mid2_ns is None:
            self._origin_mid2_ns = mid2
            self._origin_offset2_ns = offset2
        round_trip = max((t4_ns - t1_ns) - (t3_ns - t2_ns), 0)  # < 0 only by drift x round trip
        self._exchanges.append(((mid2 - self._origin_mid2_ns) / 2,
                                float(offset2 - self._origin_offset2_ns), round_trip))
        self._latest_mid2_ns = mid2
        self._fit = None
        self._estimate = None

    def _fitted(self) -> tuple[float, float, float, int]:
        """(offset at the latest midpoint rel. origin, ns; drift; residual rms, ns; used)."""
        if not self._exchanges:
            raise RuntimeError("ClockSync has no exchange yet: add() a clock reply first "
                               "(check `ready`)")
        table = np.array(self._exchanges, dtype=np.float64)
        round_trips = table[:, 2]
        used = max(2, math.ceil(self.keep_fraction * len(table)))
        chosen = table[np.argsort(round_trips, kind="stable")[:used]]
        x, y = chosen[:, 0], chosen[:, 1] / 2.0
        latest_x = float(table[-1, 0])
        x_mean = float(x.mean())
        spread = float(((x - x_mean) ** 2).sum())
        if len(chosen) < 2 or spread == 0.0:
            drift = 0.0
            intercept = float(y.mean())
        else:
            drift = float(((x - x_mean) * (y - y.mean())).sum() / spread)
            intercept = float(y.mean()) - drift * x_mean
        residuals = y - (intercept + drift * x)
        rms = float(np.sqrt(np.mean(residuals ** 2)))
        return intercept + drift * latest_x, drift, rms, len(chosen)

    def estimate(self) -> ClockEstimate:
        """The current estimate; raises RuntimeError before the first exchange."""
        if self._estimate is None:
            offset_rel_ns, drift, rms_ns, used = self._fitted()
            self._fit = (offset_rel_ns, drift)
            min_round_trip = min(exchange[2] for exchange in self._exchanges)
            self._estimate = ClockEstimate(
                offset_s=(offset_rel_ns + self._origin_offset2_ns / 2) * 1e-9,
                drift=drift, residual_rms_s=rms_ns * 1e-9, samples=len(self._exchanges),
                delay_s=min_round_trip / 2 * 1e-9, used=used,
                reference_ns=self._latest_mid2_ns // 2)
        return self._estimate

    def to_station_ns(self, local_ns: int) -> int:
        """Station time (ns) of node time `local_ns`, by the current fit."""
        if self._fit is None:
            self.estimate()
        assert self._fit is not None
        offset_rel_ns, drift = self._fit
        since_ns = (2 * local_ns - self._latest_mid2_ns) / 2
        # Integer part exact; only the small fitted terms go through float.
        return (local_ns + self._origin_offset2_ns // 2
                + round(offset_rel_ns + (self._origin_offset2_ns % 2) / 2 + drift * since_ns))

    def to_node_ns(self, station_ns: int) -> int:
        """Node time (ns) of station time `station_ns` (inverse of `to_station_ns`)."""
        reference = self._latest_mid2_ns // 2
        station_reference = self.to_station_ns(reference)
        assert self._fit is not None
        return reference + round((station_ns - station_reference) / (1.0 + self._fit[1]))
