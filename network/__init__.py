"""The ZeroMQ control plane: heralds, node agents, link layer, clock sync.

A heralding station, a node agent per node and an orchestrator, each its own OS process over
TCP (addresses from the lab config), every socket CURVE-authenticated. The curated API:

- config: `load_network_config`, `NetworkConfig`;
- processes: `ProcessGroup`, `plan_lab`, `start_lab`, `read_report`, `LinkReport`,
  `require_keys`; the process entry points `run_station`, `run_node_agent`,
  `run_orchestrator` and their settings;
- herald sources for the station: anything with ``run_until(station_time_ps)`` (the
  simulated link is built by `qnetlab link`), or the test signal `PeriodicHeralds`
  (optionally only in `TimeSlots`); `StationFaults` for fault injection.

The wire format (`network.messages`), keys (`network.keys`), sequence tracking
(`network.tracker`) and clock sync (`network.clock`) are imported from their modules.
"""

from ._proc import ProcessGroup
from .heralding_station import (
    PeriodicHeralds,
    StationFaults,
    StationSettings,
    TimeSlots,
    run_station,
)
from .lab import LabPlan, LinkReport, plan_lab, read_report, require_keys, start_lab
from .network_config import NetworkConfig, load_network_config
from .node_agent import NodeSettings, run_node_agent
from .orchestrator import OrchestratorSettings, run_orchestrator

__all__ = [
    "LabPlan",
    "LinkReport",
    "NetworkConfig",
    "NodeSettings",
    "OrchestratorSettings",
    "PeriodicHeralds",
    "ProcessGroup",
    "StationFaults",
    "StationSettings",
    "TimeSlots",
    "load_network_config",
    "plan_lab",
    "read_report",
    "require_keys",
    "run_node_agent",
    "run_orchestrator",
    "run_station",
    "start_lab",
]
