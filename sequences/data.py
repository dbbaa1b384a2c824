"""The lab's QCoDeS database: opening it, and reading a stored run back.

One SQLite file per lab (QCoDeS's one database per setup). Every connection is opened explicitly
from the path the caller gives, never through ``qcodes.config.core.db_location``: a
sequence run from a test or a script must not change QCoDeS's global database.

What a sequence adds to a QCoDeS run, as dataset metadata (JSON strings, so that any QCoDeS
reader can see them):

``qnetlab_sequence``       the sequence's name
``qnetlab_analysis_class`` import path of the analysis that re-runs on this dataset
``qnetlab_options``        the sequence options (SI units)
``qnetlab_status``         ``running``, ``completed`` or ``interrupted``
``qnetlab_stopped_at``     where an interrupted run stopped (step, cause, points saved)
``qnetlab_analysis``       the latest `AnalysisResult`
``qnetlab_interlock_events`` pauses of the pump by an interlock (`sequences.interlock`)
``qnetlab_finish_error``   an error while restoring the bench after the run
``qnetlab_partial_steps``  points of steps that did not finish: a list of records, each with
                           the step's index and label, ``first_row`` and ``rows`` (row
                           numbers of the whole dataset, in insertion order), ``columns``
                           (column -> [first index, count] in that column's stored array) and
                           ``why`` (``unfinished: ...`` for the step the run stopped in,
                           ``paused by an interlock; ...`` for a first attempt measured again)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from qcodes.dataset import load_by_id
from qcodes.dataset.sqlite.connection import AtomicConnection
from qcodes.dataset.sqlite.database import connect

SEQUENCE = "qnetlab_sequence"
ANALYSIS_CLASS = "qnetlab_analysis_class"
OPTIONS = "qnetlab_options"
STATUS = "qnetlab_status"
STOPPED_AT = "qnetlab_stopped_at"
ANALYSIS = "qnetlab_analysis"
INTERLOCK_EVENTS = "qnetlab_interlock_events"
FINISH_ERROR = "qnetlab_finish_error"
PARTIAL_STEPS = "qnetlab_partial_steps"

OptionsT = TypeVar("OptionsT")


@contextmanager
def open_database(db_path: str | Path) -> Iterator[AtomicConnection]:
    """Open (creating it and its folder if needed) the lab database at `db_path`, and
    close it afterwards: a connection left open is how "database is locked" starts."""
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        yield conn
    finally:
        conn.close()


def figure_dir(db_path: str | Path) -> Path:
    """Where a run's figures go: ``<database stem>_figures/`` next to the database."""
    path = Path(db_path)
    return path.with_name(f"{path.stem}_figures")


@dataclass
class StoredRun:
    """One run read back from the database: everything an analysis may use."""

    run_id: int
    db_path: Path
    guid: str
    name: str
    data: dict[str, np.ndarray]
    """Every stored parameter (dependent and setpoint) as a flat array, in insertion order."""
    units: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)
    """The qnetlab metadata, JSON decoded (keys without the ``qnetlab_`` prefix)."""
    snapshot: dict[str, Any] | None = None
    """The station snapshot stored when the run started."""

    @property
    def status(self) -> str:
        return str(self.metadata.get("status", "unknown"))

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.metadata.get("options") or {})

    def options_as(self, cls: type[OptionsT]) -> OptionsT:
        """The stored options rebuilt as the options dataclass `cls`, so an analysis reads
        typed fields and never restates a default: a field the run did not store (an older
        run) takes `cls`'s default, a stored key `cls` no longer has is ignored, and JSON
        lists become tuples (the options hold sequences as tuples)."""
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not an options dataclass")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        stored = {k: tuple(v) if isinstance(v, list) else v
                  for k, v in self.options.items() if k in names}
        return cls(**stored)

    @property
    def partial_steps(self) -> list[dict[str, Any]]:
        """The records of steps that did not finish (module docstring); [] if none."""
        found = self.metadata.get("partial_steps") or []
        return [p for p in found if isinstance(p, dict)]

    def partial_steps_why(self, which: str = "") -> list[dict[str, Any]]:
        """The records of partial steps whose ``why`` starts with `which` ("" for all)."""
        return [p for p in self.partial_steps if str(p.get("why", "")).startswith(which)]

    def without_partial_steps(self, which: str = "") -> StoredRun:
        """A copy without the rows of the partial steps whose ``why`` starts with `which`
        ("" for all of them): for an analysis that must see whole steps only."""
        drop: dict[str, np.ndarray] = {}
        for record in self.partial_steps_why(which):
            for name, (first, count) in (record.get("columns") or {}).items():
                if name in self.data:
                    mask = drop.setdefault(name, np.zeros(self.data[name].size, bool))
                    mask[int(first):int(first) + int(count)] = True
        data = {k: v[~drop[k]] if k in drop else v for k, v in self.data.items()}
        return dataclasses.replace(self, data=data)

    def snapshot_value(self, instrument: str, parameter: str) -> Any:
        """A parameter's value in the station snapshot stored with the run (e.g.
        ``snapshot_value("transducer", "mw_line_attenuation")``); KeyError naming what is
        missing if the run's station did not have it."""
        try:
            return (self.snapshot or {})["station"]["instruments"][instrument][
                "parameters"][parameter]["value"]
        except KeyError:
            raise KeyError(f"run {self.run_id} of {self.db_path}: the stored station snapshot "
                           f"has no {instrument}.{parameter}") from None


def load_run(run_id: int, db_path: str | Path) -> StoredRun:
    """Read run `run_id` of the database at `db_path` (the run id is per database)."""
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"no database at {path}")
    with open_database(path) as conn:
        ds = load_by_id(run_id, conn=conn)
        data: dict[str, np.ndarray] = {}
        for dependent in ds.get_parameter_data().values():
            for name, values in dependent.items():
                data.setdefault(name, np.asarray(values).ravel())
        units = {spec.name: spec.unit for spec in ds.description.interdeps.paramspecs}
        metadata = {key.removeprefix("qnetlab_"): _decode(value)
                    for key, value in ds.metadata.items() if key.startswith("qnetlab_")}
        snapshot = ds.snapshot
        return StoredRun(run_id=run_id, db_path=path, guid=ds.guid, name=ds.name, data=data,
                         units=units, metadata=metadata, snapshot=snapshot)


def store_metadata(run_id: int, db_path: str | Path, key: str, value: Any) -> None:
    """Write one qnetlab metadata entry (JSON) of a stored run, replacing an older one."""
    with open_database(db_path) as conn:
        load_by_id(run_id, conn=conn).add_metadata(key, json.dumps(value))


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
