"""The parameter store: every calibrated value with its provenance, in the lab's database.

Two tables beside QCoDeS's own, ``qnetlab_calibration_events`` (one row per calibrate or
check_data) and ``qnetlab_parameters`` (one row per committed value, with its node, event and
validity). Values are committed only on a good verdict and never overwritten: a newer commit
supersedes, `invalidate` marks a node's values no longer valid. Times are seconds since the
epoch from the store's clock.

Details: docs/calibration_graph.md#4-provenance-and-start-up.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .graph import CalibrationOutcome, CheckOutcome

_SCHEMA = """
CREATE TABLE IF NOT EXISTS qnetlab_calibration_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    operation TEXT NOT NULL,       -- 'calibrate' or 'check_data'
    outcome TEXT NOT NULL,         -- 'good', 'bad', 'in spec', 'out of spec', 'bad data'
    detail TEXT NOT NULL,
    time REAL NOT NULL,
    run_id INTEGER,
    run_guid TEXT,
    run_db TEXT
);
CREATE TABLE IF NOT EXISTS qnetlab_parameters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    node TEXT NOT NULL,
    event_id INTEGER NOT NULL REFERENCES qnetlab_calibration_events(id),
    time REAL NOT NULL,
    valid INTEGER NOT NULL DEFAULT 1,
    stderr REAL                    -- one-sigma error (stat and sys combined), NULL: none
);
CREATE INDEX IF NOT EXISTS qnetlab_parameters_name ON qnetlab_parameters(name, id);
CREATE INDEX IF NOT EXISTS qnetlab_events_node ON qnetlab_calibration_events(node, id);
"""


@dataclass(frozen=True)
class CalibrationEvent:
    id: int
    node: str
    operation: str
    outcome: str
    detail: str
    time: float
    run_id: int | None
    run_guid: str | None
    run_db: str | None

    @property
    def failed(self) -> bool:
        """A failed calibration, or a check that found the node out of spec or bad."""
        return self.outcome in ("bad", "out of spec", "bad data")


@dataclass(frozen=True)
class StoredValue:
    name: str
    value: float
    unit: str
    node: str
    time: float
    run_id: int | None
    run_guid: str | None
    run_db: str | None
    valid: bool
    stderr: float | None = None
    """One-sigma error (statistical and systematic combined), None if none was given."""


class ParameterStore:
    """The calibrated values of one lab (module docstring)."""

    def __init__(self, db_path: str | Path, now: Callable[[], float] = time.time) -> None:
        self.db_path = Path(db_path)
        self.now = now
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(qnetlab_parameters)")}
            if "stderr" not in columns:  # a store written before values kept their error
                conn.execute("ALTER TABLE qnetlab_parameters ADD COLUMN stderr REAL")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation, closed at once: QCoDeS writes to the same file.
        conn = sqlite3.connect(self.db_path, timeout=30.0)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    # -- writing ------------------------------------------------------------------------------
    def record_calibration(self, node: str, outcome: CalibrationOutcome) -> int:
        """Record a calibration; commit its values only if it was good. Returns the event id."""
        now = self.now()
        with self._connect() as conn:
            event = self._event(conn, node, "calibrate", "good" if outcome.good else "bad",
                                outcome.detail, now, outcome.run)
            if outcome.good:
                conn.executemany(
                    "INSERT INTO qnetlab_parameters (name, value, unit, node, event_id, time, "
                    "stderr) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(name, float(value), unit, node, event, now, _error(outcome, name))
                     for name, (value, unit) in outcome.values.items()])
        return event

    def record_check(self, node: str, outcome: CheckOutcome) -> int:
        with self._connect() as conn:
            return self._event(conn, node, "check_data", str(outcome.result), outcome.detail,
                               self.now(), outcome.run)

    def record_step(self, node: str, operation: str, outcome: str, detail: str,
                    at: float | None = None) -> int:
        """Record a step that is neither a calibration nor a check's verdict (e.g. the
        bridge's path re-check, recorded but not measured), at `at` (s since the epoch;
        None: the store's clock). Commits no value. Returns the event id."""
        with self._connect() as conn:
            return self._event(conn, node, operation, outcome, detail,
                               self.now() if at is None else at, None)

    def invalidate(self, node: str) -> None:
        """Mark every value of `node` no longer valid (kept in the history)."""
        with self._connect() as conn:
            conn.execute("UPDATE qnetlab_parameters SET valid = 0 WHERE node = ?", (node,))

    @staticmethod
    def _event(conn: sqlite3.Connection, node: str, operation: str, outcome: str, detail: str,
               now: float, run: object) -> int:
        run_id = getattr(run, "run_id", None)
        guid = getattr(run, "guid", None)
        db = getattr(run, "db_path", None)
        cursor = conn.execute(
            "INSERT INTO qnetlab_calibration_events (node, operation, outcome, detail, time, "
            "run_id, run_guid, run_db) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (node, operation, outcome, detail, now, run_id, guid,
             None if db is None else str(db)))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    # -- reading ------------------------------------------------------------------------------
    _VALUE_QUERY = (
        "SELECT p.name, p.value, p.unit, p.node, p.time, e.run_id, e.run_guid, e.run_db, "
        "p.valid, p.stderr FROM qnetlab_parameters p JOIN qnetlab_calibration_events e "
        "ON p.event_id = e.id ")

    def current(self, name: str) -> StoredValue | None:
        """The latest valid value of parameter `name`, or None."""
        with self._connect() as conn:
            row = conn.execute(self._VALUE_QUERY + "WHERE p.name = ? AND p.valid = 1 "
                               "ORDER BY p.id DESC LIMIT 1", (name,)).fetchone()
        return None if row is None else _value(row)

    def current_values(self, node: str | None = None) -> dict[str, StoredValue]:
        """Every parameter's latest valid value (of one node's, if given), by name."""
        where, args = ("WHERE p.valid = 1 AND p.node = ? ", (node,)) if node else (
            "WHERE p.valid = 1 ", ())
        with self._connect() as conn:
            rows = conn.execute(self._VALUE_QUERY + where + "ORDER BY p.id", args).fetchall()
        return {row[0]: _value(row) for row in rows}  # later rows supersede earlier ones

    def history(self, name: str) -> list[StoredValue]:
        """Every value ever committed for `name`, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(self._VALUE_QUERY + "WHERE p.name = ? ORDER BY p.id",
                                (name,)).fetchall()
        return [_value(row) for row in rows]

    def last_calibration(self, node: str) -> CalibrationEvent | None:
        """The latest good calibration of `node`."""
        return self._last(node, "AND operation = 'calibrate' AND outcome = 'good' ")

    def last_event(self, node: str) -> CalibrationEvent | None:
        """The latest calibrate or check_data of `node`, whatever came out."""
        return self._last(node, "")

    def events(self, node: str | None = None) -> list[CalibrationEvent]:
        where, args = ("WHERE node = ? ", (node,)) if node else ("", ())
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM qnetlab_calibration_events " + where
                                + "ORDER BY id", args).fetchall()
        return [CalibrationEvent(*row) for row in rows]

    def _last(self, node: str, condition: str) -> CalibrationEvent | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM qnetlab_calibration_events WHERE node = ? "
                               + condition + "ORDER BY id DESC LIMIT 1", (node,)).fetchone()
        return None if row is None else CalibrationEvent(*row)


def _value(row: tuple[object, ...]) -> StoredValue:
    name, value, unit, node, when, run_id, guid, db, valid, stderr = row
    return StoredValue(str(name), float(value), str(unit), str(node), float(when),  # type: ignore[arg-type]
                       None if run_id is None else int(run_id),  # type: ignore[call-overload]
                       None if guid is None else str(guid), None if db is None else str(db),
                       bool(valid), None if stderr is None else float(stderr))  # type: ignore[arg-type]


def _error(outcome: CalibrationOutcome, name: str) -> float | None:
    error = outcome.errors.get(name)
    return None if error is None or not math.isfinite(error) else float(error)
