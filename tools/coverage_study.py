"""Coverage study of the transducer characterization (issue 13 item 6): are its stated errors
honest on the realistic lab, over seeds and over truths drawn from the calibration constants'
stated errors?

Run from the repository root::

    python tools/coverage_study.py --presets bulk_eo_cw,silicon_cw --seeds 10 --jobs 2 \\
        --out lab_data/coverage

Each bench is the shipped transducer bench (lab_configs/transducer_bench.yaml; for
membrane_eom its locked bench, `PRESET_CONFIGS`) with one preset, its own seed and
``qnetlab.simulation.ideal: false`` (``--ideal``: the clean lab, for comparison). Its
simulated world draws the true line attenuation, output loss, detection efficiency and
cooling coefficient from the config's ``{value, error}`` constants
(docs/simulation.md#calibration-constants-drawn-from-their-errors), and its resonances and
pump delivery drift with lab time. The characterization runs exactly as ``qnetlab
characterize`` runs it (`TransducerCharacterization` through the real drivers, the in-process
VISA backend). Afterwards every reported quantity of a step with a good verdict (the values a
lab would use, as `summary_values` takes them) is compared with what the simulated world
actually had:

* device constants from the world's transducer and fridge (the preset);
* the resonance frequencies as they had drifted while that step measured: the tool samples
  the world before and after every step of every sequence (reading the drift draws nothing
  and changes nothing) and takes the mean over the step's run; the VNA's microwave resonance
  at the time it was measured: the mean over the sweeps whose window held the fitted centre,
  each at its start (the VNA twin takes a sweep's trace at its trigger, then lets the sweep
  time pass), not the mean over a whole scan that may have run for tens of seconds while
  the resonance was swept in one of its segments.

The pull is ``(fitted - truth) / stderr`` with ``stderr`` the combined (stat + sys) error.
Honest errors give pulls whose |pull| < 1 (< 2) in 68.3 % (95.4 %) of the benches; the count
within is Binomial(n, p), and the check is whether it lies inside that binomial's central
99 % (a ~1 % false alarm per check with honest errors).

A quantity a step reports as an upper limit (`LIMITS`: the heating scan's share of the noise
when it does not resolve the heating, piezo_om's case) is compared with its truth as well:
covered when the truth lies below it, and over the benches the covered count must reach the
limit's confidence within Binomial(n, confidence) (its 0.5 % quantile; over-coverage is a
conservative limit, not an error). docs/transducer.md#heating-below-resolution.

Output: (1) one bench's table (truth, fitted, stat, sys, combined, pull per quantity); (2) the
coverage table over every bench (n, within 1 and 2 sigma and their binomial checks, the
median relative error, the median relative stated error), (3) the upper limits' coverage,
and how often each step's verdict was good. ``--out PREFIX`` also writes PREFIX.json (every
bench's numbers) and PREFIX.md. Exit code 0 when at least one quantity has enough pulls to be
checked (n >= ``--min-samples``) and every checked quantity and limit is inside its bounds, 1
otherwise, 2 on a usage error.

The functions (`run_bench`, `pull_rows`, `coverage`, `tables`) are what
tests/test_coverage_study.py exercises; docs/fitting.md#coverage-on-the-realistic-lab.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import io
import json
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

# The tally is a sibling module: importable however this tool is loaded (script, spawned
# worker, or a test's `load_tool`).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _coverage_tally import (
    MIN_SAMPLES,
    ONE_SIGMA,
    TAIL,
    TWO_SIGMA,
    Coverage,
    LimitCoverage,
    accepted,
    accepted_each,
    bench_table,
    coverage_table,
    limit_table,
    markdown_table,
    report_text,
    within_probability,
)

# DriftLog and DriftSample: re-exported, the tests build truths from them
from _coverage_world import DriftLog as DriftLog
from _coverage_world import DriftSample as DriftSample
from _coverage_world import WorldTruth, recording_drift

ROOT = Path(__file__).resolve().parent.parent
BENCH_CONFIG = ROOT / "lab_configs" / "transducer_bench.yaml"
PRESET_CONFIGS = {"membrane_eom": ROOT / "lab_configs" / "membrane_bench.yaml"}
"""Presets whose bench is not the shipped transducer bench: membrane_eom's 3 MHz drifting line
needs the pump locked to the cavity (docs/simulation.md#the-pump-lock). Taken when the study
runs on the default `BENCH_CONFIG`; an explicit ``--config`` is used as given."""
SPEED_OF_LIGHT = 299_792_458.0  # m/s (exact, SI)
FIRST_SEED = 7000
"""Seeds no test uses (tests/test_heating_coverage.py uses 1000-1059)."""


def _optomechanical(t: WorldTruth) -> bool:
    return bool(t.transducer.kind == "optomechanical")


def _pump_power_at_unit_cooperativity(t: WorldTruth) -> float:
    """The efficiency map's C = 1 power, W: the optical cooperativity's, and for an
    optomechanical device the total (C_om = 1 + C_em: tests/test_characterization.py)."""
    m = t.transducer
    scale = 1 + m.em_cooperativity if _optomechanical(t) else 1.0
    return float(m.pump_power_at_unit_cooperativity * scale)


def _eta_max(t: WorldTruth) -> float:
    m = t.transducer
    c_em = m.em_cooperativity
    return float(m.external_efficiency * (c_em / (1 + c_em) if _optomechanical(t) else 1.0))


@dataclass(frozen=True)
class Quantity:
    """One reported quantity: where the characterization reports it and its truth."""

    name: str
    """Name in the tables (unique)."""
    sequence: str
    key: str
    """`AnalysisResult.values` key in that sequence's result."""
    truth: Callable[[WorldTruth], float]
    drifting: str = ""
    """'optical' / 'mw' when the truth drifts with lab time (for the drift column)."""
    truth_at: Callable[[WorldTruth, float], float] | None = None
    """The truth when it depends on where the value was measured (the fitted value given):
    the microwave resonance at the time the VNA swept it. None: `truth`."""
    rectangular: str = ""
    """The analysis detail holding the standard uncertainty of a rectangular (bounded) part
    of the stated error ("": all Gaussian)."""


QUANTITIES: tuple[Quantity, ...] = (
    Quantity("mw resonance", "microwave_resonance_scan", "resonance_frequency",
             lambda t: t.mean_mw("microwave_resonance_scan"), "mw",
             lambda t, f: t.mw_when_swept("microwave_resonance_scan", f)),
    Quantity("mw linewidth", "microwave_resonance_scan", "linewidth",
             lambda t: float(t.transducer.mw_linewidth)),
    Quantity("mw eta_e", "microwave_resonance_scan", "eta_e",
             lambda t: float(t.transducer.mw_coupling_ratio),
             rectangular="eta_e_directivity_error"),
    Quantity("optical resonance", "optical_resonance_scan", "optical_resonance_wavelength",
             lambda t: SPEED_OF_LIGHT / t.mean_optical("optical_resonance_scan"), "optical"),
    Quantity("optical linewidth (scan)", "optical_resonance_scan", "optical_linewidth",
             lambda t: float(t.transducer.optical_linewidth)),
    Quantity("eta_max", "efficiency_map", "eta_max", _eta_max),
    Quantity("pump power at C = 1", "efficiency_map", "pump_power_at_unit_cooperativity",
             _pump_power_at_unit_cooperativity),
    Quantity("cooperativity slope", "efficiency_map", "cooperativity_slope",
             lambda t: 1.0 / _pump_power_at_unit_cooperativity(t)),
    Quantity("optical linewidth (map)", "efficiency_map", "optical_linewidth",
             lambda t: float(t.transducer.optical_linewidth)),
    Quantity("conversion bandwidth", "conversion_bandwidth_scan", "conversion_bandwidth",
             lambda t: float(t.transducer.mw_linewidth)),
    Quantity("conversion centre", "conversion_bandwidth_scan", "conversion_center_frequency",
             lambda t: t.mean_mw("conversion_bandwidth_scan"), "mw"),
    Quantity("N_add intercept", "added_noise_scan", "added_noise_intrinsic",
             lambda t: float(t.transducer.intrinsic_added_noise)),
    Quantity("N_add slope", "added_noise_scan", "added_noise_slope",
             lambda t: float((t.transducer.heating_noise_fast + t.transducer.heating_noise_slow)
                             * t.transducer.absorbed_fraction)),
    Quantity("heating tau_fast", "pump_heating_scan", "heating_tau_fast",
             lambda t: float(t.transducer.heating_tau_fast)),
    Quantity("heating tau_slow", "pump_heating_scan", "heating_tau_slow",
             lambda t: float(t.transducer.heating_tau_slow)),
    Quantity("fridge time constant", "fridge_load_scan", "fridge_time_constant",
             lambda t: float(t.fridge.time_constant)),
    Quantity("absorbed fraction", "fridge_load_scan", "absorbed_fraction",
             lambda t: float(t.transducer.absorbed_fraction)),
)
def _heating_share(t: WorldTruth, details: dict[str, float]) -> float:
    """The true share of the pump heating in the steady noise at the heating scan's end of
    pulse: H / (n_0 + H_steady), H = (k_f c_f + k_s c_s) f P with c = 1 - e^(-pulse / tau)
    (a cold start: the previous cycle's heat only adds to it) and P the pump power the
    device had during the scan (docs/transducer.md#heating-below-resolution)."""
    m = t.transducer
    pulse = float(details.get("pulse_duration", math.inf))
    absorbed = m.absorbed_fraction * t.mean_pump_power("pump_heating_scan")
    charged = [k * (1 - math.exp(-pulse / tau)) for k, tau in (
        (m.heating_noise_fast, m.heating_tau_fast), (m.heating_noise_slow, m.heating_tau_slow))]
    steady = m.heating_noise_fast + m.heating_noise_slow
    return float(sum(charged) * absorbed / (m.intrinsic_added_noise + steady * absorbed))


@dataclass(frozen=True)
class Limit:
    """One reported upper limit: where the characterization reports it (a good step's
    `AnalysisResult.details`) and its truth."""

    name: str
    sequence: str
    key: str
    truth: Callable[[WorldTruth, dict[str, float]], float]
    confidence_key: str
    """The details key of the limit's confidence (e.g. 0.95)."""


LIMITS: tuple[Limit, ...] = (
    Limit("heating share (upper limit)", "pump_heating_scan", "heating_share_upper_limit",
          _heating_share, "heating_limit_confidence"),
)
STEPS = ("microwave_resonance_scan", "optical_resonance_scan", "efficiency_map",
         "conversion_bandwidth_scan", "added_noise_scan", "pump_heating_scan",
         "fridge_load_scan")


# -- one bench ------------------------------------------------------------------------------
@dataclass
class PullRow:
    """One quantity of one bench."""

    name: str
    unit: str
    truth: float
    fitted: float
    stat: float
    sys: float
    stderr: float
    """Combined error, `unit`."""
    pull: float
    """(fitted - truth) / stderr; NaN when stderr is 0, infinite or not a number."""
    rel_error: float
    """|fitted - truth| / |truth|."""
    drift: float = 0.0
    """How far the truth moved while the step measured (drifting quantities), `unit`."""
    rectangular: float = 0.0
    """The standard uncertainty of the rectangular part of `stderr` (`Quantity.rectangular`)."""


def pull_row(quantity: Quantity, value: Any, truth: WorldTruth,
             details: dict[str, Any] | None = None) -> PullRow:
    """The pull of one reported `FitValue` against the world's truth (`details`: the
    analysis', for the rectangular part of the error)."""
    fitted, err = float(value.value), float(value.stderr)
    true = quantity.truth(truth) if quantity.truth_at is None else quantity.truth_at(truth,
                                                                                     fitted)
    pull = (fitted - true) / err if math.isfinite(err) and err > 0 else math.nan
    rel = abs(fitted - true) / abs(true) if true else math.nan
    drift = 0.0
    if quantity.drifting:
        drift = truth.drift_span(quantity.sequence, quantity.drifting)
        if quantity.key == "optical_resonance_wavelength":  # Hz -> m at this wavelength
            drift *= true**2 / SPEED_OF_LIGHT
    rectangular = float((details or {}).get(quantity.rectangular, 0.0)) \
        if quantity.rectangular else 0.0
    return PullRow(quantity.name, str(value.unit), true, fitted, float(value.stat),
                   float(value.sys), err, pull, rel, drift, rectangular)


def pull_rows(analyses: dict[str, Any], truth: WorldTruth) -> list[PullRow]:
    """Every quantity of `QUANTITIES` that a step with a good verdict reported.

    `analyses`: sequence name -> its `AnalysisResult` (or None)."""
    rows = []
    for quantity in QUANTITIES:
        analysis = analyses.get(quantity.sequence)
        if analysis is None or not analysis.verdict.good:
            continue
        value = analysis.values.get(quantity.key)
        if value is not None:
            rows.append(pull_row(quantity, value, truth, getattr(analysis, "details", {})))
    return rows


@dataclass
class LimitRow:
    """One upper limit of one bench."""

    name: str
    truth: float
    limit: float
    confidence: float
    covered: bool
    """truth <= limit."""


def limit_rows(analyses: dict[str, Any], truth: WorldTruth) -> list[LimitRow]:
    """Every limit of `LIMITS` that a step with a good verdict reported."""
    rows = []
    for limit in LIMITS:
        analysis = analyses.get(limit.sequence)
        details = getattr(analysis, "details", {}) if analysis is not None else {}
        if analysis is None or not analysis.verdict.good or limit.key not in details:
            continue
        value = float(details[limit.key])
        true = limit.truth(truth, details)
        rows.append(LimitRow(limit.name, true, value,
                             float(details.get(limit.confidence_key, math.nan)),
                             bool(true <= value)))
    return rows


@dataclass
class BenchResult:
    preset: str
    seed: int
    ideal: bool
    good: bool = False
    verdict: str = ""
    steps: dict[str, str] = field(default_factory=dict)
    """Sequence -> 'good', or its verdict / why it was skipped."""
    rows: list[PullRow] = field(default_factory=list)
    limits: list[LimitRow] = field(default_factory=list)
    """Upper limits (a quantity the bench did not resolve) against the truth."""
    seconds: float = 0.0
    error: str = ""
    """An exception that ended the bench (the study goes on), else ''."""


def bench_config(folder: Path, preset: str, seed: int, ideal: bool,
                 config: Path = BENCH_CONFIG) -> Path:
    """`config` with the preset, seed and lab written to `folder`."""
    from qnetlab.instruments.lab_config import load_config

    lab = load_config(config).with_simulation(transducer=preset, seed=seed, ideal=ideal)
    return Path(lab.to_yaml(folder / f"{preset}_{seed}.yaml").path)


def _step_states(result: Any) -> dict[str, str]:
    out = {}
    for name in STEPS:
        analysis = result.analysis(name)
        if analysis is not None:
            out[name] = "good" if analysis.verdict.good else str(analysis.verdict)
        else:
            out[name] = result.notes.get(name, "did not run")
    return out


def run_bench(preset: str, seed: int, ideal: bool = False, folder: Path | None = None,
              config: Path = BENCH_CONFIG) -> BenchResult:
    """Characterize one simulated bench and compare with its world. `folder` keeps the
    bench's config, database and report (default: a temporary folder, removed)."""
    from qnetlab.instruments.station import load_station
    from qnetlab.sequences.transducer.characterization import TransducerCharacterization
    from qnetlab.sim_instruments.visa_backend import bench_of

    out = BenchResult(preset, seed, ideal)
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="coverage")))
        try:
            path = bench_config(folder, preset, seed, ideal, config)
            with contextlib.redirect_stdout(io.StringIO()):  # the drivers' "Connected to"
                station = load_station(path)
            with station:
                world = bench_of(station.instrument("vna")).world
                with recording_drift(world) as log:
                    result = TransducerCharacterization().run(station, folder / "lab.db",
                                                              quiet=True)
                truth = WorldTruth(world.transducer, world.fridge, log)
            analyses = {name: result.analysis(name) for name in STEPS}
            out.rows = pull_rows(analyses, truth)
            out.limits = limit_rows(analyses, truth)
            out.good, out.verdict, out.steps = result.good, result.verdict, _step_states(result)
        except Exception as exc:  # one broken bench must not end the study: recorded
            out.error = "".join(traceback.format_exception_only(exc)).strip()
            out.verdict = f"error: {out.error}"
    out.seconds = time.perf_counter() - start
    return out


