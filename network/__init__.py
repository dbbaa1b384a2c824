"""The ZeroMQ control plane: heralds, node agents, link layer, clock sync.

A heralding station, a node agent per node and an orchestrator, each its own OS process over
TCP (addresses from the lab config), every socket CURVE-authenticated. The curated API:

- config: `load_network_config`, `NetworkConfig`;
- keys: `generate_lab_keys`, `check_lab_keys`, `require_keys`, `LabKeyError`;
- processes: `ProcessGroup`, `sigterm_as_interrupt`, `plan_lab`, `check_ports`,
  `start_lab`, `supervise`, `read_report`, `LinkReport`, `read_pairs` (with `PairEvent`),
  `read_events`; the process entry points `run_station`, `run_node_agent`,
  `run_orchestrator` and their settings;
- telemetry for ``qnetlab monitor`` (`network.telemetry`): the messages `ValueReading`,
  `SequenceProgress`, `CalibrationStates` (of `NodeStatus`), `LinkStatistics`;
  `TelemetryPublisher`, `TelemetrySubscriber`, `telemetry_endpoints`, `TelemetryError`; a
  lab process's `start_lab_telemetry` (`LabTelemetry`, loaded on first use: it imports the
  instrument roles);
- herald sources for the station (``blocks()`` of `HeraldBlock`): `TaggerSource` (the
  station lab's time tagger through the herald engine: production), or the test signal
  `PeriodicHeralds` (optionally only in `TimeSlots`); `StationFaults` for fault injection;
- the analytic link model: `LinkModel`, `NodeOptics`, `expected_success_probability`,
  `expected_fidelity`, `expected_pair_rate` (loaded on first use: it imports SciPy, which
  the lab's processes do not need);
- a node's parameters for the link's calibration: `ParameterServer`, `fetch_parameters`,
  `ParameterServiceError`.

The wire format (`network.messages`), sequence tracking (`network.tracker`) and clock sync
(`network.clock`) are imported from their modules.

The link model and the protocol: docs/link.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qnetlab.lazy_exports import lazy_attributes

from ._faults import read_faults
from ._proc import ProcessGroup, sigterm_as_interrupt
from .herald_engine import ENGINE_HERALD_DTYPE, HeraldEngine, HeraldWindows
from .heralding_station import (
    HeraldBlock,
    StationFaults,
    StationSettings,
    TaggerSource,
    run_station,
)
from .keys import LabKeyError, check_lab_keys, generate_lab_keys
from .lab import (
    LabPlan,
    LinkReport,
    check_ports,
    plan_lab,
    read_events,
    read_pairs,
    read_report,
    require_keys,
    start_lab,
    supervise,
)
from .network_config import NetworkConfig, load_network_config
from .node_agent import NodeSettings, PairEvent, run_node_agent
from .orchestrator import OrchestratorSettings, run_orchestrator
from .parameters import ParameterServer, ParameterServiceError, fetch_parameters
from .telemetry import (
    CalibrationStates,
    LinkStatistics,
    NodeStatus,
    SequenceProgress,
    TelemetryEndpoints,
    TelemetryError,
    TelemetryMessage,
    TelemetryPublisher,
    TelemetrySubscriber,
    ValueReading,
    telemetry_endpoints,
)

if TYPE_CHECKING:
    from .lab_telemetry import LabTelemetry, start_lab_telemetry
    from .link_dataset import write_link_dataset
    from .link_model import (
        LinkModel,
        NodeOptics,
        expected_fidelity,
        expected_pair_rate,
        expected_success_probability,
    )
    from .test_signals import PeriodicHeralds, TimeSlots

# Loaded on first use: the link model imports SciPy, which the lab's processes do not need;
# the test signals are for tests and benchmarks, never on a station's production path; the
# link's dataset writer imports QCoDeS's dataset layer, which the processes do not need.
_MODULE_OF: dict[str, str] = {
    **{name: ".link_model"
       for name in ("LinkModel", "NodeOptics", "expected_fidelity", "expected_pair_rate",
                    "expected_success_probability")},
    "PeriodicHeralds": ".test_signals",
    "TimeSlots": ".test_signals",
    "write_link_dataset": ".link_dataset",
    "LabTelemetry": ".lab_telemetry",
    "start_lab_telemetry": ".lab_telemetry",
}

__all__ = [
    "ENGINE_HERALD_DTYPE",
    "CalibrationStates",
    "HeraldBlock",
    "HeraldEngine",
    "HeraldWindows",
    "LabKeyError",
    "LabPlan",
    "LabTelemetry",
    "LinkModel",
    "LinkReport",
    "LinkStatistics",
    "NetworkConfig",
    "NodeOptics",
    "NodeSettings",
    "NodeStatus",
    "OrchestratorSettings",
    "PairEvent",
    "ParameterServer",
    "ParameterServiceError",
    "PeriodicHeralds",
    "ProcessGroup",
    "SequenceProgress",
    "StationFaults",
    "StationSettings",
    "TaggerSource",
    "TelemetryEndpoints",
    "TelemetryError",
    "TelemetryMessage",
    "TelemetryPublisher",
    "TelemetrySubscriber",
    "TimeSlots",
    "ValueReading",
    "check_lab_keys",
    "check_ports",
    "expected_fidelity",
    "expected_pair_rate",
    "expected_success_probability",
    "fetch_parameters",
    "generate_lab_keys",
    "load_network_config",
    "plan_lab",
    "read_events",
    "read_faults",
    "read_pairs",
    "read_report",
    "require_keys",
    "run_node_agent",
    "run_orchestrator",
    "run_station",
    "sigterm_as_interrupt",
    "start_lab",
    "start_lab_telemetry",
    "supervise",
    "telemetry_endpoints",
    "write_link_dataset",
]

__getattr__, __dir__ = lazy_attributes(__name__, _MODULE_OF, __all__, globals())
