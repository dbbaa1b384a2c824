"""Opening a lab's station with its current calibrated values applied.

The station reads its calibration from the lab's parameter store at start-up: for every node
of the config's ``qnetlab.calibration`` graph, each current valid value the node committed
and declares under ``apply`` is set on its station parameter (e.g. the SNSPD bias, the tagger
input delays, the transducer's optical resonance). Values never calibrated (or invalidated)
are left at what the config and the instruments give.
"""

from __future__ import annotations

import logging
from pathlib import Path

from qnetlab.instruments.lab_config import LabConfig, load_config
from qnetlab.instruments.station import LabStation, load_station

from .graph_config import parse_calibration
from .nodes import apply_values
from .store import ParameterStore, StoredValue

log = logging.getLogger(__name__)


def apply_stored_values(station: LabStation, config: LabConfig,
                        store: ParameterStore) -> dict[str, StoredValue]:
    """Apply every current valid value the config's nodes commit and apply; returns the
    values applied, by parameter name."""
    applied: dict[str, StoredValue] = {}
    for name, node in parse_calibration(config).nodes.items():
        current = {k: v for k, v in store.current_values(name).items() if k in node.apply}
        apply_values(station, node, {k: v.value for k, v in current.items()})
        applied.update(current)
    for value in applied.values():
        log.info("%s: %s = %g %s from %s (run %s)", config.path, value.name, value.value,
                 value.unit, value.node, value.run_id)
    return applied


def open_calibrated_station(config: str | Path | LabConfig, profile: str = "sim",
                            store: ParameterStore | None = None, *,
                            sim_session: str | None = None) -> LabStation:
    """Load the station of `config` for `profile` and apply its current calibrated values.

    `store` defaults to the parameter store in the config's database. `sim_session` is
    `load_station`'s: the same string reopens the same simulated bench.
    """
    lab = config if isinstance(config, LabConfig) else load_config(config)
    if store is None:
        if lab.database is None:
            raise lab.error("qnetlab.database", "no database to read calibrated values from",
                            "add 'database: ../lab_data/<lab>.db' under qnetlab")
        store = ParameterStore(lab.database)
    station = load_station(lab, profile, sim_session=sim_session)
    try:
        apply_stored_values(station, lab, store)
    except BaseException:
        station.close()
        raise
    return station
