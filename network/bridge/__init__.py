"""The network bridge's process-free core: many QNUs through an optical switch, and the
scheduling of a distributed computation's entanglement on it.

- workloads: `Workload`, `Operation`, `load_workload`, `parse_workload`, `write_workload`,
  `WorkloadError`; generators `distributed_ghz`, `partitioned_circuit`, `random_pairs`;
- the bridge: `BridgeTopology`, `bridge_topology` (N QNUs, N/4 stations), `PathLink`;
- scheduling cores (events in, decisions out, no I/O, no clock): `Scheduler` (the
  orchestrator's) with `SchedulerSettings`, `RoundRobinScheduler` (the baseline); their
  `Request` and `Decision` records;
- `simulate` (a time-compressed discrete-event simulation; `BridgeResult`);
- `makespan_bound` (`MakespanBound`).

Design and derivations: docs/bridge.md.
"""

from __future__ import annotations

from .baseline import RoundRobinScheduler
from .bounds import MakespanBound, makespan_bound
from .des import BridgeResult, SchedulingCore, simulate
from .records import Decision, Request
from .scheduler import Scheduler, SchedulerSettings
from .topology import BridgeTopology, LinkParameters, PathLink, bridge_topology
from .workload import (
    Operation,
    Workload,
    WorkloadError,
    load_workload,
    parse_workload,
    write_workload,
)
from .workload_generators import distributed_ghz, partitioned_circuit, random_pairs

__all__ = [
    "BridgeResult",
    "BridgeTopology",
    "Decision",
    "LinkParameters",
    "MakespanBound",
    "Operation",
    "PathLink",
    "Request",
    "RoundRobinScheduler",
    "Scheduler",
    "SchedulerSettings",
    "SchedulingCore",
    "Workload",
    "WorkloadError",
    "bridge_topology",
    "distributed_ghz",
    "load_workload",
    "makespan_bound",
    "parse_workload",
    "partitioned_circuit",
    "random_pairs",
    "simulate",
    "write_workload",
]
