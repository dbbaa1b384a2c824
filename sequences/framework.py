"""The sequence base: typed options, an acquisition into the lab's QCoDeS database, and the
analysis that follows it (the qiskit-experiments shape: a small experiment, an analysis that
returns a verdict).

A subclass declares its dataset columns (`dataset_parameters`), plans its steps (`steps`),
and measures one step at a time (`measure`); `LabSequence.run` does the rest: database and
experiment, station snapshot, buffered writes, progress bar, interruption, analysis.

Interruption policy:

* an instrument error (`instruments.errors.QnetlabError`: timeout, lost connection,
  refused setting, interlock) ends the acquisition; everything measured so far is kept,
  the run is marked ``interrupted`` with where it stopped, and `run` *returns* the partial
  `RunResult` (analyzed, with a bad verdict) so that a calibration graph can report it and
  go on;
* Ctrl-C (KeyboardInterrupt) does the same bookkeeping and then *re-raises*: the user asked
  to stop. The partial result is on `LabSequence.last_run`, and the exception carries a note
  naming the run;
* any other exception (a reply a driver could not parse before it learnt to say so, or a bug
  in a sequence) does the same bookkeeping too (points kept, `finish`, the run marked
  ``interrupted`` with its stop record, the kept points analyzed), then *re-raises* with a
  note naming the run: a run is never left ``running``.

Partial steps. A step that measures point by point hands each point over as it is measured
(`LabSequence.keep`); when the run stops inside the step, the points it kept are written, and
the run's metadata (``qnetlab_partial_steps``, `sequences.data`) says which rows belong to the
unfinished step. The same holds for the first attempt of a step that an interlock paused and
that was then measured again. Writes stay batched: a completed step is still one
`add_result` with whole arrays, however many points it kept on the way.
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

from qnetlab.instruments.errors import InterlockError, QnetlabError
from qnetlab.instruments.station import LabStation

from .analysis import Analysis, AnalysisResult
from .data import (
    ANALYSIS_CLASS,
    FINISH_ERROR,
    INTERLOCK_EVENTS,
    OPTIONS,
    PARTIAL_STEPS,
    SEQUENCE,
    STATUS,
    STOPPED_AT,
    open_database,
)
from .interlock import PumpGuard
from .progress import Progress
from .restore import Restorer
from .si import format_value

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
    """The outcome of `LabSequence.run`."""

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
    partial_steps: list[dict[str, Any]] = field(default_factory=list)
    """Points of steps that did not finish (`LabSequence.keep`): step, label, rows, why."""
    analysis_interrupted: bool = False
    """The acquisition finished but Ctrl-C stopped its analysis (``qnetlab analyze`` redoes
    it from the stored run)."""

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"

    def _repr_html_(self) -> str:
        """In a notebook: status, where it stopped, interlock pauses, and its analysis."""
        from .report import run_html

        name = self.analysis.sequence if self.analysis is not None else "run"
        return run_html(self, f"{name} {self.run_id} ({self.db_path.name})")


class LabSequence(ABC, Generic[OptionsT]):
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
        self._buffer = _StepBuffer()
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
        """Measure one step: arrays of equal length, keyed by dataset column.

        A step that measures point after point should hand each point to `keep` as soon as
        it is measured and return ``{}`` (or only what it did not keep): then an interrupt,
        a timeout or an instrument error in the middle of the step loses none of them."""

    def keep(self, points: Mapping[str, Any]) -> None:
        """Hand over points of the running step as they are measured: values (or arrays of
        equal length) keyed by dataset column, the same columns at every call of a step.

        Nothing is written per call (a commit per row is ~36x slower): the points are held
        until the step ends and written with it in one `add_result`, or, if the run stops
        inside the step, written then and recorded as the unfinished step's."""
        self._buffer.add(points)
        self._show_live(points)

    def _show_live(self, points: Mapping[str, Any]) -> None:
        """The latest measured value among `points` beside the step's label on the progress
        bar (and to the monitor), so a long step shows it is alive and what it sees."""
        progress, label = getattr(self, "_progress", None), getattr(self, "_step_label", "")
        if progress is None or not progress.wants_live():
            return
        for param in self.dataset_parameters():
            if not param.setpoints or param.paramtype != "numeric" or param.name not in points:
                continue
            latest = np.ravel(np.asarray(points[param.name], dtype=float))
            if latest.size:
                progress.live(f"{label}: {param.label or param.name} "
                              f"{format_value(float(latest[-1]), param.unit)}")
            return

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
        self._buffer = _StepBuffer()
        progress = Progress(len(steps), self.name, quiet=quiet)
        self._progress: Progress | None = progress
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
                guard.on_note = progress.note
                guard.on_state = progress.interlock
                self.restorer = Restorer()
                writer = _Writer(saver)
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
                        self._step_label = step.label
                        progress.update(done, step.label)
                        guard.check(step.index, step.label)
                        self._buffer = _StepBuffer()
                        try:
                            returned = self.measure(station, step)
                        except InterlockError:
                            if not guard.active:
                                raise
                            # What the first attempt measured is kept, marked as such.
                            writer.write_partial(self._buffer, step, "paused by an interlock; "
                                                 "the step was measured again")
                            self._buffer = _StepBuffer()
                            guard.check(step.index, step.label)  # pause until recovered
                            returned = self.measure(station, step)  # then retry, once
                        # One add_result per step with whole arrays: QCoDeS buffers them and
                        # commits every write_period, never one commit per row.
                        writer.write(self._buffer.merged(returned))
                        self._buffer = _StepBuffer()
                        done += 1
                        progress.update(done, step.label)
                except (Exception, KeyboardInterrupt) as exc:
                    # Every error ends the run the same way (module docstring); which of
                    # them is re-raised is decided after the data are saved.
                    stop = exc
                finally:
                    finish_error = _finish(self, station)
                if stop is not None and prepared and done < len(steps):
                    try:
                        writer.write_partial(self._buffer, steps[done], "unfinished: the "
                                             "run stopped inside this step")
                    except Exception as exc:  # the run must still be marked, not "running"
                        log.error("%s: could not write the unfinished step's points: %r",
                                  self.name, exc)
                        stop.add_note(f"the points of the unfinished step could not be "
                                      f"written: {exc!r}")
                self._buffer = _StepBuffer()
                points = writer.points
                if guard.events:
                    ds.add_metadata(INTERLOCK_EVENTS, json.dumps(
                        [e.to_json() for e in guard.events]))
                if writer.partial:
                    ds.add_metadata(PARTIAL_STEPS, json.dumps(writer.partial))
                if finish_error is not None:
                    ds.add_metadata(FINISH_ERROR, json.dumps(repr(finish_error)))
                stopped = None if stop is None else _stop_record(steps, done, points, stop,
                                                                  prepared, writer.partial)
                ds.add_metadata(STATUS, json.dumps("completed" if stop is None
                                                   else "interrupted"))
                if stopped is not None:
                    ds.add_metadata(STOPPED_AT, json.dumps(stopped))
            self._progress = None
            progress.close("" if stopped is None else
                           f"stopped at {stopped['label']}: {stopped['cause']}")
            result = RunResult(run_id=ds.run_id, db_path=db_path, guid=ds.guid,
                               status="completed" if stop is None else "interrupted",
                               points=points, stopped_at=stopped,
                               interlock_events=[e.to_json() for e in guard.events],
                               partial_steps=writer.partial)
        self.last_run = result
        where = (f"{self.name}: run {result.run_id} of {db_path} kept {points} points "
                 f"(stopped at {stopped and stopped['label']})")
        if isinstance(stop, KeyboardInterrupt):
            stop.add_note(where)
            if finish_error is not None:
                stop.add_note(f"the bench may not be safe: finish failed: {finish_error!r}")
            raise stop
        bug = stop is not None and not isinstance(stop, QnetlabError)
        if finish_error is not None and not bug:
            # The data are saved; now say loudly that the bench may not be safe.
            raise finish_error
        if analyze and points:
            self._analyze(result)
        if bug:
            assert stop is not None
            stop.add_note(f"{where}; the run is marked interrupted and its points are saved")
            if finish_error is not None:
                stop.add_note(f"the bench may not be safe: finish failed: {finish_error!r}")
            raise stop
        return result

    def _analyze(self, result: RunResult) -> None:
        """Analyze a finished run; on Ctrl-C say that the data are safe and how to redo it."""
        try:
            result.analysis = self.analysis_class().run(result.run_id, result.db_path)
        except KeyboardInterrupt as exc:
            result.analysis_interrupted = True
            exc.add_note(f"{self.name}: run {result.run_id} of {result.db_path} is measured "
                         f"({result.points} points saved, {result.status}); its analysis was "
                         f"interrupted: re-run it with qnetlab analyze {result.run_id} --db "
                         f"{result.db_path}")
            raise


