"""What produces the bridge orchestrator's pairs: a "fabric" heralds pairs on the paths the
scheduler assigns.

`PairFabric` is what the orchestrator process needs of one. Shipped: `SimulatedLinkFabric`,
SIMULATED physics: no stations, switch or taggers; each assigned path heralds at exponential
waiting times of its expected rate (`topology.PathLink.rate`, from the link model), drawn on
the bridge's clock (wall-clock time scaled by the orchestrator's `time_scale`). The switch
is put in the loop in front of it by `switch_loop.SwitchedFabric` (every path made through
the `OpticalSwitch` role before it heralds). `station_fabric.StationFabric` reports the
heralds of heralding-station processes reading their time taggers instead (from their HERALDS
frames; real time only), held by the QNUs' node agents where they run.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from qnetlab.instruments.errors import QnetlabError

from .topology import BridgeTopology, PathLink


@dataclass(frozen=True)
class PathSetup:
    """What the orchestrator's calibration records say of the two paths an ASSIGN switches
    in: a fabric on stations sets their windows from it, and re-checks the stale ones."""

    arm_delays: Mapping[str, float]
    """QNU -> its path's stored arm delay (s after the station's sync)."""
    recheck: frozenset[str] = frozenset()
    """QNUs whose path is stale: measured before the station heralds on it, where the fabric
    can measure."""
    recheck_time: float = 0.0
    """s of the station's tag stream a re-check histograms."""


@dataclass(frozen=True)
class ArmMeasurement:
    """A path's arm delay as a station measured it (the re-check of a stale path)."""

    arm_delay: float
    """s after the sync: where the QNU's photons arrive (both detectors' peaks combined)."""
    error: float
    """s, its standard error."""
    detail: str
    """What was measured, for the calibration record."""


class PathSetupError(QnetlabError):
    """A fabric could not set an assigned path up (the switch, or the station's windows or
    re-check). `code` is the ERR code the request gets; the message names what failed."""

    code = "NO_RESOURCES"


@dataclass(frozen=True)
class Herald:
    """A pair heralded at `station` for `request` at `time` (s, bridge clock) on `link`."""

    time: float
    station: str
    request: str
    link: PathLink
    seq: int = -1
    """The station's herald seq (-1: a fabric without stations)."""


class PairFabric(Protocol):
    """Heralds pairs on assigned paths. Times are s on the bridge's clock."""

    name: str
    simulated: bool

    def assign(self, station: str, request: str, a: str, b: str, ready_at: float,
               setup: PathSetup | None = None) -> None:
        """`station` heralds A-B for `request` from `ready_at` (switch settled, paths
        re-checked) until `release`, A on its arm a and B on b, with the paths' `setup`
        (None: as the fabric is). `PathSetupError` when it could not: nothing heralds. A
        fabric that re-checks paths itself (``measures``) reports each set-up's outcome
        later through ``take_setups()`` (`station_fabric.StationFabric`)."""

    def release(self, station: str) -> None:
        """`station` stops heralding (heralds not yet due are void)."""

    def next_time(self) -> float | None:
        """s of the next herald (None: no station is heralding)."""

    def pop(self, now: float) -> Herald | None:
        """The next herald if it is due at or before `now` (one at a time: what the
        scheduler decides on it may release the station before its next one)."""


class SimulatedLinkFabric:
    """SIMULATED heralds from the link model (module docstring); seeded: one seed, one
    sequence of draws."""

    name = "simulated link model (no station processes)"
    simulated = True

    def __init__(self, topology: BridgeTopology, seed: int = 0) -> None:
        self.topology = topology
        self.rng = np.random.default_rng(seed)
        self.active: dict[str, tuple[str, int, PathLink]] = {}
        """station -> (request, epoch, its path's link)."""
        self.epoch: dict[str, int] = dict.fromkeys(topology.stations, 0)
        self.heap: list[tuple[float, str, int]] = []
        """(time, station, epoch) of each heralding station's next herald."""

    def assign(self, station: str, request: str, a: str, b: str, ready_at: float,
               setup: PathSetup | None = None) -> None:
        self.release(station)  # (the link model has no arm delays: `setup` changes nothing)
        link = self.topology.path_link(a, b, station)
        self.active[station] = (request, self.epoch[station], link)
        self._draw(station, ready_at)

    def release(self, station: str) -> None:
        self.active.pop(station, None)
        self.epoch[station] += 1

    def _draw(self, station: str, after: float) -> None:
        _, epoch, link = self.active[station]
        wait = self.rng.exponential(1.0 / link.rate) if link.rate > 0.0 else float("inf")
        heapq.heappush(self.heap, (after + wait, station, epoch))

    def _drop_void(self) -> None:
        while self.heap:
            _, station, epoch = self.heap[0]
            active = self.active.get(station)
            if active is not None and active[1] == epoch:
                return
            heapq.heappop(self.heap)

    def next_time(self) -> float | None:
        self._drop_void()
        return self.heap[0][0] if self.heap else None

    def pop(self, now: float) -> Herald | None:
        at = self.next_time()
        if at is None or at > now:
            return None
        _, station, _ = heapq.heappop(self.heap)
        request, _, link = self.active[station]
        self._draw(station, at)
        return Herald(at, station, request, link)
