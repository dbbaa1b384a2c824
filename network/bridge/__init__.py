"""The network bridge's process-free core: many QNUs through an optical switch, and the
scheduling of a distributed computation's entanglement on it.

- workloads: `Workload`, `Operation`, `load_workload`, `parse_workload`, `write_workload`,
  `WorkloadError`; generators `distributed_ghz`, `partitioned_circuit`, `random_pairs`;
- the bridge: `BridgeTopology`, `bridge_topology` (N QNUs, N/4 stations), `PathLink`; from a
  config file (lab_configs/bridge_8.yaml): `load_bridge_config` -> `BridgeConfig`
  (`.topology()`);
- scheduling cores (events in, decisions out, no I/O, no clock): `Scheduler` (the
  orchestrator's) with `SchedulerSettings`, `RoundRobinScheduler` (the baseline); their
  `Request` and `Decision` records;
- `simulate` (a time-compressed discrete-event simulation; `BridgeResult`);
- `makespan_bound` (`MakespanBound`);
- the orchestrator process (`run_bridge_orchestrator`, `BridgeServiceSettings`, from a
  config `BridgeServiceSettings.from_config`; its core `BridgeEngine` on a `PairFabric`: the
  SIMULATED `SimulatedLinkFabric`, behind the config's optical switch in the loop
  `SwitchedFabric`, `SwitchPathError`; or heralding-station processes reading their taggers,
  `StationFabric` with `StationFabricSettings`, `StationLink`, `HeraldFrameError`; what a
  fabric is told of the paths it sets up, `PathSetup`, and measures of them,
  `ArmMeasurement`, or why it could not, `PathSetupError`) and its
  applications' client `BridgeClient`
  (`BridgeHandle`, `BridgeRefusedError`, `BridgeTimeoutError`); the messages in
  `network.bridge.wire` (`BridgeWireError`);
- each path's arm delay and its time as calibration records (`PathCalibrations`,
  `PathRecord`).

Design and derivations: docs/bridge.md.
"""

from __future__ import annotations

from .baseline import RoundRobinScheduler
from .bounds import MakespanBound, makespan_bound
from .bridge_config import BridgeConfig, load_bridge_config
from .bridge_telemetry import TimelineTelemetry, open_timeline
from .client import BridgeClient, BridgeHandle, BridgeRefusedError, BridgeTimeoutError
from .des import BridgeResult, SchedulingCore, simulate
from .engine import BridgeEngine
from .fabric import ArmMeasurement, PairFabric, PathSetup, PathSetupError, SimulatedLinkFabric
from .path_calibration import PathCalibrations, PathRecord
from .records import Decision, Request
from .scheduler import Scheduler, SchedulerSettings
from .service import BridgeServiceSettings, run_bridge_orchestrator
from .station_fabric import HeraldFrameError, StationFabric, StationFabricSettings, StationLink
from .switch_loop import SwitchedFabric, SwitchPathError
from .topology import BridgeTopology, LinkParameters, PathLink, bridge_topology
from .wire import BridgeWireError
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
    "ArmMeasurement",
    "BridgeClient",
    "BridgeConfig",
    "BridgeEngine",
    "BridgeHandle",
    "BridgeRefusedError",
    "BridgeResult",
    "BridgeServiceSettings",
    "BridgeTimeoutError",
    "BridgeTopology",
    "BridgeWireError",
    "Decision",
    "HeraldFrameError",
    "LinkParameters",
    "MakespanBound",
    "Operation",
    "PairFabric",
    "PathCalibrations",
    "PathLink",
    "PathRecord",
    "PathSetup",
    "PathSetupError",
    "Request",
    "RoundRobinScheduler",
    "Scheduler",
    "SchedulerSettings",
    "SchedulingCore",
    "SimulatedLinkFabric",
    "StationFabric",
    "StationFabricSettings",
    "StationLink",
    "SwitchPathError",
    "SwitchedFabric",
    "TimelineTelemetry",
    "Workload",
    "WorkloadError",
    "bridge_topology",
    "distributed_ghz",
    "load_bridge_config",
    "load_workload",
    "makespan_bound",
    "open_timeline",
    "parse_workload",
    "partitioned_circuit",
    "random_pairs",
    "run_bridge_orchestrator",
    "simulate",
    "write_workload",
]
