"""The calibration graph (after Kelly et al. 2018): nodes, the parameter store, maintenance.

See `graph` (nodes and what their operations return), `store` (values with provenance),
`maintain` (check_state, check_data, calibrate, diagnose, maintain) and `context` (which lab
and station a node runs on). A lab's graph comes from its station config (`parse_calibration`,
`lab_graph`), a network's from its network config (`network_calibration`, the link's nodes
from `link_calibrations`); `open_calibrated_station` opens a station with the stored values
applied. Names load on first use (`__getattr__`).

How the graph decides what to measure: docs/calibration_graph.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qnetlab.lazy_exports import lazy_attributes

if TYPE_CHECKING:
    from .context import LabContext, Scope
    from .graph import (
        CalibrationContext,
        CalibrationGraph,
        CalibrationNode,
        CalibrationOutcome,
        CheckOutcome,
        DataResult,
        GraphError,
    )
    from .graph_config import CalibrationConfig, parse_calibration
    from .link_nodes import NodeInputs, RemoteParameters, link_calibrations
    from .maintain import Action, Maintainer
    from .network_lab import NetworkCalibration, network_calibration
    from .nodes import SequenceNode, calibration_nodes, lab_graph
    from .startup import open_calibrated_station
    from .store import CalibrationEvent, ParameterStore, StoredValue

_EXPORTS: dict[str, tuple[str, ...]] = {
    ".graph": ("CalibrationContext", "CalibrationGraph", "CalibrationNode",
               "CalibrationOutcome", "CheckOutcome", "DataResult", "GraphError"),
    ".store": ("CalibrationEvent", "ParameterStore", "StoredValue"),
    ".maintain": ("Action", "Maintainer"),
    ".context": ("LabContext", "Scope"),
    # a lab's graph from its config
    ".graph_config": ("CalibrationConfig", "parse_calibration"),
    ".nodes": ("SequenceNode", "calibration_nodes", "lab_graph"),
    ".startup": ("open_calibrated_station",),
    # a network's graph: both labs and the link between them
    ".network_lab": ("NetworkCalibration", "network_calibration"),
    ".link_nodes": ("NodeInputs", "RemoteParameters", "link_calibrations"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "Action",
    "CalibrationConfig",
    "CalibrationContext",
    "CalibrationEvent",
    "CalibrationGraph",
    "CalibrationNode",
    "CalibrationOutcome",
    "CheckOutcome",
    "DataResult",
    "GraphError",
    "LabContext",
    "Maintainer",
    "NetworkCalibration",
    "NodeInputs",
    "ParameterStore",
    "RemoteParameters",
    "Scope",
    "SequenceNode",
    "StoredValue",
    "calibration_nodes",
    "lab_graph",
    "link_calibrations",
    "network_calibration",
    "open_calibrated_station",
    "parse_calibration",
]


__getattr__, __dir__ = lazy_attributes(__name__, _MODULE_OF, __all__, globals())