class _StepBuffer:
    """The points one step handed to `LabSequence.keep`, held until the step is written."""

    def __init__(self) -> None:
        self.chunks: list[dict[str, np.ndarray]] = []

    def add(self, points: Mapping[str, Any]) -> None:
        arrays = {k: np.atleast_1d(np.asarray(v)) for k, v in points.items()}
        sizes = {a.size for a in arrays.values()}
        if len(sizes) != 1:
            raise ValueError(f"keep: the columns {sorted(arrays)} must hold the same number "
                             f"of points, got sizes {sorted(sizes)}")
        if self.chunks and arrays.keys() != self.chunks[0].keys():
            raise ValueError(f"keep: every call of a step must hand over the same columns; "
                             f"got {sorted(arrays)} after {sorted(self.chunks[0])}")
        self.chunks.append(arrays)  # one append: a Ctrl-C leaves the point in or out, whole

    @property
    def rows(self) -> int:
        return sum(next(iter(c.values())).size for c in self.chunks)

    def merged(self, returned: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The kept points, then those `measure` returned, as one array per column."""
        chunks = list(self.chunks)
        if returned:
            chunks.append({k: np.atleast_1d(np.asarray(v)) for k, v in returned.items()})
        if not chunks:
            return {}
        columns = chunks[0].keys()  # `add` made every kept chunk's columns the same
        if chunks[-1].keys() != columns:
            raise ValueError(f"the points kept during the step and those measure() returned "
                             f"have different columns: {sorted(columns)} and "
                             f"{sorted(chunks[-1])}")
        return {k: np.concatenate([c[k] for c in chunks]) for k in columns}


class _Writer:
    """Writes steps to the datasaver, counting the rows of every column (what a partial
    step's record points at)."""

    def __init__(self, saver: Any) -> None:
        self.saver = saver
        self.points = 0
        self.column_rows: dict[str, int] = {}
        self.partial: list[dict[str, Any]] = []

    def write(self, results: Mapping[str, np.ndarray]) -> None:
        if not results:
            return
        self.saver.add_result(*results.items())
        self.points += len(next(iter(results.values())))
        for name, values in results.items():
            self.column_rows[name] = self.column_rows.get(name, 0) + len(values)

    def write_partial(self, buffer: _StepBuffer, step: Step, why: str) -> None:
        """Write what an unfinished step kept and record which rows they are: the row
        numbers of the whole dataset (``first_row``, ``rows``) and, per column, the
        positions in that column's stored array (``columns``: name -> [first, count])."""
        results = buffer.merged()
        if not results:
            return
        first = self.points
        columns = {name: [self.column_rows.get(name, 0), len(values)]
                   for name, values in results.items()}
        self.write(results)
        self.partial.append({"step": step.index, "label": step.label, "first_row": first,
                             "rows": self.points - first, "columns": columns, "why": why})


def _finish(sequence: LabSequence[Any], station: LabStation) -> Exception | None:
    first: Exception | None = None
    for step in (sequence.finish, lambda _: sequence.restorer.restore()):
        try:
            step(station)
        except Exception as exc:  # reported after the data are saved (see LabSequence.finish)
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
                 prepared: bool, partial: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a run stopped: the step that did not finish (or the preparation)."""
    if not prepared:
        index, label, settings = -1, "preparation", {}
    elif done < len(steps):
        step = steps[done]
        index, label, settings = step.index, step.label, dict(step.settings)
    else:  # cannot happen from the loop, but a stop record must never fail
        index, label, settings = len(steps), "end", {}
    # A stop signal arrives as a KeyboardInterrupt named after it
    # (qnetlab.instruments.errors.StopSignal).
    cause = (f"stopped by {exc}" if str(exc) else "interrupted by the user (Ctrl-C)") \
        if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
    unfinished = [p["rows"] for p in partial if p["step"] == index
                  and p["why"].startswith("unfinished")]
    return {"step": index, "label": label, "settings": settings, "steps_done": done,
            "steps_total": len(steps), "points_saved": points,
            "points_of_unfinished_step": sum(unfinished), "cause": cause}
