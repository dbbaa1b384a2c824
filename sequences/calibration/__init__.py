"""The calibration graph (after Kelly et al. 2018): nodes, the parameter store, maintenance.

See `graph` (nodes and what their operations return), `store` (values with provenance),
`maintain` (check_state, check_data, calibrate, diagnose, maintain) and `context` (which lab
and station a node runs on).
"""

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
from .maintain import Action, Maintainer
from .store import CalibrationEvent, ParameterStore, StoredValue

__all__ = [
    "Action", "CalibrationContext", "CalibrationEvent", "CalibrationGraph", "CalibrationNode",
    "CalibrationOutcome", "CheckOutcome", "DataResult", "GraphError", "LabContext",
    "Maintainer", "ParameterStore", "Scope", "StoredValue",
]
