"""The sequence base: typed options, an acquisition into the lab's QCoDeS database, and the
analysis that follows it (the qiskit-experiments shape: a small experiment, an analysis that
returns a verdict).

A subclass declares its dataset columns (`dataset_parameters`), plans its steps (`steps`),
and measures one step at a time (`measure`); `Sequence.run` does the rest: database and
experiment, station snapshot, buffered writes, progress bar, interruption, analysis.

Interruption policy:

* an instrument error (`instruments.errors.QnetlabError`: timeout, lost connection,
  refused setting, interlock) ends the acquisition; everything measured so far is kept,
  the run is marked ``interrupted`` with where it stopped, and `run` *returns* the partial
  `RunResult` (analyzed, with a bad verdict) so that a calibration graph can report it and
  go on;
* Ctrl-C (KeyboardInterrupt) does the same bookkeeping and then *re-raises*: the user asked
  to stop. The partial result is on `Sequence.last_run`, and the exception carries a note
  naming the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from qcodes.dataset import Measurement, load_or_create_experiment

from instruments.errors import InterlockError, QnetlabError
from instruments.station import LabStation

from .analysis import Analysis, AnalysisResult
from .data import (
    ANALYSIS_CLASS,
    FINISH_ERROR,
    INTERLOCK_EVENTS,
    OPTIONS,
    SEQUENCE,
    STATUS,
    STOPPED_AT,
    open_database,
)
from .interlock import PumpGuard
from .progress import Progress
from .restore import Restorer

OptionsT = TypeVar("OptionsT")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetParameter:
    """One column of a sequence's dataset (QCoDeS `register_custom_parameter`)."""

    name: str
    unit: str
    label: str
    setpoints: tuple[str, ...] = ()
    paramtype: str = "numeric"
    """'numeric', 'complex' or 'array' (QCoDeS paramtypes)."""


@dataclass(frozen=True)
class Step:
    """One step of an acquisition: what the progress bar and the stop record show."""

    index: int
    label: str
    settings: Mapping[str, float] = field(default_factory=dict)
    """What the step sets, SI units (e.g. {'start': 7.95e9, 'stop': 7.96e9})."""


@dataclass
class RunResult:
    """The outcome of `Sequence.run`."""

    run_id: int
    db_path: Path
    guid: str
    status: str
    """'completed' or 'interrupted'."""
    points: int
    """Rows written to the dataset."""
    stopped_at: dict[str, Any] | None = None
    """For an interrupted run: step index and label, steps done of total, cause."""
    analysis: AnalysisResult | None = None
    interlock_events: list[dict[str, Any]] = field(default_factory=list)
    """Pauses of the pump by an interlock during the run (`sequences.interlock`)."""

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"


