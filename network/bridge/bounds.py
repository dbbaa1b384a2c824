"""Lower bounds on a workload's makespan on a bridge, from the link rates and the DAG.

Each remote operation needs at least its pairs' heralding time at the fastest path any
station offers its QNU pair, E >= pairs / r_best (a Poisson process of rate r takes n / r on
average for n events, Wald; holding them at once only takes longer). Three bounds on the
expected makespan, each a relaxation (derivation: docs/bridge.md#the-lower-bound):

- critical path: the longest chain of the DAG, each operation weighing its expected
  heralding time plus its local duration (plus a transfer's classical delay), starting no
  earlier than its release (unlimited stations and no switching);
- stations: all heralding time spread perfectly over the S stations (each serves one pair
  at a time), after the earliest release of a remote operation;
- QNUs: a QNU is in one path at a time, so its remote operations' heralding times add up.

`expected` is the largest. `hard` bounds every single run (not only the mean): the critical
path of the deterministic parts alone (durations, classical delays, releases) plus one
switch settle before the first pair of each chain (the switch starts with nothing
connected).
"""

from __future__ import annotations

from dataclasses import dataclass

from .topology import BridgeTopology
from .workload import Operation, Workload


@dataclass(frozen=True)
class MakespanBound:
    """s; `expected` = max(critical_path, stations, qnus)."""

    critical_path: float
    stations: float
    qnus: float
    hard: float

    @property
    def expected(self) -> float:
        return max(self.critical_path, self.stations, self.qnus)

    @property
    def binding(self) -> str:
        """Which of the three bounds is the largest."""
        return max((self.critical_path, "critical_path"), (self.stations, "stations"),
                   (self.qnus, "qnus"))[1]


def heralding_time(op: Operation, topology: BridgeTopology) -> float:
    """s, the expected heralding time of `op`'s pairs at the fastest path (0 if local)."""
    if not op.remote:
        return 0.0
    return op.pairs / topology.best_rate(*op.qnus)


def _longest_path(workload: Workload, weight: dict[str, float]) -> float:
    finish: dict[str, float] = {}
    for op in workload.operations:  # topological order
        start = max([op.release] + [finish[p] for p in op.after])
        finish[op.id] = start + weight[op.id]
    return max(finish.values())


def makespan_bound(workload: Workload, topology: BridgeTopology) -> MakespanBound:
    """The lower bounds of `workload` on `topology` (see the module's docstring)."""
    heralding = {op.id: heralding_time(op, topology) for op in workload.operations}
    fixed = {op.id: op.duration + (topology.classical_delay(*op.qnus)
                                   if op.kind == "transfer" else 0.0)
             for op in workload.operations}
    critical = _longest_path(workload, {k: heralding[k] + fixed[k] for k in heralding})
    remote = [op for op in workload.operations if op.remote]
    if not remote:
        hard = _longest_path(workload, fixed)
        return MakespanBound(critical, 0.0, 0.0, hard)
    first = min(op.release for op in remote)
    stations = first + sum(heralding[op.id] for op in remote) / len(topology.stations)
    per_qnu: dict[str, float] = {}
    for op in remote:
        for q in op.qnus:
            per_qnu[q] = per_qnu.get(q, 0.0) + heralding[op.id]
    qnus = first + max(per_qnu.values())
    return MakespanBound(critical, stations, qnus, _hard_bound(workload, fixed, topology))


def _hard_bound(workload: Workload, fixed: dict[str, float], topology: BridgeTopology) -> float:
    """The critical path of the deterministic parts, a remote operation with no remote
    predecessor paying one switch settle (nothing is connected at the start)."""
    after_remote: dict[str, bool] = {}
    weight = dict(fixed)
    for op in workload.operations:
        seen = any(after_remote[p] for p in op.after)
        if op.remote and not seen:
            weight[op.id] += topology.settle_time
        after_remote[op.id] = seen or op.remote
    return _longest_path(workload, weight)