# -- over many benches ----------------------------------------------------------------------
def coverage(benches: Sequence[BenchResult], min_samples: int = MIN_SAMPLES,
             tail: float = TAIL) -> list[Coverage]:
    """Per quantity (in `QUANTITIES` order, those reported at least once); the bounds are
    the binomials' central 1 - 2 `tail`."""
    out = []
    for quantity in QUANTITIES:
        rows = [r for b in benches for r in b.rows if r.name == quantity.name]
        if not rows:
            continue
        finite = [r for r in rows if math.isfinite(r.pull)]
        z = [abs(r.pull) for r in finite]
        n = len(z)
        within1, within2 = sum(x < 1 for x in z), sum(x < 2 for x in z)
        b1, b2 = accepted(n, ONE_SIGMA, tail), accepted(n, TWO_SIGMA, tail)
        expected1, expected2 = ONE_SIGMA, TWO_SIGMA
        if any(r.rectangular > 0 for r in finite):
            p1 = [within_probability(r.stderr, r.rectangular, 1) for r in finite]
            p2 = [within_probability(r.stderr, r.rectangular, 2) for r in finite]
            b1, b2 = accepted_each(p1, tail), accepted_each(p2, tail)
            expected1, expected2 = statistics.mean(p1), statistics.mean(p2)
        rel = [r.rel_error for r in rows if math.isfinite(r.rel_error)]
        rel_err = [r.stderr / abs(r.truth) for r in rows if r.truth and math.isfinite(r.stderr)]
        out.append(Coverage(
            quantity.name, n, within1, within2, b1, b2, checked=n >= min_samples,
            ok1=b1[0] <= within1 <= b1[1], ok2=b2[0] <= within2 <= b2[1],
            median_rel_error=statistics.median(rel) if rel else math.nan,
            median_rel_stderr=statistics.median(rel_err) if rel_err else math.nan,
            median_abs_pull=statistics.median(z) if z else math.nan,
            max_abs_pull=max(z) if z else math.nan, not_finite=len(rows) - n,
            expected1=expected1, expected2=expected2))
    return out


