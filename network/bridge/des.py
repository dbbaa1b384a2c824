"""A time-compressed discrete-event simulation of a workload on a bridge, driven by a
scheduling core unchanged (the orchestrator's `Scheduler` or the `RoundRobinScheduler`).

Virtual time, no processes: a station assigned to a QNU pair heralds at the exponential
waiting times of its path's expected rate (`topology.PathLink.rate`, from the link model),
from the moment the switch has settled and stale paths are re-checked; each herald gives both
QNUs a pair that stays usable until its fidelity falls below the request's minimum or the
memory cutoff (then it expires: wasted); local work takes its duration; a state transfer's
two bits take the classical delay. The scheduler sees only its events (submit,
pairs_held, tick at its wake-ups) and answers with decisions, which the simulation carries
out. Seeded: one seed, one run.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .records import Decision, Request
from .topology import BridgeTopology, PathLink
from .workload import Operation, Workload, check_qnus_known


class SchedulingCore(Protocol):
    """What the simulation (and the orchestrator process) needs of a scheduling core."""

    name: str

    def submit(self, request: Request, now: float) -> list[Decision]: ...
    def cancel(self, request_id: str, now: float) -> list[Decision]: ...
    def pairs_held(self, request_id: str, held: int, now: float) -> list[Decision]: ...
    def tick(self, now: float) -> list[Decision]: ...
    def next_wakeup(self) -> float | None: ...


@dataclass
class BridgeResult:
    """What a run gives (times in s on the simulated clock)."""

    workload: str
    policy: str
    seed: int
    makespan: float = 0.0
    operations_done: int = 0
    operations_failed: int = 0
    """Remote operations whose request got ERR (their successors never run)."""
    operations_total: int = 0
    pairs_delivered: int = 0
    pairs_wasted: int = 0
    """Heralded pairs that expired before use, or were held by a request that failed."""
    reconfigurations: int = 0
    rechecks: int = 0
    station_busy: dict[str, float] = field(default_factory=dict)
    """s each station heralded for a request."""
    latencies: list[float] = field(default_factory=list)
    """s from each remote operation's readiness to its OK."""
    transfer_fidelities: list[float] = field(default_factory=list)
    """Fidelity of each teleported state ((2F + 1) / 3 of the pair's fidelity when used)."""
    errors: dict[str, int] = field(default_factory=dict)
    decision_count: int = 0
    decisions: list[Decision] = field(default_factory=list)
    scheduler_seconds: float = 0.0
    """CPU s spent inside the scheduler's calls (the benchmark's decisions/s)."""
    max_open_requests: int = 0
    complete: bool = True
    """Every operation done (False: some failed, or the run hit max_time)."""
    hit_max_time: bool = False

    @property
    def utilisation(self) -> dict[str, float]:
        """Fraction of the makespan each station spent heralding."""
        span = self.makespan or math.inf
        return {s: busy / span for s, busy in self.station_busy.items()}

    def latency_summary(self) -> dict[str, float]:
        """p50, p90, p99 and max of the request latencies (s; nan if none)."""
        if not self.latencies:
            return {k: math.nan for k in ("p50", "p90", "p99", "max")}
        values = np.asarray(self.latencies)
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return {"p50": float(p50), "p90": float(p90), "p99": float(p99),
                "max": float(values.max())}

    def summary(self) -> dict[str, object]:
        """A JSON-ready report (decisions as their count; `decisions` holds the log)."""
        util = self.utilisation
        return {
            "workload": self.workload, "policy": self.policy, "seed": self.seed,
            "makespan": self.makespan, "complete": self.complete,
            "operations": {"total": self.operations_total, "done": self.operations_done,
                           "failed": self.operations_failed},
            "pairs_delivered": self.pairs_delivered, "pairs_wasted": self.pairs_wasted,
            "reconfigurations": self.reconfigurations, "rechecks": self.rechecks,
            "utilisation": util,
            "mean_utilisation": float(np.mean(list(util.values()))) if util else 0.0,
            "latency": self.latency_summary(), "errors": dict(self.errors),
            "transfer_fidelity_mean": (float(np.mean(self.transfer_fidelities))
                                       if self.transfer_fidelities else None),
            "decisions": self.decision_count,
        }


