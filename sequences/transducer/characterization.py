"""`TransducerCharacterization`: one command from a cold transducer to its operating point.

It runs, in order, sequences that each also run alone (``qnetlab run NAME``), handing each the
results of the ones before:

1. the microwave resonance (`MicrowaveResonanceScan`): a wide VNA scan, and a fine scan
   (one sweep) around the dip it found if the wide one could not resolve it, if the fine
   window fits in the wide one (the wide scan's dip is stitched from sweeps seconds apart,
   so the drift between them would bias it), or if the mode is narrow against its drift
   (`CharacterizationOptions.mw_drift`: the fine scan then runs up and down, and the drift
   it sees joins the centre's and linewidth's errors);
2. the optical resonance (`OpticalResonanceScan`), with the mw tone on its resonance;
3. conversion efficiency against pump power and detuning (`EfficiencyMap`): eta_max, the
   pump power at C = 1, the optical linewidth;
4. the conversion bandwidth (`ConversionBandwidthScan`): efficiency against the mw tone;
5. added noise against pump power by photon counting (`AddedNoiseScan`);
6. pump heating: noise against delay after a pump pulse (`PumpHeatingScan`), and the
   mixing-chamber temperature against pump power (`FridgeLoadScan`);
7. the recommended operating point (`operating_point.recommend`).

A microwave mode narrow against its drift (`needs_recentre`) has the steps that hold the tone
on it for minutes (the efficiency map per pump power, the added-noise scan after each settle)
re-find it first with a quick VNA sweep (`bench.recentre_tone`), as labs do. The heating and
fridge scans leave the tone off; the bandwidth scan sweeps it (up and down).

A step whose result a later step needs and which came out bad stops those later steps (they
are listed in the report as skipped, with the reason), never feeds them a wrong number. Every
run keeps its data in the lab database; the report (HTML + JSON, `sequences.report`) is
written next to it, also when the characterization is interrupted (Ctrl-C re-raises after).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qnetlab.instruments.station import LabStation

from ..analysis import AnalysisResult, FitValue, systematic_shift
from ..framework import LabSequence, RunResult
from ..report import Report, ReportSection
from ..report_provenance import collect_provenance
from ..resonance import MicrowaveResonanceScan
from ..si import format_value
from .added_noise import AddedNoiseScan
from .bandwidth import ConversionBandwidthScan
from .efficiency import LOCKED_DETUNING_STEP, EfficiencyMap
from .fridge_load import FridgeLoadScan
from .heating import PumpHeatingScan
from .heating_limit import added_noise_limit
from .operating_point import EfficiencyModel, LinearModel, OperatingPoint, recommend
from .optical_resonance import OpticalResonanceScan

RECENTRE_LOSS = 1e-3
"""Relative efficiency a drifting microwave mode may take from a tone held on it for a step
before the step re-finds the mode first: 0.1 %, well below the efficiency's ~10 % error, so
the broad modes (MHz) never re-centre and a 20 kHz one always does."""


@dataclass(frozen=True)
class CharacterizationOptions:
    """Options of the whole characterization (SI units)."""

    max_added_noise: float = 1.0
    """N_add threshold (photons, referred to the input) of the operating point."""
    fridge_budget: float = 10e-6
    """Largest average pump power absorbed at the mixing chamber, W (about half the cooling
    power of a dilution unit at 20 mK; docs/transducer.md#3-the-fridge)."""
    mw_search_center: float | None = None
    """Centre of the wide VNA scan, Hz (None: the setup's present mw_frequency)."""
    mw_search_span: float = 100e6
    """Width of the wide VNA scan, Hz."""
    mw_search_points: int = 20001
    """Points of the wide VNA scan: 5 kHz apart over 100 MHz, enough to see a 20 kHz mode."""
    fine_scan_linewidths: float = 20.0
    """Width of the fine VNA scan in linewidths of the mode the wide scan found."""
    mw_drift: float = 3e3
    """Hz, the microwave resonance's expected rms drift over one step of a few minutes (the
    efficiency map's power, the added-noise scan's settle and count). Typical of two-level-
    system spectral diffusion, 1e-7..1e-6 of the frequency over minutes to hours (Burnett et
    al., Nat. Commun. 5, 4119 (2014); Gao et al., APL 92, 152505 (2008)): ~3 kHz at 8 GHz
    over a few minutes. With the mode's linewidth it decides `needs_recentre`."""
    step_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Extra options per step, by sequence name (e.g. {'efficiency_map': {'powers': 7}})."""

    def __post_init__(self) -> None:
        if self.max_added_noise <= 0 or self.fridge_budget <= 0:
            raise ValueError("max_added_noise and fridge_budget must be > 0")
        if self.mw_search_span <= 0 or self.mw_search_points < 20:
            raise ValueError("mw_search_span must be > 0 Hz and mw_search_points >= 20")
        if not (self.mw_drift >= 0 and math.isfinite(self.mw_drift)):
            raise ValueError(f"mw_drift must be a finite >= 0 Hz, got {self.mw_drift!r}")

    def needs_recentre(self, mw_linewidth: float) -> bool:
        """Whether a tone held on a mode `mw_linewidth` Hz wide would lose more than
        `RECENTRE_LOSS` of its efficiency to `mw_drift` (the loss is (2 drift / width)^2)."""
        return bool(mw_linewidth > 0
                    and (2 * self.mw_drift / mw_linewidth) ** 2 > RECENTRE_LOSS)


@dataclass
class CharacterizationResult:
    runs: dict[str, RunResult | None]
    """LabSequence name -> its run (None if skipped; see `notes`)."""
    notes: dict[str, str]
    operating_point: OperatingPoint | None
    good: bool
    verdict: str
    report_html: Path | None = None
    report_json: Path | None = None

    def analysis(self, name: str) -> AnalysisResult | None:
        run = self.runs.get(name)
        return None if run is None else run.analysis


class _Stop(Exception):
    """A step gave no usable result; the later steps that need it are skipped."""


class TransducerCharacterization:
    """The composite of the module docstring. `run` returns a `CharacterizationResult`."""

    name = "transducer_characterization"

    def __init__(self, options: CharacterizationOptions | None = None, **changes: Any) -> None:
        base = options or CharacterizationOptions()
        self.options = dataclasses.replace(base, **changes) if changes else base

    def run(self, station: LabStation, db_path: str | Path, *,
            quiet: bool = False) -> CharacterizationResult:
        if station.setup is None:
            raise ValueError(f"{station.lab_config.path} has no qnetlab.transducer_setup: the "
                             "characterization needs one (pump laser, mw source, VNA, power "
                             "meter, fridge and a detector channel)")
        db_path = Path(db_path)
        state = _State(station, db_path, quiet, self.options)
        try:
            state.run_all()
        except BaseException as exc:  # also on Ctrl-C: the report covers what was measured
            _write_report(station, db_path, state, exc)
            raise
        return _write_report(station, db_path, state, None)


def _write_report(station: LabStation, db_path: Path, state: _State,
                  stop: BaseException | None) -> CharacterizationResult:
    """The result and its report; when `stop` ends the characterization, the report's path
    goes onto it as a note (``report: PATH``), and a report that cannot be written does not
    hide `stop`."""
    result = state.result()
    try:
        report = _report(station, db_path, result, state)
        result.report_html, result.report_json = report.write()
    except Exception as exc:
        if stop is None:
            raise
        stop.add_note(f"the report could not be written: {type(exc).__name__}: {exc}")
        return result
    if stop is not None:
        stop.add_note(f"report: {result.report_html}")
    return result


_ORDER = ("microwave_resonance_scan", "optical_resonance_scan", "efficiency_map",
          "conversion_bandwidth_scan", "added_noise_scan", "pump_heating_scan",
          "fridge_load_scan")


class _State:
    """The steps of one characterization and what they found."""

    def __init__(self, station: LabStation, db_path: Path, quiet: bool,
                 options: CharacterizationOptions) -> None:
        self.station, self.db_path, self.quiet, self.options = station, db_path, quiet, options
        self.runs: dict[str, RunResult | None] = {}
        self.notes: dict[str, str] = {}
        self.coarse_mw: RunResult | None = None
        self.operating_point: OperatingPoint | None = None

    # -- running ----------------------------------------------------------------------------
    def _acquire(self, sequence: LabSequence[Any], key: str | None = None) -> RunResult:
        """Run one sequence; when it raises (Ctrl-C, a bug) its saved run still goes into
        the report, under `key` (default: the sequence's name)."""
        key = key or sequence.name
        try:
            return sequence.run(self.station, self.db_path, quiet=self.quiet)
        except BaseException:
            run = sequence.last_run
            if run is not None:  # its points are saved: the report shows them
                self.runs[key] = run
                if run.analysis_interrupted:
                    self.notes[key] = (f"{key} run {run.run_id}: measured, analysis "
                                       f"interrupted; re-run with qnetlab analyze "
                                       f"{run.run_id} --db {self.db_path}")
            raise

    def _run(self, sequence: LabSequence[Any]) -> AnalysisResult:
        run = self._acquire(sequence)
        self.runs[sequence.name] = run
        analysis = run.analysis
        if analysis is None or not analysis.verdict.good:
            raise _Stop(f"{sequence.name} run {run.run_id}: {_verdict_text(run)}")
        return analysis

    def _make(self, cls: type[LabSequence[Any]], **values: Any) -> LabSequence[Any]:
        extra = self.options.step_options.get(cls.name, {})
        return cls(**{**values, **extra})

    def run_all(self) -> None:
        setup = self.station.setup
        assert setup is not None
        try:
            mw = self._microwave()
            f0, kappa = mw.values["resonance_frequency"], mw.values["linewidth"]
            setup.mw_frequency(f0.value)
            optical = self._run(self._make(OpticalResonanceScan, mw_frequency=f0.value))
            setup.optical_resonance_wavelength(
                optical.proposed["optical_resonance_wavelength"])
            width = optical.values.get("optical_linewidth")  # absent if not resolved
        except _Stop as stop:
            self._skip(_ORDER[len(self.runs):], str(stop))
            return
        measured: dict[str, AnalysisResult] = {}
        # A pump locked to the resonance tunes finer than the laser's steps.
        step = LOCKED_DETUNING_STEP if getattr(setup, "pump_lock", None) is not None else 0.0
        recentre = self.options.needs_recentre(kappa.value)
        for cls, values in (
            (EfficiencyMap, {"mw_frequency": f0.value, "mw_frequency_stderr": f0.stderr,
                             "mw_linewidth": kappa.value, "detuning_step": step,
                             "optical_linewidth": 0.0 if width is None else width.value,
                             "recentre": recentre}),
            (ConversionBandwidthScan, {"center": f0.value, "span": 6 * kappa.value}),
            (AddedNoiseScan, {"mw_frequency": f0.value, "mw_linewidth": kappa.value,
                              "mw_linewidth_stderr": kappa.stderr, "recentre": recentre}),
            (PumpHeatingScan, {}),
            (FridgeLoadScan, {}),
        ):
            try:
                measured[cls.name] = self._run(self._make(cls, **values))
            except _Stop as stop:
                self.notes[cls.name] = str(stop)
        self._recommend(measured)

    def _microwave(self) -> AnalysisResult:
        """Wide scan, then a fine scan around the dip the wide one found."""
        options, setup = self.options, self.station.setup
        assert setup is not None
        center = options.mw_search_center if options.mw_search_center is not None \
            else setup.mw_frequency()
        wide = MicrowaveResonanceScan(center=center, span=options.mw_search_span,
                                      points=options.mw_search_points, segments=10)
        run = self._acquire(wide)
        found = run.analysis.values.get("resonance_frequency") if run.analysis else None
        width = run.analysis.values.get("linewidth") if run.analysis else None
        if found is None or width is None or not (found.value > 0 and width.value > 0):
            self.runs["microwave_resonance_scan"] = run
            raise _Stop(f"microwave_resonance_scan run {run.run_id}: no resonance in "
                        f"{center / 1e9:.4g} GHz +- {options.mw_search_span / 2e6:.4g} MHz "
                        f"({run.analysis.verdict if run.analysis else 'no data'})")
        narrow = options.needs_recentre(width.value)
        fine_span = options.fine_scan_linewidths * width.value
        # The wide scan is stitched from sweeps seconds apart (2 s each by default), and a
        # dip it found in two of them shows the drift between them as a shift of its centre
        # (about half of it) and of its width (about all of it), which no fit error holds:
        # a dip the fine window can hold is measured again in one short sweep (0.4 s).
        # Only modes too wide for that (fine window wider than the wide one) keep the wide
        # fit; their width dwarfs a drift of a few hundred Hz.
        refine = fine_span <= options.mw_search_span
        if run.analysis is not None and run.analysis.verdict.good and not narrow \
                and not refine:
            self.runs["microwave_resonance_scan"] = run
            return run.analysis
        # Found but not resolved well enough, stitched, or narrow against its drift: zoom in
        # on it, in one sweep so that the whole dip is measured at one time.
        self.coarse_mw = run
        fine = MicrowaveResonanceScan(center=found.value, span=fine_span,
                                      points=401, segments=1)
        if narrow:
            # Up, then down (one sweep each, 0.4 s): the drift shows as their difference.
            fine = MicrowaveResonanceScan(dataclasses.replace(fine.options, passes=2))
        return self._run(fine)

    def _skip(self, names: tuple[str, ...], why: str) -> None:
        for name in names:
            self.runs.setdefault(name, None)
            self.notes.setdefault(name, f"skipped: {why}")

    def _recommend(self, measured: dict[str, AnalysisResult]) -> None:
        needed = ("efficiency_map", "added_noise_scan", "fridge_load_scan")
        missing = [n for n in needed if n not in measured]
        if missing:
            self.notes["operating_point"] = ("no recommendation: no good result from "
                                             + ", ".join(missing))
            return
        eff, noise, fridge = (measured[n] for n in needed)
        efficiency = EfficiencyModel(
            eff.values["low_power_slope"].value, eff.values["cooperativity_slope"].value,
            covariance=_covariance(eff))
        added = LinearModel(noise.values["added_noise_intrinsic"].value,
                            noise.values["added_noise_slope"].value,
                            noise.values["added_noise_intrinsic"].stderr,
                            noise.values["added_noise_slope"].stderr)
        frac = fridge.values["absorbed_fraction"]
        absorbed = LinearModel(0.0, frac.value, 0.0, frac.stderr)
        # Only where both efficiency and noise were measured: no extrapolation.
        ranges = [_measured_powers(eff, "map"), _measured_powers(noise, "added_noise")]
        low, high = max(r[0] for r in ranges), min(r[1] for r in ranges)
        if not low < high:
            self.notes["operating_point"] = (
                f"no recommendation: the efficiency map ({ranges[0][0]:.3g}-{ranges[0][1]:.3g} "
                f"W) and the noise scan ({ranges[1][0]:.3g}-{ranges[1][1]:.3g} W) share no "
                "pump-power range")
            return
        def best_power(added: LinearModel, absorbed: LinearModel) -> OperatingPoint:
            return recommend(efficiency, added, absorbed, pump_range=(low, high),
                             max_added_noise=self.options.max_added_noise,
                             fridge_budget=self.options.fridge_budget)

        point = best_power(added, absorbed)
        if point.found:
            point = dataclasses.replace(point, pump_power_sys=_pump_power_sys(
                best_power, added, frac, noise.values["added_noise_intrinsic"]))
        heating = measured.get("pump_heating_scan")
        if point.found and heating is not None:  # an unresolved heating: its limit, not 0
            point = dataclasses.replace(point, heating_upper_limit=added_noise_limit(
                heating.details, added, point.pump_power))
        self.operating_point = point

    # -- the outcome --------------------------------------------------------------------------
    def result(self) -> CharacterizationResult:
        bad = [name for name in _ORDER if name in self.runs
               and (self.runs[name] is None or self.runs[name].analysis is None  # type: ignore[union-attr]
                    or not self.runs[name].analysis.verdict.good)]  # type: ignore[union-attr]
        bad += [name for name in _ORDER if name not in self.runs and name in self.notes]
        point = self.operating_point
        if bad:
            verdict = "bad: " + "; ".join(
                self.notes.get(n) or f"{n}: {_verdict_text(self.runs.get(n))}" for n in bad)
        elif point is None:
            verdict = "incomplete: " + "; ".join(self.notes.values())
        elif not point.found:
            verdict = f"measured; no operating point: {point.reason}"
        else:
            verdict = (f"good: operate at {point.pump_power * 1e3:.3g} mW pump "
                       f"(eta {point.efficiency:.3g}, N_add {point.added_noise:.3g}, absorbed "
                       f"{format_value(float(f'{point.absorbed_power:.3g}'), 'W')}; limited "
                       f"by {point.limited_by})")
            if math.isfinite(point.heating_upper_limit):
                verdict += (f"; pump heating not resolved: at most "
                            f"{point.heating_upper_limit:.2g} photons of that N_add (95 %)")
        complete = not bad and all(n in self.runs for n in _ORDER)
        return CharacterizationResult(dict(self.runs), dict(self.notes), point,
                                      good=complete and point is not None and point.found,
                                      verdict=verdict)


def _pump_power_sys(best_power: Callable[[LinearModel, LinearModel], OperatingPoint],
                    added: LinearModel, fraction: FitValue, intrinsic: FitValue) -> float:
    """The recommended pump power's systematic error (W): the recommendation re-run with the
    absorbed fraction (the fridge's cooling coefficient) and the added noise's scale (the
    detection efficiency, the line losses) each shifted by its systematic error, the shifts
    added in quadrature (docs/fitting.md#systematic-uncertainty). A shift that leaves no
    operating point makes it infinite."""
    def power(point: OperatingPoint) -> float:
        return point.pump_power if point.found else math.inf

    def at_fraction(f: float) -> float:
        return power(best_power(added, LinearModel(0.0, f, 0.0, fraction.stderr)))

    def at_noise_scale(scale: float) -> float:
        return power(best_power(dataclasses.replace(
            added, intercept=added.intercept * scale, slope=added.slope * scale),
            LinearModel(0.0, fraction.value, 0.0, fraction.stderr)))

    noise_rel = intrinsic.sys / abs(intrinsic.value) if intrinsic.value else 0.0
    shifts = (systematic_shift(at_fraction, fraction.value, fraction.sys),
              systematic_shift(at_noise_scale, 1.0, noise_rel))
    return math.hypot(*shifts) if all(math.isfinite(x) for x in shifts) else math.inf


def _verdict_text(run: RunResult | None) -> str:
    if run is None:
        return "did not run"
    if run.analysis is not None:
        return str(run.analysis.verdict)
    if run.analysis_interrupted:
        return (f"measured, analysis interrupted; re-run with qnetlab analyze {run.run_id} "
                f"--db {run.db_path}")
    if run.stopped_at is None:
        return f"measured ({run.points} points), not analyzed"
    where = run.stopped_at
    return f"no data (stopped at {where.get('label', '?')}: {where.get('cause', '?')})"


def _covariance(result: AnalysisResult) -> tuple[tuple[float, float], tuple[float, float]]:
    """Covariance of (s, c) with the combined errors on the diagonal: the fit's correlation
    is between the statistical parts (the systematic scale error moves s alone)."""
    s, c = result.values["low_power_slope"], result.values["cooperativity_slope"]
    rho = result.details.get("correlation_low_power_slope_cooperativity_slope", 0.0)
    cross = rho * s.stat * c.stat
    return ((s.stderr**2, cross), (cross, c.stderr**2))


def _measured_powers(result: AnalysisResult, table: str) -> tuple[float, float]:
    """The pump-power range (W) a run measured, from its result table."""
    column = next((values for name, values in result.tables.get(table, {}).items()
                   if name.startswith("pump_power")), [])
    powers = [p for p in column if p is not None and p > 0]
    if not powers:
        raise KeyError(f"{result.sequence} run {result.run_id}: no pump powers in its "
                       f"'{table}' table")
    return min(powers), max(powers)


_SUMMARY = (
    ("microwave_resonance_scan", "resonance_frequency", "mw resonance"),
    ("microwave_resonance_scan", "linewidth", "mw linewidth"),
    ("optical_resonance_scan", "optical_resonance_wavelength", "optical resonance"),
    ("efficiency_map", "eta_max", "eta_max"),
    ("efficiency_map", "pump_power_at_unit_cooperativity", "pump power at C = 1"),
    ("efficiency_map", "cooperativity_slope", "cooperativity slope"),
    ("efficiency_map", "optical_linewidth", "optical linewidth"),
    ("conversion_bandwidth_scan", "conversion_bandwidth", "conversion bandwidth"),
    ("added_noise_scan", "added_noise_intrinsic", "N_add (P -> 0)"),
    ("added_noise_scan", "added_noise_slope", "N_add slope"),
    ("pump_heating_scan", "heating_tau_fast", "heating tau fast"),
    ("pump_heating_scan", "heating_tau_slow", "heating tau slow"),
    ("fridge_load_scan", "fridge_time_constant", "fridge time constant"),
    ("fridge_load_scan", "absorbed_fraction", "absorbed pump fraction"),
)


def summary_values(result: CharacterizationResult) -> dict[str, FitValue]:
    """The headline values of a characterization (good runs only), by label."""
    out: dict[str, FitValue] = {}
    for name, key, label in _SUMMARY:
        analysis = result.analysis(name)
        if analysis is not None and analysis.verdict.good and key in analysis.values:
            out[label] = analysis.values[key]
    return out


def _report(station: LabStation, db_path: Path, result: CharacterizationResult,
            state: _State) -> Report:
    summary: dict[str, FitValue | float | str] = dict(summary_values(result))
    point = result.operating_point
    if point is not None and point.found:
        summary["recommended pump power"] = FitValue.combined(point.pump_power, 0.0,
                                                              point.pump_power_sys, "W")
        summary["efficiency there"] = FitValue(point.efficiency, point.efficiency_stderr)
        summary["N_add there"] = FitValue(point.added_noise, point.added_noise_stderr)
        summary["absorbed power there"] = FitValue(point.absorbed_power,
                                                   point.absorbed_power_stderr, "W")
        if math.isfinite(point.heating_upper_limit):
            summary["unresolved pump heating there (95 % upper limit)"] = (
                f"< {point.heating_upper_limit:.2g} photons (inside N_add)")
    sections = []
    if state.coarse_mw is not None:
        sections.append(ReportSection("microwave resonance, wide scan", state.coarse_mw))
    for name in _ORDER:
        if name in result.runs or name in result.notes:
            sections.append(ReportSection(name.replace("_", " "), result.runs.get(name),
                                          result.notes.get(name, "")))
    return Report(
        title=f"Transducer characterization: {Path(station.lab_config.path).name} "
              f"(profile {station.profile})",
        db_path=db_path, good=result.good, verdict=result.verdict, summary=summary,
        sections=sections,
        extra={"operating_point": None if point is None else point.to_json(),
               "options": dataclasses.asdict(state.options), "step_notes": result.notes},
        provenance=collect_provenance(
            station.lab_config.path, profile=station.profile,
            seed=(station.lab_config.simulation or {}).get("seed")
            if station.profile == "sim" else None),
    )
