"""The orchestrator's scheduling core: a deterministic state machine, events in, decisions out.

No I/O and no clock: every call passes the time (s on the run's clock), so the same core runs
behind the orchestrator process and inside the discrete-event simulation (`des.simulate`).
Events: `submit`, `cancel`, `pairs_held` (how many usable pairs a running request holds),
`tick` (a wake-up the caller schedules at `next_wakeup()`). Each returns the decisions taken,
every one with its reason (`records.Decision`).

Policy (derivation and the trade-offs: docs/bridge.md#the-scheduler):

- ERR early: UNSUPPORTED when no station's path reaches the fidelity, or the pairs cannot
  be held together within the memory cutoff; TIMEOUT as soon as the expected time (setup +
  expected heralding at the best path) no longer fits before the deadline, at submission or
  while waiting; a running request still short at its deadline is ERR TIMEOUT then.
- Order: aged requests (waiting longer than `aging_time`) oldest first, then earliest
  deadline, then oldest. An aged request whose QNUs are busy reserves them (no younger
  request may take them), and one that finds no station stops younger requests from taking
  the next: so no flood can hold an old request back beyond the flood's running requests.
- Placement: the free station with the earliest expected finish (setup cost + expected
  heralding time): a station already connected to the pair costs nothing, another one the
  switch's settle time plus a re-check per stale path. If every free station needs a
  re-check, waiting for a busy station whose paths are fresh is weighed: the request WAITs
  when that finishes earlier (never when aged).
- A station keeps its connection after a request: the next request for the same pair reuses
  it.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

from ..messages import ErrCode
from .records import Clock, Decision, Request, err
from .switch_state import SwitchState
from .topology import BridgeTopology


@dataclass(frozen=True)
class SchedulerSettings:
    aging_time: float = 2.0
    """s a request may wait before it is served before all younger ones."""
    wait_margin: float = 0.0
    """s that waiting for a fresh busy station must win by before the scheduler waits."""
    hold_time: float = 1e-4
    """s a station (and its two QNUs) stays kept for its pair after a request completes, so
    that the pair's follow-up (a computation's next remote gate, microseconds later) reuses
    the connection instead of another pair taking the station and the follow-up paying a
    settle elsewhere. Costs at most this much station time per request; 0: no hold."""


@dataclass
class _Open:
    """A request the scheduler holds: waiting (station None) or running."""

    request: Request
    submitted: float
    seq: int
    window: float
    """s each pair stays usable (memory cutoff and min fidelity)."""
    station: str | None = None
    ready_at: float = 0.0
    service: float = 0.0
    """s of expected heralding at the assigned station."""
    held: int = 0
    wait_reason: str = ""
    wait_key: tuple[object, ...] = ()
    """What the last WAIT was about (a WAIT is logged only when it changes)."""


class Scheduler:
    """The orchestrator's policy. Memory: the open requests plus the switch's state
    (connections, paths re-checked), nothing per QNU pair or per decision taken."""

    name = "orchestrator"

    def __init__(self, topology: BridgeTopology,
                 settings: SchedulerSettings = SchedulerSettings()) -> None:
        self.topology = topology
        self.clock = Clock()
        self.settings = settings
        self.switch = SwitchState(topology)
        self.open: dict[str, _Open] = {}
        self.waiting: dict[str, _Open] = {}
        self.busy: dict[str, str] = {}
        """station -> running request id."""
        self.qnu_busy: dict[str, str] = {}
        """QNU -> running request id (a QNU is in one path at a time)."""
        self.free: dict[str, None] = dict.fromkeys(topology.stations)
        """Stations without a running request (a dict: ordered, so runs are repeatable)."""
        self._order: list[tuple[float, float, int, str]] = []
        """(deadline or inf, submitted, seq, id) of the waiting requests, sorted; entries of
        requests no longer waiting are skipped and compacted away."""
        self.holds: dict[str, tuple[float, tuple[str, str]]] = {}
        """station -> (until, pair): kept for that pair's follow-up."""
        self._seq = 0
        self._wakeups: list[tuple[float, int, str]] = []
        """(time, seq, request id or "" for a plain scheduling pass)."""

    # -- events ---------------------------------------------------------------------------------

    def retune(self, *, recheck_time: float) -> None:
        """Plan re-checks at `recheck_time` s per stale path from now on (the orchestrator
        learns what one costs on its bench: `BridgeEngine._learn_recheck_cost`)."""
        if not (math.isfinite(recheck_time) and recheck_time >= 0.0):
            raise ValueError(f"recheck_time {recheck_time!r} must be finite and >= 0 s")
        self.topology = replace(self.topology, recheck_time=recheck_time)
        self.switch.topology = self.topology

    def submit(self, request: Request, now: float) -> list[Decision]:
        """A new request: ERR at once where the physics cannot serve it, else ACK (and maybe
        ASSIGN)."""
        self.clock.advance(now)
        if request.id in self.open:
            return [err(now, request, ErrCode.UNSUPPORTED,
                        f"request id {request.id} is already open: ids must be unique")]
        refusal = self._refusal(request, now)
        if refusal is not None:
            return [refusal]
        window = self._window(request)
        entry = _Open(request, now, self._seq, window)
        self._seq += 1
        self.open[request.id] = entry
        self.waiting[request.id] = entry
        deadline = math.inf if request.deadline is None else request.deadline
        bisect.insort(self._order, (deadline, now, entry.seq, request.id))
        best = self._best_estimate(request, window, now)
        decisions = [Decision(now, "ACK", f"accepted: expected {best:.3g} s at the best path",
                              request.id, qnus=request.qnus, values={"expected_time": best})]
        self._wake_for_deadline(entry)
        decisions += self._schedule(now)
        if request.id in self.waiting and not entry.wait_key:
            entry.wait_key, entry.wait_reason = ("queued",), "no free station"
            decisions.append(Decision(now, "WAIT", "no free station: queued", request.id,
                                      qnus=request.qnus,
                                      values={"queue": float(len(self.waiting))}))
        return decisions

    def cancel(self, request_id: str, now: float) -> list[Decision]:
        """The application withdraws a request (its held pairs are freed)."""
        self.clock.advance(now)
        entry = self.open.get(request_id)
        if entry is None:
            return []
        decisions = [Decision(now, "CANCEL", "cancelled by the application", request_id,
                              entry.station, entry.request.qnus)]
        decisions += self._close(entry, now)
        return decisions + self._schedule(now)

    def pairs_held(self, request_id: str, held: int, now: float) -> list[Decision]:
        """A running request now holds `held` usable pairs (after a herald or an expiry):
        OK and the next assignments once it holds all it asked for."""
        self.clock.advance(now)
        entry = self.open.get(request_id)
        if entry is None or entry.station is None:
            return []
        entry.held = held
        if held < entry.request.pairs:
            return []
        r = entry.request
        what = "state transfer: the pair is consumed, A's 2 bits go to B" if r.transfer \
            else f"{r.pairs} pair(s) held"
        decisions = [Decision(now, "OK", what, r.id, entry.station, r.qnus,
                              values={"latency": now - entry.submitted,
                                      "pairs": 1.0 if r.transfer else float(r.pairs)})]
        station = entry.station
        decisions += self._close(entry, now)
        hold = self.settings.hold_time
        if hold > 0.0:
            self.holds[station] = (now + hold, _pair(r.a, r.b))
            heapq.heappush(self._wakeups, (now + hold, self._seq, ""))
            self._seq += 1
            decisions.append(Decision(
                now, "HOLD", f"{station} kept for {r.a}-{r.b} for {hold * 1e6:.3g} us: a "
                f"follow-up of the pair reuses the connection (saves the "
                f"{self.topology.settle_time * 1e3:.3g} ms settle)", r.id, station, r.qnus,
                values={"hold_time": hold}))
        return decisions + self._schedule(now)

    def fail(self, request_id: str, code: ErrCode, reason: str, now: float) -> list[Decision]:
        """The fabric could not set a running request's path up (the switch refused or did
        not answer): ERR with `reason`, and its station taken as connected to nothing (the
        fabric cleared its arms), so its next use pays the settle and the re-checks."""
        self.clock.advance(now)
        entry = self.open.get(request_id)
        if entry is None:
            return []
        if entry.station is not None:
            for q in self.switch.arms.pop(entry.station, ()):
                self.switch.qnu_station.pop(q, None)
            for q in entry.request.qnus:  # its re-checks never happened: stale as before
                self.switch.checked.pop((q, entry.station), None)
        decisions = [err(now, entry.request, code, reason), *self._close(entry, now)]
        return decisions + self._schedule(now)

    def tick(self, now: float) -> list[Decision]:
        """Deadlines: ERR what can no longer (waiting) or did not (running) make it; then
        schedule."""
        self.clock.advance(now)
        decisions: list[Decision] = []
        while self._wakeups and self._wakeups[0][0] <= now:
            _, _, request_id = heapq.heappop(self._wakeups)
            entry = self.open.get(request_id)
            if entry is not None:
                decisions += self._check_deadline(entry, now)
        for station, (until, _) in list(self.holds.items()):
            if until <= now:
                del self.holds[station]
        return decisions + self._schedule(now)

    def next_wakeup(self) -> float | None:
        """s when `tick` has something to do (None: only events will)."""
        while self._wakeups and self._wakeups[0][2] and self._wakeups[0][2] not in self.open:
            heapq.heappop(self._wakeups)
        return self._wakeups[0][0] if self._wakeups else None

    # -- estimates ------------------------------------------------------------------------------
    def _window(self, r: Request) -> float:
        """s a pair of the best path stays usable for `r`."""
        t = self.topology
        return max(link.usable_age(r.min_fidelity, t.memory_cutoff)
                   for link in t.path_links(r.a, r.b))

    def _service(self, entry: _Open, station: str) -> float:
        r = entry.request
        link = self.topology.path_link(r.a, r.b, station)
        return link.expected_time(r.pairs - entry.held, entry.window)

    def _setup_floor(self, r: Request, now: float) -> float:
        """s of setup at the least: 0 if some station holds the pair, else the settle."""
        station = self.switch.qnu_station.get(r.a)
        if station is not None and self.switch.connected(station, r.a, r.b):
            return 0.0
        return self.topology.settle_time

    def _best_estimate(self, r: Request, window: float, now: float) -> float:
        t = self.topology
        heralding = min(link.expected_time(r.pairs, window) for link in t.path_links(r.a, r.b))
        return self._setup_floor(r, now) + heralding

    def _refusal(self, r: Request, now: float) -> Decision | None:
        t = self.topology
        for q in r.qnus:
            if q not in t.qnu_fibre_km:
                return err(now, r, ErrCode.UNSUPPORTED, f"QNU {q} is not on bridge {t.name}")
        best_fidelity = max(link.fidelity for link in t.path_links(r.a, r.b))
        if best_fidelity < r.min_fidelity:
            return err(now, r, ErrCode.UNSUPPORTED, f"no path reaches fidelity "
                       f"{r.min_fidelity:.3f} (best {best_fidelity:.3f})",
                       best_fidelity=best_fidelity)
        window = self._window(r)
        best = self._best_estimate(r, window, now)
        if math.isinf(best):
            return err(now, r, ErrCode.UNSUPPORTED, f"{r.pairs} pairs cannot be held together: "
                       f"each stays usable {window * 1e3:.3g} ms at the link's rate",
                       window=window)
        if r.deadline is not None and now + best > r.deadline:
            return err(now, r, ErrCode.TIMEOUT, f"deadline in {r.deadline - now:.3g} s but the "
                       f"best path needs {best:.3g} s expected: refused early",
                       expected_time=best, slack=r.deadline - now)
        return None

    def _wake_for_deadline(self, entry: _Open) -> None:
        """Wake when a waiting request's deadline stops fitting (the latest start with and
        without a settle), and at the deadline itself (a running request)."""
        r = entry.request
        if r.deadline is None:
            return
        t = self.topology
        heralding = min(link.expected_time(r.pairs, entry.window)
                        for link in t.path_links(r.a, r.b))
        for at in (r.deadline - heralding - t.settle_time, r.deadline - heralding,
                   r.deadline):
            heapq.heappush(self._wakeups, (max(at, entry.submitted), entry.seq, r.id))

    def _check_deadline(self, entry: _Open, now: float) -> list[Decision]:
        r = entry.request
        assert r.deadline is not None  # only deadline requests are woken
        if entry.station is None:
            best = self._best_estimate(r, entry.window, now)
            if now + best > r.deadline:
                return [err(now, r, ErrCode.TIMEOUT, f"waited {now - entry.submitted:.3g} s; "
                            f"{best:.3g} s expected no longer fits the deadline in "
                            f"{r.deadline - now:.3g} s: refused before the deadline",
                            expected_time=best), *self._close(entry, now)]
            return []
        if now >= r.deadline:
            return [err(now, r, ErrCode.TIMEOUT, f"deadline passed with {entry.held} of "
                        f"{r.pairs} pairs held", held=float(entry.held)),
                    *self._close(entry, now)]
        return []

    # -- placement ------------------------------------------------------------------------------
    def _in_priority(self, now: float) -> Iterator[tuple[_Open, bool]]:
        """The waiting requests in priority order, each with whether it is aged: the aged
        oldest first (the waiting dict is in submission order), then by (deadline,
        submission)."""
        horizon = now - self.settings.aging_time
        aged = []
        for entry in self.waiting.values():
            if entry.submitted > horizon:
                break
            aged.append(entry)
        for entry in aged:
            yield entry, True
        if len(self._order) > 2 * len(self.waiting) + 16:
            self._order = [k for k in self._order if k[3] in self.waiting]
        for key in self._order:
            young = self.waiting.get(key[3])
            if young is not None and young.submitted > horizon:
                yield young, False

    def _schedule(self, now: float) -> list[Decision]:
        """Give free stations to waiting requests, by priority (see the module's policy)."""
        if not self.free or not self.waiting:
            return []
        free = list(self.free)
        decisions: list[Decision] = []
        kept = {pair: s for s, (until, pair) in self.holds.items() if until > now and s in free}
        reserved: set[str] = set()  # QNUs an aged request waits for
        # QNUs a young request cannot take: in a path, reserved, or kept for a follow-up (the
        # inner loop is the scheduler's hot path: sets, no per-request allocation)
        blocked = set(self.qnu_busy).union(*kept)
        for entry, aged in self._in_priority(now):
            if not free:
                break
            r = entry.request
            a, b = r.a, r.b
            if kept:
                station = kept.pop(_pair(a, b), None)
                # the follow-up the station was kept for (unless an aged request took it in
                # this pass: aged requests override holds)
                if station is not None and station in free:
                    free.remove(station)
                    decisions += self._assign(entry, station, now,
                                              now + self._service(entry, station), 0.0, aged)
                    blocked.update((a, b))
                    continue
            if aged:
                on = self.qnu_busy
                busy = a if a in on or a in reserved else b if b in on or b in reserved \
                    else None
            else:
                busy = a if a in blocked else b if b in blocked else None
            if busy is not None:
                if aged:
                    reserved.update((a, b))
                    blocked.update((a, b))
                if entry.wait_key != ("busy", busy, aged):  # cheap: most passes skip it
                    decisions += self._wait(
                        entry, now, f"QNU {busy} is in another path"
                        + (" (reserved for this aged request)" if aged else ""),
                        ("busy", busy, aged))
                continue
            # a station kept for a follow-up goes to no other pair, except to an aged request
            candidates = free if aged else [s for s in free if s not in kept.values()]
            if not candidates:
                decisions += self._wait(entry, now, "the free stations are kept for their "
                                        "pairs' follow-ups", ("kept",))
                continue
            station, finish, cost = self._best_free(entry, candidates, now)
            if not aged and cost > self.topology.settle_time:
                alternative = self._fresh_busy_alternative(entry, now, finish)
                if alternative is not None:
                    decisions += self._wait(entry, now, alternative, ("fresh",))
                    continue
            free.remove(station)
            decisions += self._assign(entry, station, now, finish, cost, aged)
            blocked.update((a, b))
        return decisions

    def _best_free(self, entry: _Open, free: list[str], now: float) -> tuple[str, float, float]:
        """(station, expected finish time, setup cost) of the best free station."""
        r = entry.request
        best: tuple[float, float, str] | None = None
        for s in free:
            cost = self.switch.setup_cost(s, r.a, r.b, now)
            finish = now + cost + self._service(entry, s)
            if best is None or finish < best[0]:
                best = (finish, cost, s)
                if cost == 0.0:
                    break  # already connected: nothing beats reuse by more than the rates' spread
        assert best is not None
        return best[2], best[0], best[1]

    def _fresh_busy_alternative(self, entry: _Open, now: float, finish: float) -> str | None:
        """A reason to wait for a busy station, if one whose paths are fresh frees and
        finishes this request sooner than the best free station (which needs re-checks)."""
        r = entry.request
        best: tuple[float, str] | None = None
        for station, running_id in self.busy.items():
            running = self.open[running_id]
            frees = max(running.ready_at, now) + self._service(running, station)
            done = frees + self.switch.setup_cost(station, r.a, r.b, frees) \
                + self._service(entry, station)
            if best is None or done < best[0]:
                best = (done, station)
        if best is None or best[0] + self.settings.wait_margin >= finish:
            return None
        return (f"waiting for {best[1]} (fresh paths, expected done at {best[0]:.3f} s) beats "
                f"re-checking a stale path on a free station (done at {finish:.3f} s)")

    def _assign(self, entry: _Open, station: str, now: float, finish: float, cost: float,
                aged: bool) -> list[Decision]:
        r = entry.request
        if cost == 0.0:
            why = f"{station} is already connected to {r.a}-{r.b}: no reconfiguration"
        else:
            why = f"connect {r.a}-{r.b} to {station}: {cost * 1e3:.3g} ms setup"
        ready, decisions = self.switch.connect(station, r.a, r.b, now, why, r.id)
        del self.waiting[r.id]
        entry.station, entry.ready_at = station, ready
        entry.service = self._service(entry, station)
        self.busy[station] = r.id
        del self.free[station]
        self.holds.pop(station, None)
        for other, (_, pair) in list(self.holds.items()):
            if set(pair) & set(r.qnus):
                del self.holds[other]  # an aged request overrode the hold
        self.qnu_busy[r.a] = self.qnu_busy[r.b] = r.id
        reason = ("aged request served first; " if aged else "") + why + \
            f"; expected done at {finish:.3f} s (the earliest of the free stations)"
        decisions.append(Decision(now, "ASSIGN", reason, r.id, station, r.qnus, ready_at=ready,
                                  values={"setup": cost, "expected_time": entry.service,
                                          "waited": now - entry.submitted}))
        return decisions

    def _wait(self, entry: _Open, now: float, reason: str,
              key: tuple[object, ...]) -> list[Decision]:
        """A WAIT decision, logged only when what it waits for (`key`) changes."""
        if key == entry.wait_key:
            return []
        entry.wait_key, entry.wait_reason = key, reason
        return [Decision(now, "WAIT", reason, entry.request.id, qnus=entry.request.qnus)]

    def _close(self, entry: _Open, now: float) -> list[Decision]:
        """Forget a finished, refused or cancelled request; free its station and QNUs."""
        r = entry.request
        self.open.pop(r.id, None)
        self.waiting.pop(r.id, None)
        if entry.station is None:
            return []
        self.busy.pop(entry.station, None)
        self.free[entry.station] = None
        for q in r.qnus:
            if self.qnu_busy.get(q) == r.id:
                del self.qnu_busy[q]
        return [Decision(now, "RELEASE", "request closed: station free, connection kept for "
                         "reuse", r.id, entry.station, r.qnus)]


def _pair(a: str, b: str) -> tuple[str, str]:
    """A QNU pair, unordered (the key of a connection)."""
    return (a, b) if a < b else (b, a)