class Sequence(ABC, Generic[OptionsT]):
    """Base of every sequence. Subclasses set `name`, `options_class`, `analysis_class`."""

    name: ClassVar[str]
    options_class: ClassVar[type]
    analysis_class: ClassVar[type[Analysis]]
    interlock_guard: ClassVar[dict[str, float]] = {}
    """Keyword arguments of this sequence's `PumpGuard` (timeout, poll_period, s)."""
    write_period: ClassVar[float] = 1.0
    """s between the datasaver's flushes to the database (QCoDeS buffers in between)."""

    def __init__(self, options: OptionsT | None = None, **changes: Any) -> None:
        base = options if options is not None else self.options_class(**changes)
        if options is not None and changes:
            base = dataclasses.replace(options, **changes)  # type: ignore[type-var]
        self.options: OptionsT = base
        self.last_run: RunResult | None = None
        self.restorer = Restorer()
        """`restorer.change(param, value)` in `prepare`/`measure` sets a parameter and puts
        it back after the run, after `finish`, however the run ended."""

    # -- what subclasses provide -------------------------------------------------------------
    @abstractmethod
    def dataset_parameters(self) -> list[DatasetParameter]:
        """The dataset's columns; setpoints first."""

    @abstractmethod
    def steps(self) -> list[Step]:
        """The acquisition plan, from the options alone (no instrument I/O)."""

    def prepare(self, station: LabStation) -> None:
        """Configure the instruments before the first step."""

    @abstractmethod
    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        """Measure one step: arrays of equal length, keyed by dataset column."""

    def finish(self, station: LabStation) -> None:
        """Put the bench back in a safe state (pump off, drive off, bias restored). Called
        after the acquisition however it ended: completed, failed or interrupted (also after
        Ctrl-C). An error here is reported after the data are saved, never instead of them."""

    # -- the run -----------------------------------------------------------------------------
    def run(self, station: LabStation, db_path: str | Path, *, quiet: bool = False,
            analyze: bool = True) -> RunResult:
        """Acquire into the database at `db_path` (created if missing), then analyze.

        `quiet` silences the progress bar and QCoDeS's start message. See the module
        docstring for what happens on an instrument error or Ctrl-C.
        """
        db_path = Path(db_path)
        steps = self.steps()
        progress = Progress(len(steps), self.name, quiet=quiet)
        points, done, prepared = 0, 0, False
        stop: BaseException | None = None
        with open_database(db_path) as conn:
            exp = load_or_create_experiment(self.name, sample_name=_lab_name(station),
                                            conn=conn)
            meas = Measurement(exp=exp, station=station, name=self.name)
            meas.write_period = self.write_period
            for p in self.dataset_parameters():
                meas.register_custom_parameter(p.name, label=p.label, unit=p.unit,
                                               setpoints=p.setpoints or None,
                                               paramtype=p.paramtype)
            runner = meas.run(in_memory_cache=False)  # large runs: do not hold a copy
            with contextlib.ExitStack() as stack:
                with contextlib.redirect_stdout(io.StringIO()) if quiet \
                        else contextlib.nullcontext():
                    saver = stack.enter_context(runner)
                ds = saver.dataset
                ds.add_metadata(SEQUENCE, json.dumps(self.name))
                ds.add_metadata(ANALYSIS_CLASS, json.dumps(
                    f"{self.analysis_class.__module__}.{self.analysis_class.__qualname__}"))
                ds.add_metadata(OPTIONS, json.dumps(_options_json(self.options)))
                ds.add_metadata(STATUS, json.dumps("running"))
                guard = PumpGuard(station, **self.interlock_guard)
                self.restorer = Restorer()
                try:
                    guard.check(-1, "preparation")
                    try:
                        self.prepare(station)
                    except InterlockError:
                        if not guard.active:
                            raise
                        guard.check(-1, "preparation")  # pause until recovered, retry once
                        self.prepare(station)
                    prepared = True
                    for step in steps:
                        progress.update(done, step.label)
                        guard.check(step.index, step.label)
                        try:
                            results = self.measure(station, step)
                        except InterlockError:
                            if not guard.active:
                                raise
                            guard.check(step.index, step.label)  # pause until recovered
                            results = self.measure(station, step)  # then retry, once
                        # One add_result per step with whole arrays: QCoDeS buffers them and
                        # commits every write_period, never one commit per row.
                        saver.add_result(*results.items())
                        points += len(next(iter(results.values())))
                        done += 1
                        progress.update(done, step.label)
                except (QnetlabError, KeyboardInterrupt) as exc:
                    stop = exc
                finally:
                    finish_error = _finish(self, station)
                if guard.events:
                    ds.add_metadata(INTERLOCK_EVENTS, json.dumps(
                        [e.to_json() for e in guard.events]))
                if finish_error is not None:
                    ds.add_metadata(FINISH_ERROR, json.dumps(repr(finish_error)))
                # Anything else is a bug: QCoDeS still flushes and records the traceback.
                stopped = None if stop is None else _stop_record(steps, done, points, stop,
                                                                  prepared)
                ds.add_metadata(STATUS, json.dumps("completed" if stop is None
                                                   else "interrupted"))
                if stopped is not None:
                    ds.add_metadata(STOPPED_AT, json.dumps(stopped))
            progress.close("" if stopped is None else
                           f"stopped at {stopped['label']}: {stopped['cause']}")
            result = RunResult(run_id=ds.run_id, db_path=db_path, guid=ds.guid,
                               status="completed" if stop is None else "interrupted",
                               points=points, stopped_at=stopped,
                               interlock_events=[e.to_json() for e in guard.events])
        self.last_run = result
        if finish_error is not None and not isinstance(stop, KeyboardInterrupt):
            # The data are saved; now say loudly that the bench may not be safe.
            raise finish_error
        if isinstance(stop, KeyboardInterrupt):
            stop.add_note(f"{self.name}: run {result.run_id} of {db_path} kept {points} "
                          f"points (stopped at {stopped and stopped['label']})")
            raise stop
        if analyze and points:
            result.analysis = self.analysis_class().run(result.run_id, db_path)
        return result


def _finish(sequence: Sequence[Any], station: LabStation) -> Exception | None:
    first: Exception | None = None
    for step in (sequence.finish, lambda _: sequence.restorer.restore()):
        try:
            step(station)
        except Exception as exc:  # reported after the data are saved (see Sequence.finish)
            log.error("%s: could not restore the bench after the run: %r", sequence.name, exc)
            first = first or exc
    return first


def _lab_name(station: LabStation) -> str:
    path = getattr(getattr(station, "lab_config", None), "path", None)
    return Path(path).stem if path is not None else "lab"


def _options_json(options: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        return dataclasses.asdict(options)
    return {}


def _stop_record(steps: list[Step], done: int, points: int, exc: BaseException,
                 prepared: bool) -> dict[str, Any]:
    """Where a run stopped: the step that did not finish (or the preparation)."""
    if not prepared:
        index, label, settings = -1, "preparation", {}
    elif done < len(steps):
        step = steps[done]
        index, label, settings = step.index, step.label, dict(step.settings)
    else:  # cannot happen from the loop, but a stop record must never fail
        index, label, settings = len(steps), "end", {}
    cause = "interrupted by the user (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) \
        else f"{type(exc).__name__}: {exc}"
    return {"step": index, "label": label, "settings": settings, "steps_done": done,
            "steps_total": len(steps), "points_saved": points, "cause": cause}
