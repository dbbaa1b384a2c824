"""Analysis of a stored run: fitted values with uncertainties, a verdict, proposals, figures.

An analysis takes only a run id and the database path: it reads the dataset back
(`sequences.data.load_run`), so it gives the same result live, later, or on another machine.
Its result is written into the dataset's metadata (``qnetlab_analysis``, JSON) and its
figures as PNG files next to the database (`sequences.data.figure_dir`).

An analysis that cannot proceed (its fit or its figures raise) gives a bad verdict
(``analysis failed``) naming the error, never a traceback; values fitted before the figures
failed are kept.

Partial steps (``qnetlab_partial_steps``, `sequences.data`). The first attempt of a step that
an interlock paused and that was then measured again is never analyzed (the step's points
are there in full after it). The points of the step an interrupted run stopped in are used
only by analyses that set `Analysis.uses_partial_steps` (where every stored row is a complete
point on its own, e.g. one efficiency at one pump power and detuning); the others leave them
out. Either way the verdict's detail says so.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from matplotlib.figure import Figure

from qnetlab.instruments.errors import VerdictError

from .data import ANALYSIS, StoredRun, figure_dir, load_run, store_metadata

log = logging.getLogger(__name__)


class Reason(enum.StrEnum):
    """Why a verdict is bad."""

    POOR_FIT = "poor fit"
    OUT_OF_RANGE = "out of plausible range"
    TOO_FEW_POINTS = "too few points"
    NO_SIGNAL = "no signal"
    INTERRUPTED = "interrupted"
    ANALYSIS_FAILED = "analysis failed"


@dataclass(frozen=True)
class Verdict:
    """Good, or bad with a `reason` and a `detail` a scientist can act on."""

    good: bool
    reason: Reason | None = None
    detail: str = ""

    @classmethod
    def ok(cls, detail: str = "") -> Verdict:
        return cls(True, None, detail)

    @classmethod
    def bad(cls, reason: Reason, detail: str) -> Verdict:
        return cls(False, reason, detail)

    def __str__(self) -> str:
        if self.good:
            return "good" + (f" ({self.detail})" if self.detail else "")
        return f"bad: {self.reason} ({self.detail})"

    def raise_if_bad(self, what: str = "the run") -> None:
        """For a script or notebook that wants an exception rather than a verdict to read:
        `VerdictError` (exit code 1 from the command line) if the verdict is bad."""
        if not self.good:
            raise VerdictError(f"{what}: verdict {self}", verdict=self)


@dataclass(frozen=True)
class FitValue:
    """A fitted value and its standard error (one sigma), in `unit`.

    `stderr` is the combined error, what every consumer (operating point, link prediction,
    calibration tolerances) uses; `sys` is the part of it that comes from the calibration
    constants the analysis assumed (line attenuation, output loss, detection efficiency, the
    fridge's cooling coefficient), common to every point and not reduced by more data;
    `stat` is the rest, the fit's own: ``stderr**2 = stat**2 + sys**2``
    (docs/fitting.md#systematic-uncertainty)."""

    value: float
    stderr: float
    unit: str = ""
    sys: float = 0.0
    """Systematic part of `stderr` (one sigma, `unit`); 0 when no constant's error enters."""
    stat: float = math.nan
    """Statistical part of `stderr`; left out (NaN), it is what `stderr` leaves beside `sys`
    (kept as given: sqrt(stderr^2 - sys^2) loses digits when sys >> stat)."""

    def __post_init__(self) -> None:
        if math.isnan(self.stat):
            stat = self.stderr if self.sys == 0 or not math.isfinite(self.stderr) else \
                math.sqrt(max(self.stderr**2 - self.sys**2, 0.0))
            object.__setattr__(self, "stat", stat)

    @classmethod
    def combined(cls, value: float, stat: float, sys: float, unit: str = "") -> FitValue:
        """From the statistical and the systematic error (independent: added in
        quadrature)."""
        return cls(value, math.hypot(stat, sys), unit, abs(sys), stat)

    def with_systematic(self, sys: float) -> FitValue:
        """This value with a systematic error added (in quadrature) to the stated ones."""
        if sys == 0:
            return self
        return FitValue.combined(self.value, self.stat, math.hypot(self.sys, sys), self.unit)

    def __str__(self) -> str:
        from .si import format_fit

        return format_fit(self.value, self.stderr, self.unit, self.sys)


@dataclass
class AnalysisResult:
    """What an analysis concludes about one run.

    `proposed` holds the calibration values (parameter name -> value, SI units) the run
    supports; it is empty unless the verdict is good, so a bad fit can never be taken up
    as a calibration by mistake.
    """

    sequence: str
    run_id: int
    values: dict[str, FitValue]
    verdict: Verdict
    proposed: dict[str, float] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    """PNG paths."""
    details: dict[str, float] = field(default_factory=dict)
    """Fit diagnostics (e.g. noise, residual whiteness)."""
    tables: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """Derived per-point results a report shows as a table, column-oriented:
    table name -> column name (with its unit, e.g. 'pump_power (W)') -> values."""

    def _repr_html_(self) -> str:
        """In a notebook: the verdict as a badge, the values with their errors, the figures."""
        from .report import analysis_html

        return analysis_html(self)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"]["reason"] = None if self.verdict.reason is None else str(
            self.verdict.reason)
        # JSON has no NaN/inf: a fit that failed stores null rather than an invalid file.
        out["values"] = {k: {n: _finite(x) if isinstance(x, float) else x for n, x in v.items()}
                         for k, v in out["values"].items()}
        out["details"] = {k: _finite(v) for k, v in self.details.items()}
        out["tables"] = {name: {col: [_finite(float(x)) for x in values]
                                for col, values in table.items()}
                         for name, table in self.tables.items()}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnalysisResult:
        v = data["verdict"]
        return cls(
            sequence=data["sequence"], run_id=int(data["run_id"]),
            values={k: FitValue(_number(x["value"]), _number(x["stderr"]), x.get("unit", ""),
                                _number(x.get("sys", 0.0)), _number(x.get("stat")))
                    for k, x in data["values"].items()},
            verdict=Verdict(bool(v["good"]), None if v["reason"] is None else Reason(
                v["reason"]), v.get("detail", "")),
            proposed={k: float(x) for k, x in data.get("proposed", {}).items()},
            figures=list(data.get("figures", [])),
            details={k: _number(x) for k, x in data.get("details", {}).items()},
            tables={name: {col: [_number(x) for x in values] for col, values in table.items()}
                    for name, table in data.get("tables", {}).items()},
        )


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def systematic_shift(evaluate: Callable[[float], float], value: float, error: float) -> float:
    """The systematic error of a result from one calibration constant, by re-running the
    analysis's final step with the constant at ``value +- error``: half the difference of
    the two results (for a quantity that does not simply scale with the constant)."""
    if error == 0:
        return 0.0
    return abs(evaluate(value + error) - evaluate(value - error)) / 2


def with_relative_systematic(values: dict[str, FitValue], names: tuple[str, ...],
                             relative: float) -> None:
    """Add a systematic error ``relative x |value|`` to each of `names` present in
    `values` (quantities proportional to a calibration scale whose relative error is
    `relative`)."""
    if relative == 0:
        return
    for name in names:
        v = values.get(name)
        if v is not None:
            values[name] = v.with_systematic(relative * abs(v.value))


def _number(x: float | None) -> float:
    return math.nan if x is None else float(x)


class Analysis(ABC):
    """Base of every analysis: subclasses implement `analyze` (and optionally `plot`)."""

    sequence: ClassVar[str] = ""
    """The sequence this analysis belongs to (names the result and the figures)."""
    uses_partial_steps: ClassVar[bool] = False
    """True if every stored row is a complete point on its own, so that the points of the
    step an interrupted run stopped in are valid data (module docstring)."""

    def run(self, run_id: int, db_path: str | Path, *, save: bool = True) -> AnalysisResult:
        """Analyze stored run `run_id` of the database at `db_path`. With `save`, write the
        figures (PNG) and store the result in the dataset's metadata. A missing database or
        run raises (FileNotFoundError, ValueError); an analysis that fails returns a bad
        verdict (module docstring)."""
        stored = load_run(run_id, db_path)
        stored, partial_note = self._select_rows(stored)
        try:
            result = self.analyze(stored)
        except Exception as exc:  # any failure of a fit is a verdict, not a crash
            log.warning("%s run %s: analysis failed", self.sequence, run_id, exc_info=True)
            result = AnalysisResult(self.sequence, run_id, {}, Verdict.bad(
                Reason.ANALYSIS_FAILED, f"the analysis could not proceed: "
                f"{type(exc).__name__}: {exc}"))
        if stored.status == "interrupted" and result.verdict.good:
            # A partial scan may fit well and still be the wrong answer: it saw less than
            # was asked for, so it must not be taken up as a calibration.
            where = stored.metadata.get("stopped_at") or {}
            result.verdict = Verdict.bad(Reason.INTERRUPTED, f"run stopped at "
                                         f"{where.get('label', 'an unknown step')}: "
                                         f"{where.get('cause', 'unknown cause')}")
        if partial_note:
            result.verdict = dataclasses.replace(result.verdict, detail="; ".join(
                x for x in (result.verdict.detail, partial_note) if x))
        if not result.verdict.good:
            result.proposed = {}
        if save:
            try:
                result.figures = self._save_figures(stored, result)
            except Exception as exc:  # the fitted values stand without figures
                log.warning("%s run %s: figures failed", self.sequence, run_id, exc_info=True)
                result.figures = []
                result.proposed = {}
                result.verdict = Verdict.bad(Reason.ANALYSIS_FAILED, f"the figures could "
                                             f"not be drawn: {type(exc).__name__}: {exc}; "
                                             f"the fit said: {result.verdict}")
            store_metadata(run_id, db_path, ANALYSIS, result.to_json())
        return result

    def _select_rows(self, stored: StoredRun) -> tuple[StoredRun, str]:
        """Leave out the partial steps this analysis must not see; a note saying what was
        left out or used ("" when the run has no partial step)."""
        notes = []
        retried = stored.partial_steps_why("paused")
        unfinished = stored.partial_steps_why("unfinished")
        if retried:
            stored = stored.without_partial_steps("paused")
            notes.append(f"left out {sum(int(p['rows']) for p in retried)} points of first "
                         "attempts an interlock paused (measured again)")
        for p in unfinished:
            rows = f"{p['rows']} points of the unfinished step {p['label']} (rows " \
                   f"{p['first_row']}-{int(p['first_row']) + int(p['rows']) - 1})"
            notes.append(("used " if self.uses_partial_steps else "left out ") + rows)
        if unfinished and not self.uses_partial_steps:
            stored = stored.without_partial_steps("unfinished")
        return stored, "; ".join(notes)

    @abstractmethod
    def analyze(self, run: StoredRun) -> AnalysisResult:
        """Fit the stored data; never raise for bad data: return a bad verdict instead."""

    def plot(self, run: StoredRun, result: AnalysisResult) -> dict[str, Figure]:
        """Figures to save, by name (``matplotlib.figure.Figure``, no pyplot state)."""
        return {}

    def _save_figures(self, run: StoredRun, result: AnalysisResult) -> list[str]:
        figures = self.plot(run, result)
        if not figures:
            return []
        folder = figure_dir(run.db_path)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, fig in figures.items():
            path = folder / f"run{run.run_id}_{self.sequence or 'analysis'}_{name}.png"
            # A bare Figure renders through Agg: no GUI backend and no global pyplot state.
            fig.savefig(path, dpi=100)
            paths.append(str(path))
        return paths


def analyze_run(run_id: int, db_path: str | Path, *, save: bool = True) -> AnalysisResult:
    """Re-run the analysis named in a stored run's metadata (``qnetlab analyze RUN_ID``)."""
    stored = load_run(run_id, db_path)
    path = str(stored.metadata.get("analysis_class", ""))
    module_name, _, class_name = path.rpartition(".")
    if module_name.startswith("sequences."):  # stored before the qnetlab namespace (0.1)
        module_name = f"qnetlab.{module_name}"
    # Only qnetlab's own sequences are imported: the name comes from a file on disk.
    if not module_name.startswith("qnetlab.sequences."):
        raise ValueError(f"run {run_id} of {db_path} names no qnetlab analysis ({path!r})")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Analysis)):
        raise ValueError(f"run {run_id} of {db_path}: {path!r} is not an Analysis")
    return cls().run(run_id, db_path, save=save)


def stored_analysis(run_id: int, db_path: str | Path) -> AnalysisResult | None:
    """The analysis result stored with a run (None if it was never analyzed)."""
    data = load_run(run_id, db_path).metadata.get("analysis")
    return AnalysisResult.from_json(data) if isinstance(data, dict) else None