def limit_coverage(benches: Sequence[BenchResult], min_samples: int = MIN_SAMPLES,
                   tail: float = TAIL) -> list[LimitCoverage]:
    """Per limit of `LIMITS` reported at least once."""
    out = []
    for limit in LIMITS:
        rows = [r for b in benches for r in b.limits if r.name == limit.name]
        if not rows:
            continue
        confidence = statistics.median(r.confidence for r in rows)
        n, covered = len(rows), sum(r.covered for r in rows)
        ratios = [r.limit / r.truth for r in rows if r.truth > 0]
        out.append(LimitCoverage(limit.name, n, covered, confidence,
                                 int(stats.binom.ppf(tail, n, confidence)),
                                 n >= min_samples,
                                 statistics.median(ratios) if ratios else math.nan))
    return out


def step_verdicts(benches: Sequence[BenchResult]) -> dict[str, tuple[int, int]]:
    """Sequence -> (benches where its verdict was good, benches that ran without error)."""
    ran = [b for b in benches if not b.error]
    return {name: (sum(b.steps.get(name) == "good" for b in ran), len(ran)) for name in STEPS}


# -- tables ---------------------------------------------------------------------------------
def verdict_table(benches: Sequence[BenchResult]) -> str:
    rows = []
    for name, (good, ran) in step_verdicts(benches).items():
        bad = [b.steps.get(name, "") for b in benches if not b.error and
               b.steps.get(name) != "good"]
        example = bad[0][:110] if bad else ""
        rows.append([name, f"{good}/{ran}", example])
    return markdown_table(["step", "good verdicts", "a bad one"], rows)


