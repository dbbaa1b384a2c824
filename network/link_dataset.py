"""A link run as a QCoDeS dataset, beside the run folder's own files.

One dataset per `qnetlab link` (or bring-up delivery) in the link's database, experiment
``link``, so `load_by_id`, ``to_xarray_dataset``, plottr and ``qnetlab runs`` see it like any
sequence's run: per delivered pair its attempt id, herald seq, Bell state and the station's
decision time; per herald every node heard its latency (decision to the later node's
receipt); in the metadata the counts, the error counters, the expectation from the
calibrations and the network config itself. Only what a real bench knows: the simulation's
ground truth is never written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_link_dataset"]

LINK_SUMMARY = "qnetlab_link"
"""Metadata: requested/delivered pairs, rates, agreement, error counters, expectation."""
NETWORK_CONFIG = "qnetlab_network_config"
"""Metadata: the network config file's text as the run used it."""


def write_link_dataset(db_path: str | Path, report: Any, config_path: str | Path, *,
                       expected_rate: float, expected_fidelity: float,
                       profile: str) -> int:
    """Write `report` (a `network.lab.LinkReport`) as a dataset; returns its run id."""
    from qcodes.dataset import Measurement, load_or_create_experiment

    from qnetlab.sequences.data import SEQUENCE, STATUS, open_database

    pairs = report.delivered_heralds
    with open_database(db_path) as conn:
        experiment = load_or_create_experiment("link", sample_name=Path(config_path).stem,
                                               conn=conn)
        meas = Measurement(exp=experiment, name="link")
        meas.register_custom_parameter("pair", label="Delivered pair", paramtype="array")
        for name, label, unit in (("attempt_id", "Attempt id", ""),
                                  ("seq", "Herald sequence number", ""),
                                  ("bell_state", "Bell state (0 psi+, 1 psi-)", ""),
                                  ("herald_time", "Station decision time", "s")):
            meas.register_custom_parameter(name, label=label, unit=unit, setpoints=("pair",),
                                           paramtype="array")
        meas.register_custom_parameter("herald", label="Herald heard by every node",
                                       paramtype="array")
        meas.register_custom_parameter("latency", label="Herald latency (decision to the "
                                       "later node)", unit="s", setpoints=("herald",),
                                       paramtype="array")
        with meas.run(in_memory_cache=False) as saver:
            ds = saver.dataset
            ds.add_metadata(SEQUENCE, json.dumps("link"))
            ds.add_metadata(STATUS, json.dumps("completed" if not report.failed
                                               else "interrupted"))
            ds.add_metadata(LINK_SUMMARY, json.dumps(_summary(
                report, expected_rate, expected_fidelity, profile)))
            ds.add_metadata(NETWORK_CONFIG, Path(config_path).read_text())
            if len(pairs):
                saver.add_result(("pair", np.arange(len(pairs))),
                                 ("attempt_id", pairs["attempt_id"].astype(np.int64)),
                                 ("seq", pairs["seq"].astype(np.int64)),
                                 ("bell_state", pairs["bell_state"].astype(np.int64)),
                                 ("herald_time", pairs["timestamp_ps"].astype(np.float64)
                                  * 1e-12))
            latency = np.asarray(report.latency_s, np.float64)
            if latency.size:
                saver.add_result(("herald", np.arange(latency.size)), ("latency", latency))
        return int(ds.run_id)


def _summary(report: Any, expected_rate: float, expected_fidelity: float,
             profile: str) -> dict[str, Any]:
    def finite(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    return {
        "profile": profile, "requested": int(report.requested),
        "delivered": int(report.delivered), "delivered_from": report.delivered_from,
        "agree": bool(report.agree), "failed": report.failed,
        "pair_rate_hz": finite(report.rate_hz), "herald_rate_hz": finite(report.herald_rate_hz),
        "expected_pair_rate_hz": finite(expected_rate),
        "expected_fidelity": finite(expected_fidelity),
        "errors": {k: int(v) for k, v in report.errors.items()},
    }
