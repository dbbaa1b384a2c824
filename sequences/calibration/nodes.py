"""Calibration nodes backed by the lab's sequences, built from ``qnetlab.calibration``.

A `SequenceNode` is one entry of a lab config's calibration graph (`graph_config.NodeConfig`):

* ``calibrate`` runs the sequence with the node's ``options`` (plus its ``inputs``: options
  taken from values already stored, e.g. the microwave linewidth an added-noise scan needs),
  on the lab's station, into the lab's database; a good verdict returns the committed values
  (from the analysis' proposals or fitted values, with their units), a bad one returns none;
* ``check_data`` runs the quick variant (``check_options`` over ``options``) and holds each
  value of the node's ``spec`` against the store's current one: in spec, out of spec, or bad
  data when the quick run's own verdict is bad;
* ``apply`` sets committed values on the station (``apply``: value -> parameter).

The node's ``settings`` (station parameters) are set for each of its runs and restored
afterwards, however the run ends.

`calibration_nodes(config)` builds every node of a station config; `lab_graph(config)` the
validated `CalibrationGraph` of them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qnetlab.instruments.errors import QnetlabError
from qnetlab.instruments.lab_config import LabConfig, load_config
from qnetlab.instruments.station import LabStation

from ..analysis import AnalysisResult
from ..framework import RunResult
from ..registry import sequence_class
from ..si import format_fit, format_value
from .graph import (
    CalibrationContext,
    CalibrationGraph,
    CalibrationNode,
    CalibrationOutcome,
    CheckOutcome,
    DataResult,
)
from .graph_config import Committed, NodeConfig, parse_calibration
from .store import ParameterStore

log = logging.getLogger(__name__)


class MissingInputError(LookupError):
    """A value a node's sequence needs is not in the store (its provider never calibrated)."""


class SequenceNode(CalibrationNode):
    """One sequence-backed node of a lab's calibration graph (module docstring)."""

    def __init__(self, spec: NodeConfig) -> None:
        super().__init__(spec.name, scope=spec.lab, depends_on=spec.depends_on,
                         timeout=spec.timeout, description=spec.description)
        self.spec = spec

    # -- the operations -----------------------------------------------------------------------
    def calibrate(self, ctx: CalibrationContext) -> CalibrationOutcome:
        try:
            run = self._run(ctx, check=False)
        except MissingInputError as exc:
            return CalibrationOutcome(False, str(exc))
        head = f"{self.spec.sequence} run {run.run_id}"
        analysis = run.analysis
        if analysis is None:
            return CalibrationOutcome(False, f"{head}: no analysis ({run.points} points, "
                                      f"{run.status})", run=run)
        if not analysis.verdict.good:
            return CalibrationOutcome(False, f"{head}: {analysis.verdict}", run=run)
        values: dict[str, tuple[float, str]] = {}
        errors: dict[str, float] = {}
        missing = []
        for c in self.spec.commit:
            found = _measured(analysis, c)
            if found is None:
                missing.append(c.source)
            else:
                values[c.name] = (found[0], c.unit)
                fitted = analysis.values.get(c.source)
                if fitted is not None and c.field != "stderr":
                    errors[c.name] = float(fitted.stderr)
        if missing:
            return CalibrationOutcome(False, f"{head}: the analysis gave no {', '.join(missing)}"
                                      f" to commit (fix 'commit' of {self.name} in "
                                      f"{self.spec.source})", run=run)
        text = ", ".join(f"{name} = {_shown(v, errors.get(name, 0.0), unit)}"
                         for name, (v, unit) in values.items())
        return CalibrationOutcome(True, f"{head}: {text}", values, run, errors)

    def check_data(self, ctx: CalibrationContext) -> CheckOutcome:
        try:
            run = self._run(ctx, check=True)
        except MissingInputError as exc:
            return CheckOutcome(DataResult.OUT_OF_SPEC, str(exc))
        head = f"{self.spec.sequence} run {run.run_id} (quick)"
        analysis = run.analysis
        if analysis is None or not analysis.verdict.good:
            why = analysis.verdict if analysis is not None else f"no analysis ({run.status})"
            return CheckOutcome(DataResult.BAD_DATA, f"{head}: {why}", run)
        store = ctx.store(self.scope)
        units = {c.name: c for c in self.spec.commit}
        findings, result = [], DataResult.IN_SPEC
        for name, tolerance in self.spec.spec.items():
            committed = units[name]
            found = _measured(analysis, committed)
            if found is None:
                return CheckOutcome(DataResult.BAD_DATA, f"{head}: the quick run gave no "
                                    f"{committed.source}", run)
            stored = store.current(name)
            value, stderr = found
            if stored is None:
                findings.append(f"{name} {value:.6g} {committed.unit}: nothing stored to "
                                "compare with")
                result = DataResult.OUT_OF_SPEC
                continue
            ok, why = tolerance.judge(value, stderr, stored.value)
            err = f" ± {stderr:.2g}" if math.isfinite(stderr) else ""
            findings.append(f"{name} {value:.6g}{err} {committed.unit} vs stored "
                            f"{stored.value:.6g}: {'in spec' if ok else 'OUT OF SPEC'}, {why}")
            if not ok:
                result = DataResult.OUT_OF_SPEC
        detail = "; ".join(findings) or f"{analysis.verdict} (no spec to compare)"
        return CheckOutcome(result, f"{head}: {detail}", run)

    def apply(self, ctx: CalibrationContext, values: Mapping[str, float]) -> None:
        apply_values(ctx.station(self.scope), self.spec, values)

    # -- helpers ------------------------------------------------------------------------------
    def options(self, store: ParameterStore, *, check: bool) -> dict[str, Any]:
        """The sequence's options for a calibration (or a quick check), inputs filled in from
        `store`; MissingInputError if one is not stored."""
        s = self.spec
        options = {**s.options, **(s.check_options if check else {})}
        for option, parameter in {**s.inputs, **(s.check_inputs if check else {})}.items():
            stored = store.current(parameter)
            if stored is None:
                raise MissingInputError(f"{self.name}: option {option} needs the stored value "
                                        f"{parameter!r}, which has no valid value: calibrate "
                                        "the node that commits it first")
            options[option] = stored.value
        return options

    def _run(self, ctx: CalibrationContext, *, check: bool) -> RunResult:
        options = self.options(ctx.store(self.scope), check=check)
        sequence = sequence_class(self.spec.sequence)(**options)
        station = ctx.station(self.scope)
        with _settings(station, self.spec):
            return sequence.run(station, ctx.db_path(self.scope), quiet=ctx.quiet)


