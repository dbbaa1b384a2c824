"""The calibration store keeps each committed value's error, also in a database written
before it did."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from qnetlab.sequences.calibration.graph import CalibrationOutcome
from qnetlab.sequences.calibration.store import ParameterStore


def test_a_committed_value_keeps_its_error_and_one_without_has_none(tmp_path: Path) -> None:
    store = ParameterStore(tmp_path / "lab.db", now=lambda: 100.0)
    store.record_calibration("node.mw", CalibrationOutcome(
        True, "fit", {"mw_resonance_frequency": (8.0e9, "Hz"), "mw_q": (1e4, "")},
        errors={"mw_resonance_frequency": 1.5e3}))
    values = store.current_values()
    assert values["mw_resonance_frequency"].stderr == 1.5e3
    assert values["mw_q"].stderr is None
    # a NaN error (a fit that gave none) is stored as none, not as NaN
    store.record_calibration("node.mw", CalibrationOutcome(
        True, "fit", {"mw_q": (2e4, "")}, errors={"mw_q": float("nan")}))
    assert store.current("mw_q").stderr is None  # type: ignore[union-attr]


def test_a_store_written_before_errors_were_kept_opens_and_keeps_its_values(
        tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the schema before the stderr column
        conn.executescript("""
            CREATE TABLE qnetlab_calibration_events (id INTEGER PRIMARY KEY AUTOINCREMENT,
              node TEXT NOT NULL, operation TEXT NOT NULL, outcome TEXT NOT NULL,
              detail TEXT NOT NULL, time REAL NOT NULL, run_id INTEGER, run_guid TEXT,
              run_db TEXT);
            CREATE TABLE qnetlab_parameters (id INTEGER PRIMARY KEY AUTOINCREMENT,
              name TEXT NOT NULL, value REAL NOT NULL, unit TEXT NOT NULL, node TEXT NOT NULL,
              event_id INTEGER NOT NULL, time REAL NOT NULL, valid INTEGER NOT NULL DEFAULT 1);
            INSERT INTO qnetlab_calibration_events (node, operation, outcome, detail, time)
              VALUES ('node.dark', 'calibrate', 'good', 'old', 1.0);
            INSERT INTO qnetlab_parameters (name, value, unit, node, event_id, time)
              VALUES ('dark_count_rate', 12.5, 'Hz', 'node.dark', 1, 1.0);
        """)
    conn.close()
    store = ParameterStore(db)
    old = store.current("dark_count_rate")
    assert old is not None and old.value == 12.5 and old.stderr is None
    store.record_calibration("node.dark", CalibrationOutcome(
        True, "new", {"dark_count_rate": (11.0, "Hz")}, errors={"dark_count_rate": 0.4}))
    assert store.current("dark_count_rate").stderr == 0.4  # type: ignore[union-attr]
