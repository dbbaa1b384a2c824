"""`BridgeEngine`: the bridge orchestrator's core between the wire and the fabric. Client
requests in (already checked by `wire.decode_request`), the `Scheduler`'s decisions applied to
the fabric (switch paths, re-checks, assignments), heralds and expiries turned into deliveries,
transfers and ERRs, each decision logged with its reason. No sockets: the process around it is
`service.run_bridge_orchestrator`; the time-compressed study drives the same scheduler in
`des`. Protocol and physics: docs/bridge.md#the-orchestrator-process.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..messages import ErrCode
from .des import SchedulingCore
from .fabric import ArmMeasurement, Herald, PairFabric, PathSetup, PathSetupError
from .path_calibration import PathCalibrations
from .records import Decision, Request
from .topology import BridgeTopology, PathLink
from .wire import (
    Accepted,
    Cancel,
    Cancelled,
    ClientMessage,
    DecisionEntry,
    Delivered,
    Err,
    RequestPairs,
    RequestTransfer,
    ServerMessage,
    Transferred,
    bloch_vector,
    clip,
)


def teleported_fidelity(pair_fidelity: float, state: tuple[float, float, float]) -> float:
    """Fidelity of a state teleported over a Werner pair of fidelity F (docs/bridge.md):
    the output is the input depolarised with p = (4F - 1)/3, so a pure state arrives with
    (2F + 1)/3, and a mixed one of Bloch length r with (1 + p r^2)/2 +
    sqrt((1 - r^2)(1 - p^2 r^2))/2 (the qubit Uhlmann fidelity)."""
    p = (4.0 * pair_fidelity - 1.0) / 3.0
    r2 = min(1.0, math.fsum(v * v for v in state))
    mixed = math.sqrt(max(0.0, (1.0 - r2) * (1.0 - p * p * r2)))
    return min(1.0, max(0.0, (1.0 + p * r2) / 2.0 + mixed / 2.0))


@dataclass
class _Open:
    """A request the engine holds for a client."""

    client: str
    request_id: str
    """The client's id (the scheduler's is ``client/request_id``)."""
    message: RequestPairs | RequestTransfer
    submitted: float
    held: list[tuple[float, float, PathLink, tuple[str, int]]] = field(default_factory=list)
    """Pairs held: (heralded, expires, link, (station, seq)), s on the bridge clock."""
    delivered: list[tuple[str, int]] = field(default_factory=list)
    """(station, seq) of the pairs it was given (the fabric's nodes get their verdicts)."""


class BridgeEngine:
    """The orchestrator without sockets: client messages and time in, replies out
    (`outbox`: (client, message)). Time is passed in (s on the bridge clock, never
    decreasing): `advance(now)` carries out what fell due (heralds, expiries, the
    scheduler's wake-ups) in time order, so a late turn changes no outcome."""

    def __init__(self, topology: BridgeTopology, scheduler: SchedulingCore, fabric: PairFabric,
                 seed: int = 0, log: Callable[[dict[str, Any]], None] | None = None,
                 max_open_per_client: int = 256,
                 calibrations: PathCalibrations | None = None) -> None:
        """`calibrations`: each path's stored arm delay and time (the scheduler's RECHECKs
        are recorded there, an assigned path's stored values logged); None: none kept."""
        self.topology, self.scheduler, self.fabric = topology, scheduler, fabric
        self.calibrations = calibrations
        self.rng = np.random.default_rng([seed, 1])  # the bits: not the fabric's stream
        self.log = log or (lambda record: None)
        self.max_open = max_open_per_client
        self.open: dict[str, _Open] = {}
        self.per_client: Counter[str] = Counter()
        self.expiries: list[tuple[float, str]] = []
        self.outbox: list[tuple[str, ServerMessage]] = []
        self.counters: Counter[str] = Counter()
        self.now = 0.0
        self._failed: list[tuple[str, PathSetupError]] = []
        """Requests whose path the fabric could not set up in the current call."""
        self._recheck_due: dict[str, list[Decision]] = {}
        """Request -> the RECHECKs of its stale paths, done when its ASSIGN's switching is."""
        self._measuring: dict[str, tuple[list[Decision], float]] = {}
        """Request -> (its RECHECKs the fabric is measuring, when that set-up began):
        `_take_setups` records them, and learns what they cost."""
        self._recheck_costs: list[float] = []
        """s per stale path each measured re-check took (`_learn_recheck_cost`)."""

    # -- client messages ------------------------------------------------------------------
    def handle(self, client: str, message: ClientMessage, now: float) -> None:
        """A checked message from `client` (its key's owner) at `now`."""
        self.advance(now)
        if isinstance(message, Cancel):
            self._cancel(client, message.request_id, now)
        else:
            self._submit(client, message, now)

    def _submit(self, client: str, message: RequestPairs | RequestTransfer, now: float) -> None:
        rid = message.request_id
        key = f"{client}/{rid}"
        if key in self.open:
            self._reply(client, Err(rid, "UNSUPPORTED", f"request id {rid} is already open: "
                                    "ids must be unique among your open requests"))
            return
        if self.per_client[client] >= self.max_open:
            self._reply(client, Err(rid, "NO_RESOURCES", f"{self.max_open} requests already "
                                    "open: wait for some to finish"))
            return
        deadline = None if message.deadline_s is None else now + message.deadline_s
        if isinstance(message, RequestTransfer):
            request = Request(key, message.source, message.target, 1, message.min_fidelity,
                              deadline, transfer=True)
        else:
            request = Request(key, message.qnu_a, message.qnu_b, message.pairs,
                              message.min_fidelity, deadline)
        self.open[key] = _Open(client, rid, message, now)
        self.per_client[client] += 1
        self.counters["requests"] += 1
        self._call(now, self.scheduler.submit, request)

    def _cancel(self, client: str, rid: str, now: float) -> None:
        key = f"{client}/{rid}"
        if key not in self.open:
            self._reply(client, Err(rid, "UNKNOWN_REQUEST", f"request {rid} is not open (done, "
                                    "refused, cancelled or never made): nothing to cancel"))
            return
        self._call(now, self.scheduler.cancel, key)

    def stop_all(self, now: float, why: str) -> None:
        """Refuse every open request (the orchestrator is stopping), so no client waits."""
        for key, entry in list(self.open.items()):
            self.log({"time": now, "action": "ERR", "request": key, "client": entry.client,
                      "code": "NO_RESOURCES", "reason": why})
            self._reply(entry.client, Err(entry.request_id, "NO_RESOURCES", clip(why)))
            self._forget(key)

    # -- time -----------------------------------------------------------------------------
    def next_time(self) -> float | None:
        """s (bridge clock) when `advance` next has something to do."""
        times = [t for t in (self.fabric.next_time(), self.scheduler.next_wakeup(),
                             self.expiries[0][0] if self.expiries else None) if t is not None]
        return min(times) if times else None

    def advance(self, now: float) -> None:
        """Carry out, in time order, everything due at or before `now` (first the fabric's
        ended set-ups, at `now`: they end in wall time, when the station answers)."""
        self._take_setups(max(now, self.now))
        self._take_refusals(max(now, self.now))
        self._take_voided(max(now, self.now))
        for _ in range(1_000_000):  # bounded: a scheduler bug must not hang the process
            herald = self.fabric.next_time()
            expiry = self.expiries[0][0] if self.expiries else None
            wake = self.scheduler.next_wakeup()
            due = min((t for t in (herald, expiry, wake) if t is not None), default=None)
            if due is None or due > now:
                break
            at = max(due, self.now)  # never backwards (a wake-up set for the past)
            if expiry is not None and expiry <= due:
                self._expire(at)
            elif herald is not None and herald <= due:
                popped = self.fabric.pop(now)
                if popped is not None:
                    self._herald(popped, max(popped.time, self.now))
            else:
                self._call(at, self.scheduler.tick)
        self.now = max(self.now, now)

    def _herald(self, herald: Herald, at: float) -> None:
        entry = self.open.get(herald.request)
        if entry is None:
            return
        usable = herald.link.usable_age(entry.message.min_fidelity, self.topology.memory_cutoff)
        if usable <= 0.0:  # this path cannot reach the minimum even fresh
            self.counters["pairs_below_minimum"] += 1
            self._discard(herald.request, [(herald.station, herald.seq)])
            return
        entry.held.append((at, at + usable, herald.link, (herald.station, herald.seq)))
        heapq.heappush(self.expiries, (at + usable, herald.request))
        self.counters["heralds"] += 1
        self._call(at, self.scheduler.pairs_held, herald.request, len(entry.held))

    def _expire(self, at: float) -> None:
        _, key = heapq.heappop(self.expiries)
        entry = self.open.get(key)
        if entry is None:
            return
        kept = [pair for pair in entry.held if pair[1] > at]
        if len(kept) == len(entry.held):
            return
        self.counters["pairs_expired"] += len(entry.held) - len(kept)
        self._discard(key, [pair[3] for pair in entry.held if pair[1] <= at])
        entry.held = kept
        self._call(at, self.scheduler.pairs_held, key, len(kept))

    def _discard(self, request: str, pairs: list[tuple[str, int]]) -> None:
        """`pairs` ((station, seq)) are of no use to `request` (expired, or below its
        minimum fidelity): the fabric frees them where it keeps them (the QNUs' memories)."""
        discard = getattr(self.fabric, "discard", None)
        if discard is not None and pairs:
            discard(request, pairs)

    # -- decisions ------------------------------------------------------------------------
    def _call(self, now: float, method: Callable[..., list[Decision]], *args: object) -> None:
        self.now = max(self.now, now)
        decisions = method(*args, now)
        finished: list[str] = []
        self._failed = []
        for decision in decisions:
            entry = self.open.get(decision.request or "")
            record = decision.as_record()
            if entry is not None:
                record["client"] = entry.client
            self.log(record)
            self.counters[f"decision_{decision.action.lower()}"] += 1
            if entry is None:
                continue
            self._reply(entry.client, _entry(entry.request_id, decision))
            finished += self._apply(decision, entry, now)
        for key in finished:
            self._forget(key)
        failed, self._failed = self._failed, []
        for key, exc in failed:  # the fabric could not set the path up: ERR, bench cleared
            self.counters["switch_failures"] += 1
            self._call(now, self._fail, key, exc)

    def _fail(self, key: str, exc: PathSetupError, now: float) -> list[Decision]:
        """ERR for a request whose path the fabric could not set up (the scheduler's own
        `fail` when it has one; else a cancel, whose CANCEL is turned into that ERR)."""
        return self._fail_because(key, exc, f"the switch could not set the path up: {exc}",
                                  now)

    def _node_refused(self, key: str, exc: PathSetupError, now: float) -> list[Decision]:
        """ERR for a request a QNU's node agent refused (as `_fail`)."""
        return self._fail_because(key, exc, str(exc), now)

    def _fail_because(self, key: str, exc: PathSetupError, reason: str, now: float
                      ) -> list[Decision]:
        fail = getattr(self.scheduler, "fail", None)
        if fail is not None:
            decisions: list[Decision] = fail(key, ErrCode[exc.code], reason, now)
            return decisions
        return [replace(d, action="ERR", reason=reason, code=exc.code)
                if d.action == "CANCEL" else d for d in self.scheduler.cancel(key, now)]

    def _apply(self, d: Decision, entry: _Open, now: float) -> list[str]:
        """Carry out `d` (about `entry`); the requests it finished."""
        if d.action == "ASSIGN":
            assert d.station is not None and d.ready_at is not None
            a, b = _qnus(entry.message)
            setup = self._path_setup(d, a, b)
            due = self._recheck_due.pop(d.request or "", [])
            try:
                self.fabric.assign(d.station, d.request or "", a, b, d.ready_at, setup)
            except PathSetupError as exc:
                self.log({"time": now, "event": "switch_failed", "for_request": d.request,
                          "client": entry.client, "station": d.station, "reason": str(exc)})
                self._failed.append((d.request or "", exc))
            else:
                if setup is not None and setup.recheck and getattr(self.fabric, "measures",
                                                                   False):
                    self._measuring[d.request or ""] = (due, now)
                else:
                    self._rechecks(d.request or "", due, now, {})
                self._path_values(d, a, b, now)
        elif d.action == "RECHECK" and d.station:
            # done once the switch has made the path (the ASSIGN that follows)
            self._recheck_due.setdefault(d.request or "", []).append(d)
        elif d.action in ("SUSPEND", "RELEASE") and d.station is not None:
            self.fabric.release(d.station)
        elif d.action == "ACK":
            self._reply(entry.client, Accepted(entry.request_id,
                                               d.values.get("expected_time", 0.0)))
        elif d.action == "OK":
            self._deliver(entry, d.station or "", now)
            return [d.request or ""]
        elif d.action == "ERR":
            self.counters["pairs_wasted"] += len(entry.held)
            self._reply(entry.client, Err(entry.request_id, d.code or "UNSUPPORTED",
                                          clip(d.reason)))
            return [d.request or ""]
        elif d.action == "CANCEL":
            self.counters["pairs_wasted"] += len(entry.held)
            self._reply(entry.client, Cancelled(entry.request_id))
            return [d.request or ""]
        return []

    def _take_setups(self, now: float) -> None:
        """The fabric's set-ups that ended: the re-checks it measured recorded, or the
        request of one that failed given its ERR."""
        take = getattr(self.fabric, "take_setups", None)
        for result in take() if take is not None else ():
            due, started = self._measuring.pop(result.request, ([], now))
            # what was measured is kept, also when a later step failed
            self._rechecks(result.request, due, now, result.measured,
                           only_measured=result.error is not None)
            if result.error is None:
                if result.measured:  # (every stale path of the pair)
                    self._learn_recheck_cost(now - started, len(result.measured), now)
                continue
            self.log({"time": now, "event": "path_setup_failed", "for_request": result.request,
                      "station": result.station, "reason": str(result.error),
                      "current": result.current})
            if result.current and result.request in self.open:
                self.counters["switch_failures"] += 1
                self._call(now, self._fail, result.request, result.error)

    def _take_refusals(self, now: float) -> None:
        """Requests a QNU's node agent refused (the fabric says which, and why): ERR for
        each still served there. Kept apart from the set-ups: a re-check may be under way."""
        take = getattr(self.fabric, "take_refusals", None)
        for result in take() if take is not None else ():
            self.log({"time": now, "event": "node_refused", "for_request": result.request,
                      "station": result.station, "reason": str(result.error),
                      "current": result.current})
            if result.current and result.request in self.open and result.error is not None:
                self.counters["node_refusals"] += 1
                self._call(now, self._node_refused, result.request, result.error)

    def _take_voided(self, now: float) -> None:
        """Pairs the fabric says a QNU no longer holds (its node agent restarted): no longer
        held for their requests either."""
        take = getattr(self.fabric, "take_voided", None)
        voided: dict[str, set[tuple[str, int]]] = {}
        for request, station, seq in take() if take is not None else ():
            voided.setdefault(request, set()).add((station, seq))
        for key, pairs in voided.items():
            entry = self.open.get(key)
            if entry is None:
                continue
            kept = [pair for pair in entry.held if pair[3] not in pairs]
            if len(kept) == len(entry.held):
                continue
            self.counters["pairs_voided"] += len(entry.held) - len(kept)
            entry.held = kept
            self._call(now, self.scheduler.pairs_held, key, len(kept))

    def _learn_recheck_cost(self, took: float, paths: int, now: float) -> None:
        """A measured re-check of `paths` stale paths took `took` s from its ASSIGN to the
        windows set: the scheduler plans the next at the mean cost per path seen so far (a
        scheduler that cannot be retuned keeps its own), logged with why."""
        self._recheck_costs.append(took / paths)
        learned = float(np.mean(self._recheck_costs))
        retune = getattr(self.scheduler, "retune", None)
        planned = float(getattr(getattr(self.scheduler, "topology", None), "recheck_time",
                                math.nan))
        self.log({"time": now, "event": "recheck_cost", "took": took, "paths": paths,
                  "learned": learned, "planned": planned, "rechecks_seen":
                  len(self._recheck_costs), "retuned": retune is not None})
        if retune is not None:
            retune(recheck_time=learned)

    def recheck_summary(self) -> dict[str, Any]:
        """The re-checks for a run's summary: how many, how many measured, the cost per path
        learned from them (s; None before any) and the one planned with at the start."""
        return {"done": self.counters["rechecks"], "measured": len(self._recheck_costs),
                "cost_learned_s": (float(np.mean(self._recheck_costs))
                                   if self._recheck_costs else None),
                "cost_configured_s": self.topology.recheck_time}

    def _path_setup(self, d: Decision, a: str, b: str) -> PathSetup | None:
        """The stored arm delays of the paths `d` switches in, and which are stale."""
        if self.calibrations is None or d.station is None:
            return None
        stale = {q for r in self._recheck_due.get(d.request or "", []) if r.station == d.station
                 for q in r.qnus}
        return PathSetup({q: self.calibrations.record(q, d.station).arm_delay for q in (a, b)},
                         frozenset(stale & {a, b}), self.calibrations.recheck_time)

    def _rechecks(self, request: str, due: list[Decision], now: float,
                  measured: Mapping[str, ArmMeasurement], only_measured: bool = False,
                  ) -> None:
        """Record the re-checks `due` of `request`'s stale paths, now that they are switched
        in: the value the fabric `measured`, or (none measured, and not `only_measured`) a
        recorded step."""
        for d in due:
            assert d.station is not None
            done = d.ready_at if d.ready_at is not None else now
            for qnu in d.qnus:
                m = measured.get(qnu)
                if m is None and only_measured:
                    continue
                self.counters["rechecks"] += 1
                record, before = None, None
                if self.calibrations is not None:
                    before = self.calibrations.record(qnu, d.station).arm_delay
                    record = (self.calibrations.recheck(qnu, d.station, done) if m is None
                              else self.calibrations.measured(qnu, d.station, now, m.arm_delay,
                                                              m.error, m.detail))
                self.log({"time": now, "event": "recheck", "for_request": request, "qnu": qnu,
                          "station": d.station, "done_at": done, "measured": m is not None,
                          "cost": d.values.get("recheck_time", 0.0),
                          "recorded": record is not None,
                          "arm_delay": None if record is None else record.arm_delay,
                          "stored_before": before,
                          "error": None if m is None else m.error})

    def _path_values(self, d: Decision, a: str, b: str, now: float) -> None:
        """Log the stored values of the paths switched in (a station process's windows are
        set from them; the simulated link model has no arm delays)."""
        if self.calibrations is None or d.station is None:
            return
        records = [self.calibrations.record(q, d.station) for q in (a, b)]
        self.log({"time": now, "event": "path_values", "for_request": d.request,
                  "station": d.station,
                  "arm_delay": {r.qnu: r.arm_delay for r in records},
                  "age": {r.qnu: self.calibrations.run_start + now - r.checked
                          for r in records}})

    def _deliver(self, entry: _Open, station: str, now: float) -> None:
        fidelities = [link.fidelity_at(now - heralded) for heralded, _, link, _ in entry.held]
        latency = now - entry.submitted
        self.counters["delivered"] += 1
        m = entry.message
        if isinstance(m, RequestTransfer):
            pair = fidelities[0]
            entry.delivered = [entry.held[0][3]]
            m1, m2 = (int(b) for b in self.rng.integers(0, 2, size=2))
            self._reply(entry.client, Transferred(
                entry.request_id, station, teleported_fidelity(pair, bloch_vector(m.state)),
                pair, (m1, m2), self.topology.classical_delay(m.source, m.target), latency))
        else:
            entry.delivered = [held[3] for held in entry.held[:m.pairs]]
            self._reply(entry.client, Delivered(entry.request_id, station,
                                                tuple(fidelities[:m.pairs]), latency))

    def _forget(self, key: str) -> None:
        """`key` is done: the fabric settles its pairs (those given, the rest released)."""
        entry = self.open.pop(key, None)
        if entry is not None:
            self.per_client[entry.client] -= 1
            settle = getattr(self.fabric, "settle", None)
            if settle is not None:
                settle(key, entry.delivered)

    def _reply(self, client: str, message: ServerMessage) -> None:
        self.outbox.append((client, message))


def _qnus(m: RequestPairs | RequestTransfer) -> tuple[str, str]:
    return (m.source, m.target) if isinstance(m, RequestTransfer) else (m.qnu_a, m.qnu_b)


def _entry(request_id: str, d: Decision) -> DecisionEntry:
    """A decision as the client sees it: its own request id, numbers that JSON carries."""
    values = {k: v for k, v in d.values.items() if math.isfinite(v)}
    return DecisionEntry(request_id, d.time, d.action, clip(d.reason), d.station,
                         tuple(d.qnus[:2]), d.ready_at, d.code, values)