def _measured(analysis: AnalysisResult, c: Committed) -> tuple[float, float] | None:
    """(value, standard error) of committed value `c` in `analysis` (stderr nan if the
    analysis gives none), or None if it has no such value. The error is the statistical one:
    a check compares runs on the same bench, whose calibration constants (the systematic
    part, docs/fitting.md#systematic-uncertainty) are common to both; a committed
    ``field: stderr`` is the combined error, what the link prediction needs."""
    fitted = analysis.values.get(c.source)
    if c.field == "stderr":
        return None if fitted is None else (float(fitted.stderr), math.nan)
    if c.source in analysis.proposed:
        stderr = fitted.stat if fitted is not None else math.nan
        return float(analysis.proposed[c.source]), float(stderr)
    if fitted is None:
        return None
    return float(fitted.value), float(fitted.stat)


# -- the station side ---------------------------------------------------------------------------
def station_parameter(station: LabStation, target: str, source: str = "") -> Any:
    """The QCoDeS parameter ``instrument[.channel...].parameter`` of `station`."""
    where = f" ({source})" if source else ""
    first, *middle, last = target.split(".")
    if first not in station.components:
        raise KeyError(f"{target}{where}: the station has no instrument {first!r} (it has "
                       f"{', '.join(sorted(station.components))})")
    owner: Any = station.components[first]
    for part in middle:
        sub = getattr(owner, "submodules", {}).get(part)
        if sub is None:
            raise KeyError(f"{target}{where}: {owner.full_name} has no channel {part!r} (it "
                           f"has {', '.join(sorted(owner.submodules)) or 'none'})")
        owner = sub
    param = getattr(owner, "parameters", {}).get(last)
    if param is None:
        raise KeyError(f"{target}{where}: {owner.full_name} has no parameter {last!r} (it "
                       f"has {', '.join(sorted(owner.parameters))})")
    return param


def apply_values(station: LabStation, spec: NodeConfig, values: Mapping[str, float]) -> list[str]:
    """Set each of `values` that `spec` applies on its station parameter; what was set."""
    done = []
    for name, target in spec.apply.items():
        if name in values:
            station_parameter(station, target, spec.source).set(values[name])
            done.append(f"{target} = {values[name]:.6g}")
    return done


@contextmanager
def _settings(station: LabStation, spec: NodeConfig) -> Iterator[None]:
    """Set the node's settings for one run; put back what they were, however it ends."""
    saved: list[tuple[Any, Any]] = []
    try:
        for target, value in spec.settings.items():
            param = station_parameter(station, target, spec.source)
            saved.append((param, param.get()))
            param.set(value)
        yield
    finally:
        for param, value in reversed(saved):
            try:
                param.set(value)
            except (QnetlabError, ValueError) as exc:
                log.warning("%s: could not restore %s to %r: %s", spec.name,
                            param.full_name, value, exc)


# -- building the graph -------------------------------------------------------------------------
def calibration_nodes(config: LabConfig | str | Path) -> list[SequenceNode]:
    """Every node of a station config's ``qnetlab.calibration`` (validated; ConfigError)."""
    lab = config if isinstance(config, LabConfig) else load_config(config)
    return [SequenceNode(spec) for spec in parse_calibration(lab).nodes.values()]


def lab_graph(config: LabConfig | str | Path) -> CalibrationGraph:
    """The validated calibration graph of one lab's station config."""
    lab = config if isinstance(config, LabConfig) else load_config(config)
    return CalibrationGraph(calibration_nodes(lab), source=str(lab.path))


def _shown(value: float, stderr: float, unit: str) -> str:
    """A committed value as the terminal and the reports show it: '8.00004 GHz',
    '10.17 ± 0.41 Hz'."""
    if stderr and math.isfinite(stderr):
        return format_fit(value, stderr, unit)
    return format_value(value, unit)