@dataclass
class _Pair:
    heralded: float
    expires: float
    link: PathLink


class _Run:
    """One simulation's state and its event handlers."""

    def __init__(self, workload: Workload, topology: BridgeTopology,
                 scheduler: SchedulingCore, seed: int, keep_decisions: bool) -> None:
        self.workload, self.topology, self.scheduler = workload, topology, scheduler
        self.rng = np.random.default_rng(seed)
        self.keep = keep_decisions
        self.result = BridgeResult(workload.name, scheduler.name, seed,
                                   operations_total=len(workload.operations),
                                   station_busy={s: 0.0 for s in topology.stations})
        self.ops: dict[str, Operation] = {op.id: op for op in workload.operations}
        self.waiting_for = {op.id: len(set(op.after)) for op in workload.operations}
        self.heap: list[tuple[float, int, str, object]] = []
        self._n = 0
        self.ready_at: dict[str, float] = {}
        self.held: dict[str, list[_Pair]] = {}
        self.active: dict[str, tuple[str, int, float]] = {}
        """station -> (request, epoch, heralding since)."""
        self.epoch: dict[str, int] = {s: 0 for s in topology.stations}
        self.wake_at: float | None = None
        self.open_requests = 0

    def push(self, at: float, kind: str, payload: object) -> None:
        heapq.heappush(self.heap, (at, self._n, kind, payload))
        self._n += 1

    # -- scheduler calls ------------------------------------------------------------------------
    def call(self, now: float, method: Callable[..., list[Decision]], *args: object) -> None:
        start = time.process_time()  # CPU, not wall: the bench shares its cores
        decisions = method(*args, now)
        self.result.scheduler_seconds += time.process_time() - start
        self.result.decision_count += len(decisions)
        if self.keep:
            self.result.decisions.extend(decisions)
        for d in decisions:
            self.apply(d, now)
        wake = self.scheduler.next_wakeup()
        if wake is not None and (self.wake_at is None or wake < self.wake_at):
            self.wake_at = wake
            self.push(max(wake, now), "wake", wake)

    def apply(self, d: Decision, now: float) -> None:
        r = self.result
        if d.action == "ASSIGN":
            assert d.station is not None and d.request is not None and d.ready_at is not None
            self.stop(d.station, now)
            self.epoch[d.station] += 1
            self.active[d.station] = (d.request, self.epoch[d.station], d.ready_at)
            self.next_herald(d.station, d.ready_at)
        elif d.action in ("SUSPEND", "RELEASE"):
            assert d.station is not None
            self.stop(d.station, now)
        elif d.action == "RECONFIGURE":
            r.reconfigurations += 1
        elif d.action == "RECHECK":
            r.rechecks += 1
        elif d.action == "OK":
            assert d.request is not None
            self.delivered(d.request, now)
        elif d.action == "ERR":
            assert d.request is not None and d.code is not None
            r.errors[d.code] = r.errors.get(d.code, 0) + 1
            r.operations_failed += 1
            r.pairs_wasted += len(self.held.pop(d.request, []))
            self.open_requests -= 1

    def stop(self, station: str, now: float) -> None:
        """The station stops heralding for its request (later heralds are void)."""
        active = self.active.pop(station, None)
        self.epoch[station] += 1
        if active is not None:
            self.result.station_busy[station] += max(0.0, now - active[2])

    def next_herald(self, station: str, after: float) -> None:
        request, epoch, _ = self.active[station]
        a, b = self.ops[request].qnus
        rate = self.topology.path_link(a, b, station).rate
        self.push(after + self.rng.exponential(1.0 / rate), "herald", (station, epoch))

    # -- events ---------------------------------------------------------------------------------
    def ready(self, op_id: str, now: float) -> None:
        op = self.ops[op_id]
        if not op.remote:
            self.push(now + op.duration, "done", op_id)
            return
        self.ready_at[op_id] = now
        self.held[op_id] = []
        self.open_requests += 1
        self.result.max_open_requests = max(self.result.max_open_requests, self.open_requests)
        deadline = None if op.deadline is None else now + op.deadline
        request = Request(op.id, op.qnus[0], op.qnus[1], op.pairs, op.min_fidelity, deadline,
                          transfer=op.kind == "transfer")
        self.call(now, self.scheduler.submit, request)

    def herald(self, station: str, epoch: int, now: float) -> None:
        active = self.active.get(station)
        if active is None or active[1] != epoch:
            return  # the station was released or reassigned since this draw
        request = active[0]
        op = self.ops[request]
        link = self.topology.path_link(op.qnus[0], op.qnus[1], station)
        usable = link.usable_age(op.min_fidelity, self.topology.memory_cutoff)
        self.held[request].append(_Pair(now, now + usable, link))
        self.push(now + usable, "expire", request)
        self.next_herald(station, now)
        self.call(now, self.scheduler.pairs_held, request, len(self.held[request]))

    def expire(self, request: str, now: float) -> None:
        pairs = self.held.get(request)
        if not pairs:
            return
        kept = [p for p in pairs if p.expires > now]
        if len(kept) == len(pairs):
            return
        self.result.pairs_wasted += len(pairs) - len(kept)
        self.held[request] = kept
        self.call(now, self.scheduler.pairs_held, request, len(kept))

    def delivered(self, request: str, now: float) -> None:
        op = self.ops[request]
        pairs = self.held.pop(request)
        self.open_requests -= 1
        self.result.pairs_delivered += len(pairs)
        self.result.latencies.append(now - self.ready_at.pop(request))
        finish = now + op.duration
        if op.kind == "transfer":
            fidelity = pairs[0].link.fidelity_at(now - pairs[0].heralded)
            self.result.transfer_fidelities.append((2.0 * fidelity + 1.0) / 3.0)
            finish += self.topology.classical_delay(*op.qnus)
        self.push(finish, "done", request)

    def done(self, op_id: str, now: float) -> None:
        self.result.operations_done += 1
        self.result.makespan = max(self.result.makespan, now)
        for nxt in self.workload.successors[op_id]:
            self.waiting_for[nxt] -= 1
            if self.waiting_for[nxt] == 0:
                self.push(max(now, self.ops[nxt].release), "ready", nxt)

    def wake(self, planned: float, now: float) -> None:
        if planned == self.wake_at:
            self.wake_at = None
        self.call(now, self.scheduler.tick)

    def run(self, max_time: float) -> BridgeResult:
        for op in self.workload.operations:
            if not op.after:
                self.push(op.release, "ready", op.id)
        handlers: dict[str, Callable[..., None]] = {
            "ready": self.ready, "expire": self.expire, "done": self.done}
        while self.heap:
            now, _, kind, payload = heapq.heappop(self.heap)
            if now > max_time:
                self.result.hit_max_time = True
                break
            if kind == "herald":
                assert isinstance(payload, tuple)
                self.herald(payload[0], payload[1], now)
            elif kind == "wake":
                self.wake(payload, now)  # type: ignore[arg-type]
            else:
                handlers[kind](payload, now)
        for station in list(self.active):
            self.stop(station, self.result.makespan)
        r = self.result
        r.complete = r.operations_done == r.operations_total
        return r


def simulate(workload: Workload, topology: BridgeTopology, scheduler: SchedulingCore,
             seed: int = 0, keep_decisions: bool = True,
             max_time: float = 1e6) -> BridgeResult:
    """Run `workload` on `topology` under `scheduler` (a fresh one per run) with link
    successes drawn from `seed`; stop at `max_time` s of simulated time."""
    check_qnus_known(workload, topology.qnus, topology.name)
    return _Run(workload, topology, scheduler, seed, keep_decisions).run(max_time)