def tables(benches: Sequence[BenchResult], example: BenchResult | None = None,
           min_samples: int = MIN_SAMPLES) -> dict[str, Any]:
    """Both tables (markdown) and their numbers (JSON-ready)."""
    example = example or next((b for b in benches if b.rows), benches[0] if benches else None)
    cover = coverage(benches, min_samples)
    limits = limit_coverage(benches, min_samples)
    return {
        "example": None if example is None else {
            "preset": example.preset, "seed": example.seed, "ideal": example.ideal,
            "verdict": example.verdict, "markdown": bench_table(example),
            "rows": [asdict(r) for r in example.rows]},
        "coverage": {"markdown": coverage_table(cover),
                     "rows": [{**asdict(c), "frac1": c.frac1, "frac2": c.frac2, "ok": c.ok}
                              for c in cover]},
        "limits": {"markdown": limit_table(limits),
                   "rows": [{**asdict(c), "ok": c.ok} for c in limits]},
        "verdicts": {"markdown": verdict_table(benches),
                     "counts": {k: list(v) for k, v in step_verdicts(benches).items()}},
        "benches": [asdict(b) for b in benches],
        "checked": [c.name for c in cover if c.checked],
        "ok": any(c.checked for c in cover) and all(c.ok for c in cover)
        and all(c.ok for c in limits),
    }


