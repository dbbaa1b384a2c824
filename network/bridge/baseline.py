"""The baseline policy: a fixed round-robin switch schedule, with the orchestrator's interface.

Time is cut into slots of `slot_time` s. Every QNU pair comes round in a fixed order (the
round-robin tournament's matchings, circle method, chunked over the stations): in slot k,
station j is connected to pair k x S + j of that order (idle if that pair shares a QNU with
an earlier station of the slot). A station serves the waiting requests of its pair, oldest
first, until the slot ends; a request still short then is SUSPENDed (its pairs stay held
while they last) and resumes when its pair comes round again. It refuses what no path can
serve (UNSUPPORTED) like the orchestrator, but knows no early TIMEOUT: a deadline is ERR
only when it passes. Deterministic; no I/O, no clock.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

from ..messages import ErrCode
from .records import Clock, Decision, Request, err
from .switch_state import SwitchState
from .topology import BridgeTopology


@dataclass
class _Held:
    request: Request
    submitted: float
    held: int = 0
    station: str | None = None


def tournament_pair(n: int, index: int) -> tuple[int, int] | None:
    """The `index`-th pair (0-based, cyclic) of the round-robin tournament on `n` players by
    the circle method: round r pairs position i with n' - 1 - i (n' = n rounded up to even,
    the extra player a bye). None for a bye."""
    m = n + (n % 2)
    per_round = m // 2
    rnd, i = divmod(index % ((m - 1) * per_round), per_round)

    def player(pos: int) -> int:
        return 0 if pos == 0 else (pos - 1 + rnd) % (m - 1) + 1

    a, b = player(i), player(m - 1 - i)
    if a >= n or b >= n:
        return None
    return (a, b) if a < b else (b, a)


class RoundRobinScheduler:
    """Fixed round-robin switch schedule (the baseline the orchestrator is compared with)."""

    name = "round_robin"

    def __init__(self, topology: BridgeTopology, slot_time: float = 0.2) -> None:
        if not slot_time > topology.settle_time:
            raise ValueError(f"slot_time = {slot_time} s must exceed the switch's settle time "
                             f"({topology.settle_time} s)")
        self.topology = topology
        self.clock = Clock()
        self.slot_time = slot_time
        self.switch = SwitchState(topology)
        self.index = {q: i for i, q in enumerate(topology.qnus)}
        self.open: dict[str, _Held] = {}
        self.queues: dict[tuple[str, str], deque[str]] = {}
        self.slot = -1
        self.slot_pairs: dict[str, tuple[str, str]] = {}
        """station -> pair connected this slot."""
        self.ready: dict[str, float] = {}
        self.running: dict[str, str] = {}
        """station -> request id."""
        self._deadlines: list[tuple[float, str]] = []

    def _key(self, a: str, b: str) -> tuple[str, str]:
        return (a, b) if self.index[a] < self.index[b] else (b, a)

    # -- events ---------------------------------------------------------------------------------
    def submit(self, request: Request, now: float) -> list[Decision]:
        self.clock.advance(now)
        t = self.topology
        if request.id in self.open:
            return [err(now, request, ErrCode.UNSUPPORTED, f"request id {request.id} is open")]
        for q in request.qnus:
            if q not in self.index:
                return [err(now, request, ErrCode.UNSUPPORTED, f"QNU {q} is not on {t.name}")]
        best = max(link.fidelity for link in t.path_links(request.a, request.b))
        if best < request.min_fidelity:
            return [err(now, request, ErrCode.UNSUPPORTED, f"no path reaches fidelity "
                        f"{request.min_fidelity:.3f} (best {best:.3f})")]
        self.open[request.id] = _Held(request, now)
        self.queues.setdefault(self._key(request.a, request.b), deque()).append(request.id)
        if request.deadline is not None:
            heapq.heappush(self._deadlines, (request.deadline, request.id))
        decisions = [Decision(now, "ACK", "queued for its pair's slot in the fixed schedule",
                              request.id, qnus=request.qnus)]
        return decisions + self._fill(now)

    def cancel(self, request_id: str, now: float) -> list[Decision]:
        self.clock.advance(now)
        entry = self.open.get(request_id)
        if entry is None:
            return []
        return [Decision(now, "CANCEL", "cancelled by the application", request_id,
                         entry.station, entry.request.qnus),
                *self._close(entry, now), *self._fill(now)]

    def pairs_held(self, request_id: str, held: int, now: float) -> list[Decision]:
        self.clock.advance(now)
        entry = self.open.get(request_id)
        if entry is None:
            return []
        entry.held = held
        if held < entry.request.pairs or entry.station is None:
            return []
        decisions = [Decision(now, "OK", f"{entry.request.pairs} pair(s) held", request_id,
                              entry.station, entry.request.qnus,
                              values={"latency": now - entry.submitted})]
        return decisions + self._close(entry, now) + self._fill(now)

    def tick(self, now: float) -> list[Decision]:
        self.clock.advance(now)
        decisions: list[Decision] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, request_id = heapq.heappop(self._deadlines)
            entry = self.open.get(request_id)
            if entry is not None:
                decisions.append(err(now, entry.request, ErrCode.TIMEOUT,
                                     f"deadline passed with {entry.held} of "
                                     f"{entry.request.pairs} pairs held"))
                decisions += self._close(entry, now)
        slot = math.floor(now / self.slot_time + 1e-9)  # not //: 0.6 // 0.2 is 2.0
        if slot != self.slot:
            decisions += self._next_slot(slot, now)
        return decisions + self._fill(now)

    def next_wakeup(self) -> float | None:
        # slots turn only while there is work: an idle bridge needs no wake-ups
        if not self.open:
            return None
        turn = (self.slot + 1) * self.slot_time
        while self._deadlines and self._deadlines[0][1] not in self.open:
            heapq.heappop(self._deadlines)
        return min(turn, self._deadlines[0][0]) if self._deadlines else turn

    # -- the schedule ---------------------------------------------------------------------------
    def _next_slot(self, slot: int, now: float) -> list[Decision]:
        decisions: list[Decision] = []
        for station, request_id in list(self.running.items()):
            entry = self.open[request_id]
            decisions.append(Decision(now, "SUSPEND", f"slot {self.slot} ended with "
                                      f"{entry.held} of {entry.request.pairs} pairs held",
                                      request_id, station, entry.request.qnus))
            entry.station = None
            del self.running[station]
            # first of its pair's queue again: it resumes when the pair comes round
            key = self._key(*entry.request.qnus)
            self.queues.setdefault(key, deque()).appendleft(request_id)
        self.slot = slot
        self.slot_pairs.clear()
        used: set[str] = set()
        qnus, stations = self.topology.qnus, self.topology.stations
        for j, station in enumerate(stations):
            pair = tournament_pair(len(qnus), slot * len(stations) + j)
            if pair is None:
                continue
            a, b = qnus[pair[0]], qnus[pair[1]]
            if a in used or b in used:
                continue
            used.update((a, b))
            self.slot_pairs[station] = (a, b)
            ready, changes = self.switch.connect(station, a, b, now,
                                                 f"round-robin slot {slot}")
            self.ready[station] = ready
            decisions += changes
        return decisions

    def _fill(self, now: float) -> list[Decision]:
        """Give each idle station of this slot the oldest waiting request of its pair."""
        decisions: list[Decision] = []
        for station, (a, b) in self.slot_pairs.items():
            if station in self.running:
                continue
            queue = self.queues.get(self._key(a, b))
            while queue and queue[0] not in self.open:
                queue.popleft()
            if not queue:
                continue
            entry = self.open[queue.popleft()]
            entry.station = station
            self.running[station] = entry.request.id
            decisions.append(Decision(now, "ASSIGN", f"slot {self.slot} connects {a}-{b} to "
                                      f"{station}: oldest waiting request of the pair",
                                      entry.request.id, station, entry.request.qnus,
                                      ready_at=max(now, self.ready[station])))
        return decisions

    def _close(self, entry: _Held, now: float) -> list[Decision]:
        r = entry.request
        self.open.pop(r.id, None)
        queue = self.queues.get(self._key(r.a, r.b))
        if queue is not None and not queue:
            del self.queues[self._key(r.a, r.b)]
        if entry.station is None:
            return []
        self.running.pop(entry.station, None)
        return [Decision(now, "RELEASE", "request closed: the station serves the next request "
                         "of its pair until the slot ends", r.id, entry.station, r.qnus)]