# -- command line ---------------------------------------------------------------------------
def _run_one(args: tuple[str, int, bool, str, str]) -> BenchResult:
    preset, seed, ideal, config, keep = args
    folder = None
    if keep:
        folder = Path(keep) / f"{preset}_{seed}"
        folder.mkdir(parents=True, exist_ok=True)
    return run_bench(preset, seed, ideal, folder, Path(config))


def run_study(presets: Sequence[str], seeds: int, first_seed: int, ideal: bool, jobs: int,
              config: Path = BENCH_CONFIG,
              progress: Callable[[BenchResult], None] | None = None,
              keep: Path | None = None) -> list[BenchResult]:
    """`seeds` benches per preset, each with its own seed (first_seed, first_seed + 1, ...
    across all presets: no two benches share their drawn constants or drifts). `keep`: a
    folder for each bench's config, database and report (default: temporary, removed)."""
    work = [(preset, first_seed + i * len(presets) + k, ideal,
             str(PRESET_CONFIGS.get(preset, config) if config == BENCH_CONFIG else config),
             "" if keep is None else str(keep))
            for i in range(seeds) for k, preset in enumerate(presets)]
    if jobs <= 1:
        results = []
        for item in work:
            results.append(_run_one(item))
            if progress:
                progress(results[-1])
        return results
    # spawn: each worker imports qnetlab afresh (no forked QCoDeS / VISA state)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = [pool.submit(_run_one, item) for item in work]
        for future in concurrent.futures.as_completed(futures):
            if progress:
                progress(future.result())
        return [f.result() for f in futures]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python tools/coverage_study.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="",
                        help="comma-separated transducer presets (default: all)")
    parser.add_argument("--seeds", type=int, default=5, help="benches per preset (default 5)")
    parser.add_argument("--first-seed", type=int, default=FIRST_SEED,
                        help=f"first bench seed (default {FIRST_SEED})")
    parser.add_argument("--ideal", action="store_true",
                        help="the clean lab (qnetlab.simulation.ideal: true), for comparison")
    parser.add_argument("--jobs", type=int, default=1,
                        help="benches run in parallel processes (default 1)")
    parser.add_argument("--config", type=Path, default=BENCH_CONFIG,
                        help="station YAML of the bench (default the shipped one)")
    parser.add_argument("--min-samples", type=int, default=MIN_SAMPLES,
                        help=f"least pulls for a coverage check (default {MIN_SAMPLES})")
    parser.add_argument("--example", default="",
                        help="PRESET:SEED of table (1) (default the first bench with values)")
    parser.add_argument("--keep", type=Path,
                        help="keep each bench's config, database and report in KEEP/PRESET_SEED")
    parser.add_argument("--out", type=Path,
                        help="write OUT.json (every number) and OUT.md (the tables)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from qnetlab.sim_instruments.physics.presets import PRESETS

    parser = _parser()
    args = parser.parse_args(argv)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()] or sorted(PRESETS)
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(sorted(PRESETS))}")
    if args.seeds < 1 or args.jobs < 1 or args.first_seed < 0:
        parser.error("--seeds and --jobs must be >= 1 and --first-seed >= 0")
    if not args.config.is_file():
        parser.error(f"--config {args.config}: no such file")

    def progress(bench: BenchResult) -> None:
        print(f"{bench.preset} seed {bench.seed}: {len(bench.rows)} values, "
              f"{bench.seconds:.0f} s, {bench.verdict[:100]}", file=sys.stderr, flush=True)

    benches = run_study(presets, args.seeds, args.first_seed, args.ideal, args.jobs,
                        args.config, progress, args.keep)
    example = None
    if args.example:
        preset, _, seed = args.example.partition(":")
        example = next((b for b in benches if b.preset == preset and str(b.seed) == seed),
                       None)
        if example is None:
            parser.error(f"--example {args.example}: no such bench in this study")
    result = tables(benches, example, args.min_samples)
    command = "python tools/coverage_study.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    text = report_text(result, command)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result["command"] = command
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
        args.out.with_suffix(".md").write_text(text)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
