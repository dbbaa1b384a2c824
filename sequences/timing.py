"""Timing calibrations of the detection chain: time-tagger input delays and AWG channel skew.

`TaggerDelayCalibration` records a common signal (the markers of one AWG channel, rising
together, one per tagger input; or any external signal that reaches them at the same
instant), histograms
``t_input - t_reference`` with `sequences.timetags.correlate` and fits the coincidence peak:
its centre is the relative delay of the two inputs. It proposes the input ``delay`` settings
(s) that align every input with the latest one (the ID1000 takes delays >= 0 only).

`AwgSkewCalibration` plays the same marker pattern on several AWG channels at once, each
marker cabled to its own tagger input whose relative delays are known (aligned by a delay
calibration, or given), and fits the arrival-time difference of each channel against a
reference channel: its skew. It proposes the channels' ``skew`` settings (s) that cancel it.

Both store the raw tags (ps from the start of each acquisition) and the instrument settings
they started from, so the analysis re-runs on the stored dataset alone.

The peak fit (`fit_peak`). Timestamps are whole picoseconds, so a bin ``[e, e + w)`` of the
histogram holds the integer delays ``e .. e + w - 1``; as values rounded from a continuous
delay it covers ``[e - 0.5, e + w - 0.5)`` ps. The model per bin is a flat background ``b``
(pairs/bin, estimated from the bins away from the peak and held fixed) plus ``N`` pairs in a
Gaussian of centre ``t0`` and width ``sigma`` integrated over the bin. It is fitted by
Poisson maximum likelihood over a window of +-8 sigma around the peak. Standard errors are
the inverse Fisher information, ``(J^T diag(1/mu) J)^-1``; with no background this is the
familiar ``sigma / sqrt(N)`` for the centre. They are then scaled by ``sqrt(chi2/dof)``
(Pearson, over the bins expecting at least 5 pairs) when that exceeds 1, so a peak that is
not Gaussian widens its error instead of claiming a precision it lacks.

Limits: a periodic common signal (a marker train) gives a peak every period, so the
histogram's half range must stay below half the period (checked when the sequence drives the
AWG itself); the delay found is that of the pulses' rising edges as the tagger's
discriminator sees them; the settings proposed are rounded by the instruments (the ID1000
holds delays in whole ps), which leaves up to 0.5 ps per input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import minimize
from scipy.special import ndtr

from qnetlab.instruments.awg import AwgStep, AwgWaveform
from qnetlab.instruments.station import LabStation

from .analysis import Analysis, AnalysisResult, FitValue, Reason, Verdict
from .data import StoredRun
from .framework import DatasetParameter, LabSequence, Step
from .timetags import Correlation, TagBlock, correlate

PEAK_SIGNIFICANCE = 5.0
"""Pairs in the peak window must exceed the background by this many Poisson deviations."""
MIN_PEAK_PAIRS = 20
"""Fewer coincidences than this in the peak cannot support a fit with a verdict."""
FIT_HALF_WIDTH_SIGMAS = 8.0
"""The fit window: the peak centre +- this many widths."""
MIN_EXPECTED_FOR_CHI2 = 5.0
"""Bins expecting fewer pairs are left out of the Pearson chi2 (it is not chi2-like there)."""


# -- the peak fit -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PeakFit:
    """A fitted coincidence peak. Times in ps."""

    delay_ps: float
    """Peak centre: mean of ``t_B - t_A``, ps."""
    delay_stderr_ps: float
    sigma_ps: float
    """Peak width (rms), ps: the two inputs' jitters added in quadrature."""
    sigma_stderr_ps: float
    pairs: float
    """Fitted coincidences in the peak."""
    background_per_bin: float
    """Pairs per bin away from the peak (fixed in the fit)."""
    chi2_reduced: float
    """Pearson chi2/dof over the bins expecting >= 5 pairs (nan if too few)."""
    error_scale: float
    """Factor applied to the Fisher errors: max(1, sqrt(chi2_reduced))."""


def fit_peak(corr: Correlation, peak_window_ps: int) -> PeakFit | Verdict:
    """Find and fit the coincidence peak of `corr` (see the module docstring).

    `peak_window_ps` is the width of the window searched for the peak (ps), wider than the
    expected peak. Returns a bad `Verdict` (never raises) when there is no peak to fit.
    """
    counts = np.asarray(corr.counts, float)
    w = corr.bin_width_ps
    if corr.tags_a == 0 or corr.tags_b == 0:
        return Verdict.bad(Reason.NO_SIGNAL, f"{corr.tags_a} tags on input {corr.channel_a}, "
                           f"{corr.tags_b} on input {corr.channel_b}")
    lo_edge = corr.edges_ps[:-1].astype(float) - 0.5
    m = max(1, min(int(peak_window_ps // w), counts.size))
    sums = np.convolve(counts, np.ones(m), mode="valid")
    j = int(np.argmax(sums))
    peak = float(sums[j])
    away = np.ones(counts.size, bool)
    away[max(0, j - m):j + 2 * m] = False
    background = float(np.mean(counts[away])) if away.any() else 0.0
    expected = background * m
    if peak - expected <= PEAK_SIGNIFICANCE * math.sqrt(expected + 1.0) \
            or peak - expected < MIN_PEAK_PAIRS:
        return Verdict.bad(Reason.NO_SIGNAL, f"no coincidence peak between inputs "
                           f"{corr.channel_a} and {corr.channel_b}: at most {peak:.0f} pairs "
                           f"in {m * w} ps against {expected:.1f} expected from background "
                           f"({corr.tags_a} and {corr.tags_b} tags)")
    centres = lo_edge + 0.5 * w
    sl = slice(j, j + m)
    excess = np.clip(counts[sl] - background, 0.0, None)
    t_mean = float(np.sum(excess * centres[sl]) / np.sum(excess))
    s0 = math.sqrt(max(float(np.sum(excess * (centres[sl] - t_mean) ** 2) / np.sum(excess)),
                       w * w / 12.0 + 0.25))
    half = max(FIT_HALF_WIDTH_SIGMAS * s0, 5.0 * w)
    sel = (centres >= t_mean - half) & (centres <= t_mean + half)
    lo, c = lo_edge[sel], counts[sel]
    hi = lo + w

    def mu(p: np.ndarray) -> np.ndarray:
        n_pairs, t0, s = p[0] * peak, t_mean + p[1] * s0, p[2] * s0
        return background + n_pairs * (ndtr((hi - t0) / s) - ndtr((lo - t0) / s))

    def nll(p: np.ndarray) -> float:
        model = np.maximum(mu(p), 1e-300)
        return float(np.sum(model - c * np.log(model)))

    try:
        res = minimize(nll, np.array([1.0, 0.0, 1.0]), method="L-BFGS-B",
                       bounds=[(1e-6, 10.0), (-half / s0, half / s0), (0.02, 50.0)])
    except (ValueError, FloatingPointError):
        return Verdict.bad(Reason.POOR_FIT, "the peak fit failed")
    p = res.x
    if not (res.success and np.all(np.isfinite(p))):
        return Verdict.bad(Reason.POOR_FIT, f"the peak fit did not converge ({res.message})")
    # Fisher information of the Poisson likelihood, in physical units (pairs, ps, ps).
    scale = np.array([peak, s0, s0])
    model = mu(p)
    jac = np.empty((c.size, 3))
    for k in range(3):
        dp = np.zeros(3)
        dp[k] = 1e-5 * max(abs(p[k]), 1e-2)
        jac[:, k] = (mu(p + dp) - mu(p - dp)) / (2 * dp[k] * scale[k])
    keep = model > 1e-12
    info = jac[keep].T @ (jac[keep] / model[keep, None])
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        return Verdict.bad(Reason.POOR_FIT, "the peak fit is degenerate")
    err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    valid = model >= MIN_EXPECTED_FOR_CHI2
    dof = int(valid.sum()) - 3
    chi2 = float(np.sum((c[valid] - model[valid]) ** 2 / model[valid]) / dof) if dof > 0 \
        else math.nan
    factor = max(1.0, math.sqrt(chi2)) if math.isfinite(chi2) else 1.0
    return PeakFit(delay_ps=float(t_mean + p[1] * s0), delay_stderr_ps=float(err[1] * factor),
                   sigma_ps=float(p[2] * s0), sigma_stderr_ps=float(err[2] * factor),
                   pairs=float(p[0] * peak), background_per_bin=background,
                   chi2_reduced=chi2, error_scale=factor)


def _peak_verdict(fit: PeakFit, range_ps: int, peak_window_ps: int, what: str
                  ) -> Verdict | None:
    """A bad verdict for an implausible fitted peak, else None."""
    if abs(fit.delay_ps) > range_ps - 3 * fit.sigma_ps:
        return Verdict.bad(Reason.OUT_OF_RANGE, f"{what}: the peak at {fit.delay_ps:.1f} ps "
                           f"is cut by the +-{range_ps} ps histogram; widen range_ps")
    if fit.sigma_ps > peak_window_ps / 2:
        return Verdict.bad(Reason.POOR_FIT, f"{what}: the peak is {fit.sigma_ps:.1f} ps rms, "
                           f"too wide for the {peak_window_ps} ps peak window")
    if not (math.isfinite(fit.delay_stderr_ps) and fit.delay_stderr_ps > 0):
        return Verdict.bad(Reason.POOR_FIT, f"{what}: no finite uncertainty for the peak")
    return None


# -- stored data -------------------------------------------------------------------------------
TAG_COLUMNS = [
    DatasetParameter("tag", "", "Tag index"),
    DatasetParameter("timestamp", "ps", "Tag time from the start of its acquisition", ("tag",)),
    DatasetParameter("tag_input", "", "Tagger input of the tag", ("tag",)),
    DatasetParameter("acquisition", "", "Acquisition the tag belongs to", ("tag",)),
]


def _tag_rows(block: TagBlock, acquisition: int, first: int) -> dict[str, np.ndarray]:
    n = block.timestamps.size
    return {"tag": np.arange(first, first + n, dtype=float),
            "timestamp": block.timestamps.astype(float),
            "tag_input": block.channels.astype(float),
            "acquisition": np.full(n, float(acquisition))}


def _acquisition_rows(tagger: Any, duration: float, inputs: tuple[int, ...],
                      acquisition: int, first: int) -> dict[str, np.ndarray]:
    """One recording of `duration` s, kept to the calibrated `inputs`, as dataset rows
    numbered from tag `first`."""
    block = tagger.acquire(duration)
    keep = np.isin(block.channels, inputs)
    return _tag_rows(TagBlock(block.timestamps[keep], block.channels[keep]), acquisition,
                     first)


def _stored_blocks(run: StoredRun) -> list[TagBlock]:
    """The stored acquisitions as TagBlocks (ps), in acquisition order."""
    ts = np.asarray(run.data.get("timestamp", []), float)
    ch = np.asarray(run.data.get("tag_input", []), float)
    acq = np.asarray(run.data.get("acquisition", []), float)
    out = []
    for a in np.unique(acq):
        sel = acq == a
        t, c = np.rint(ts[sel]).astype(np.int64), np.rint(ch[sel]).astype(np.int16)
        order = np.argsort(t, kind="stable")
        out.append(TagBlock(t[order], c[order]))
    return out


def _correlate_all(blocks: list[TagBlock], a: int, b: int, range_ps: int,
                   bin_width_ps: int) -> Correlation:
    """One histogram summed over independent acquisitions (each starts at 0 ps)."""
    parts = [correlate(blk, a, b, range_ps=range_ps, bin_width_ps=bin_width_ps)
             for blk in blocks]
    if not parts:
        empty = correlate(TagBlock(np.empty(0, np.int64), np.empty(0, np.int16)), a, b,
                          range_ps=range_ps, bin_width_ps=bin_width_ps)
        return empty
    return Correlation(a, b, parts[0].edges_ps, sum((p.counts for p in parts[1:]),
                                                    parts[0].counts.copy()),
                       sum(p.tags_a for p in parts), sum(p.tags_b for p in parts),
                       sum(p.span_ps for p in parts))


def _marker_train(n_channels: tuple[int, ...], markers_on: tuple[int, ...],
                  period_samples: int) -> list[AwgStep]:
    """One step: markers `markers_on` (from 1) of every channel in `n_channels` high, all at
    once, for a tenth of each period (rising edges at the same programmed sample)."""
    markers = np.zeros((4, period_samples), dtype=bool)
    for m in markers_on:
        markers[m - 1, period_samples // 20: period_samples // 20 + period_samples // 10] = True
    wave = AwgWaveform(np.zeros(period_samples), markers)
    return [AwgStep(dict.fromkeys(n_channels, wave))]


def _stored_options(cls: type, run: StoredRun) -> Any:
    """The run's options as `cls` (JSON gave lists where the options hold tuples)."""
    raw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                           for k, v in run.options.items()}
    return cls(**raw)


def _settings(run: StoredRun, key: str, column: str) -> dict[int, float]:
    keys = np.asarray(run.data.get(key, []), float)
    values = np.asarray(run.data.get(column, []), float)
    return {int(k): float(v) for k, v in zip(keys, values, strict=False)}


def _plot_histograms(run: StoredRun, result: AnalysisResult, pairs: list[tuple[int, int]],
                     range_ps: int, bin_width_ps: int, label: str) -> dict[str, Figure]:
    blocks = _stored_blocks(run)
    fig = Figure(figsize=(5 * max(len(pairs), 1), 3.5))
    axes = fig.subplots(1, max(len(pairs), 1), squeeze=False)[0]
    for ax, (a, b) in zip(axes, pairs, strict=False):
        corr = _correlate_all(blocks, a, b, range_ps, bin_width_ps)
        x = corr.edges_ps[:-1] + 0.5 * (corr.bin_width_ps - 1)
        centre = result.details.get(f"peak_{a}_{b}_ps", math.nan)
        sigma = result.details.get(f"sigma_{a}_{b}_ps", math.nan)
        if math.isfinite(centre) and math.isfinite(sigma):
            sel = np.abs(x - centre) < 8 * sigma
            ax.step(x[sel], corr.counts[sel], where="mid", label="pairs")
            pairs_n = result.details.get(f"pairs_{a}_{b}", 0.0)
            xx = np.linspace(centre - 8 * sigma, centre + 8 * sigma, 400)
            ax.plot(xx, pairs_n * corr.bin_width_ps / (sigma * math.sqrt(2 * math.pi))
                    * np.exp(-0.5 * ((xx - centre) / sigma) ** 2), "-", label="fit")
        else:
            ax.step(x, corr.counts, where="mid", label="pairs")
        ax.set_xlabel(f"t{b} - t{a} (ps)")
        ax.set_ylabel("pairs per bin")
        ax.set_title(f"{label} {a} -> {b}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"run {run.run_id}: {result.verdict}", fontsize=8)
    fig.tight_layout()
    return {"correlation": fig}


# -- tagger input delays ---------------------------------------------------------------------
@dataclass(frozen=True)
class _CorrelationOptions:
    """What both timing calibrations share: recordings of a marker train, correlated."""

    duration: float = 0.005
    """Recording time per acquisition, s."""
    acquisitions: int = 1
    """Recordings made (and summed): the steps of the progress bar."""
    range_ps: int = 20_000
    """Half range of the correlation histogram, ps (below half the signal's period)."""
    bin_width_ps: int = 1
    """Histogram bin, ps (the tagger's resolution is 1 ps)."""
    peak_window_ps: int = 500
    """Width searched for the peak, ps: several times the expected jitter."""
    tagger: str = "tagger"
    """The station's time tagger."""
    period_samples: int = 2400
    """Marker period, AWG samples (2400 at 2.5 GS/s: 960 ns)."""
    sample_rate: float = 2.5e9
    """AWG sample rate, Hz."""

    def _check_histogram(self, marker_train: bool) -> None:
        if self.duration <= 0 or self.acquisitions < 1:
            raise ValueError("duration must be > 0 s and acquisitions >= 1")
        if self.range_ps % self.bin_width_ps or self.peak_window_ps > self.range_ps:
            raise ValueError("range_ps must be a multiple of bin_width_ps and >= "
                             "peak_window_ps")
        if marker_train and 2 * self.range_ps * 1e-12 >= \
                self.period_samples / self.sample_rate:
            raise ValueError(f"+-{self.range_ps} ps spans half the marker period "
                             f"({self.period_samples / self.sample_rate:g} s) or more: the "
                             "histogram would hold several peaks")


@dataclass(frozen=True)
class TaggerDelayOptions(_CorrelationOptions):
    """Options of `TaggerDelayCalibration` (times in s unless the name says ps)."""

    inputs: tuple[int, ...] = (1, 2)
    """Tagger inputs that see the common signal; the first is the reference."""
    awg: str | None = "awg"
    """AWG that drives the common signal (a marker train), or None for an external signal."""
    awg_channel: int = 1
    awg_markers: tuple[int, ...] = (1, 2, 3, 4)
    """Markers of `awg_channel` played together (rising edges at the same sample): cable one
    marker per input, or one marker through a splitter."""

    def __post_init__(self) -> None:
        if len(self.inputs) < 2 or len(set(self.inputs)) != len(self.inputs):
            raise ValueError(f"need two or more distinct inputs, got {self.inputs}")
        self._check_histogram(marker_train=self.awg is not None)


class TaggerDelayAnalysis(Analysis):
    """Relative input delays from the coincidence peaks of a common signal.

    Values ``delay_input<n>`` (s): arrival time at input n minus that at the reference,
    as recorded (hidden delays plus the delay settings); ``jitter_input<n>`` (s): the peak's
    rms width. Proposes ``<tagger>.input<n>.delay`` (s) for every input.
    """

    sequence = "tagger_delay_calibration"

    def analyze(self, run: StoredRun) -> AnalysisResult:
        o: TaggerDelayOptions = _stored_options(TaggerDelayOptions, run)
        result = AnalysisResult(self.sequence, run.run_id, {}, Verdict.ok())
        blocks = _stored_blocks(run)
        settings = _settings(run, "input", "input_delay_setting")
        enabled = _settings(run, "input", "input_enabled")
        ref = o.inputs[0]
        tags = {n: sum(int(np.count_nonzero(b.channels == n)) for b in blocks)
                for n in o.inputs}
        dead = [n for n in o.inputs if tags[n] == 0]
        if dead:
            why = "; ".join(f"input {n} recorded no tags" + (
                " (it was disabled: enable it)" if enabled.get(n, 1.0) == 0.0
                else " (check its cable, threshold and the signal)") for n in dead)
            result.verdict = Verdict.bad(Reason.NO_SIGNAL, why)
            return result
        offsets: dict[int, tuple[float, float]] = {ref: (0.0, 0.0)}
        for n in o.inputs[1:]:
            corr = _correlate_all(blocks, ref, n, o.range_ps, o.bin_width_ps)
            fit = fit_peak(corr, o.peak_window_ps)
            if isinstance(fit, Verdict):
                result.verdict = fit
                return result
            bad = _peak_verdict(fit, o.range_ps, o.peak_window_ps, f"inputs {ref}-{n}")
            self._record(result, ref, n, fit)
            if bad is not None:
                result.verdict = bad
                return result
            offsets[n] = (fit.delay_ps, fit.delay_stderr_ps)
        # Align every input with the latest: new setting = old + (latest - own arrival).
        latest = max(t for t, _ in offsets.values())
        result.proposed = {
            f"{o.tagger}.input{n}.delay": settings.get(n, 0.0) + (latest - t) * 1e-12
            for n, (t, _) in offsets.items()}
        result.verdict = Verdict.ok(", ".join(
            f"input {n} - input {ref} = {result.values[f'delay_input{n}']}"
            for n in o.inputs[1:]))
        return result

    @staticmethod
    def _record(result: AnalysisResult, a: int, b: int, fit: PeakFit) -> None:
        result.values[f"delay_input{b}"] = FitValue(fit.delay_ps * 1e-12,
                                                    fit.delay_stderr_ps * 1e-12, "s")
        result.values[f"jitter_input{b}"] = FitValue(fit.sigma_ps * 1e-12,
                                                     fit.sigma_stderr_ps * 1e-12, "s")
        result.details.update({f"peak_{a}_{b}_ps": fit.delay_ps,
                               f"sigma_{a}_{b}_ps": fit.sigma_ps,
                               f"pairs_{a}_{b}": fit.pairs,
                               f"background_{a}_{b}_per_bin": fit.background_per_bin,
                               f"chi2_reduced_{a}_{b}": fit.chi2_reduced,
                               f"error_scale_{a}_{b}": fit.error_scale})

    def plot(self, run: StoredRun, result: AnalysisResult) -> dict[str, Figure]:
        o = run.options
        inputs = list(o.get("inputs", []))
        return _plot_histograms(run, result, [(inputs[0], n) for n in inputs[1:]],
                                int(o.get("range_ps", 20_000)), int(o.get("bin_width_ps", 1)),
                                "inputs")


class TaggerDelayCalibration(LabSequence[TaggerDelayOptions]):
    """Relative delays of time-tagger inputs that see one common signal.

    With ``awg`` set, `prepare` uploads a marker train on ``awg_markers`` of ``awg_channel``,
    all rising at the same sample, and runs it (the sequence stops the AWG after the last
    acquisition); one of those markers (or one split) must reach every input in ``inputs``.
    The markers of one channel share its skew; on hardware with per-marker delays set them
    equal (or use one marker and a splitter), as their differences would be taken for input
    delays. The sequence changes no input setting: enable the
    inputs and set their thresholds first (a disabled input gives a bad verdict naming it).
    """

    name: ClassVar[str] = "tagger_delay_calibration"
    options_class: ClassVar[type] = TaggerDelayOptions
    analysis_class: ClassVar[type[Analysis]] = TaggerDelayAnalysis

    def dataset_parameters(self) -> list[DatasetParameter]:
        return [DatasetParameter("input", "", "Tagger input"),
                DatasetParameter("input_delay_setting", "s", "Input delay setting", ("input",)),
                DatasetParameter("input_enabled", "", "Input enabled (1/0)", ("input",)),
                *TAG_COLUMNS]

    def steps(self) -> list[Step]:
        o = self.options
        return [Step(0, "input settings"), *[
            Step(k + 1, f"acquisition {k + 1}/{o.acquisitions} ({o.duration:g} s)",
                 {"duration": o.duration}) for k in range(o.acquisitions)]]

    def prepare(self, station: LabStation) -> None:
        o = self.options
        self._first_tag = 0
        if o.awg is not None:
            awg: Any = station.instrument(o.awg)
            awg.stop()
            awg.sample_rate(o.sample_rate)
            awg.upload_sequence(_marker_train((o.awg_channel,), o.awg_markers,
                                              o.period_samples))
            awg.run()

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        o = self.options
        tagger: Any = station.instrument(o.tagger)
        if step.index == 0:
            chans = tagger.tagger_channels
            return {"input": np.asarray(o.inputs, float),
                    "input_delay_setting": np.asarray([chans[n].delay() for n in o.inputs],
                                                      float),
                    "input_enabled": np.asarray([float(bool(chans[n].enabled()))
                                                 for n in o.inputs])}
        rows = _acquisition_rows(tagger, o.duration, o.inputs, step.index, self._first_tag)
        self._first_tag += rows["tag"].size
        return rows

    def finish(self, station: LabStation) -> None:
        """Stop the AWG's marker train (also after an interrupted run)."""
        if self.options.awg is not None:
            station.instrument(self.options.awg).stop()


# -- AWG skew ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AwgSkewOptions(_CorrelationOptions):
    """Options of `AwgSkewCalibration` (times in s unless the name says ps)."""

    channels: tuple[int, ...] = (1, 2)
    """AWG channels; the first is the reference."""
    inputs: tuple[int, ...] = (1, 2)
    """The tagger input each channel's marker is cabled to, in the order of `channels`."""
    input_offsets_s: tuple[float, ...] = ()
    """Known arrival offset of each input against the first for a common signal, s, with the
    tagger's present delay settings (empty: the inputs are aligned, e.g. by applying a
    `TaggerDelayCalibration`'s proposal)."""
    input_offset_stderr_s: float = 0.0
    """Standard error of those relative offsets, s (the delay calibration's error plus the
    1 ps rounding of the delay settings); added in quadrature to each skew's error."""
    marker: int = 1
    awg: str = "awg"

    def __post_init__(self) -> None:
        if len(self.channels) < 2 or len(set(self.channels)) != len(self.channels):
            raise ValueError(f"need two or more distinct AWG channels, got {self.channels}")
        if len(self.inputs) != len(self.channels) or len(set(self.inputs)) != len(self.inputs):
            raise ValueError("give one distinct tagger input per AWG channel")
        if self.input_offsets_s and len(self.input_offsets_s) != len(self.inputs):
            raise ValueError("input_offsets_s: one offset per input, or none")
        if self.input_offset_stderr_s < 0:
            raise ValueError("input_offset_stderr_s must be >= 0")
        self._check_histogram(marker_train=True)


class AwgSkewAnalysis(Analysis):
    """Skew of each AWG channel against the reference, from marker arrival times.

    Values ``skew_ch<n>`` (s): output time of channel n minus that of the reference, as
    played (intrinsic skew plus the skew settings). Proposes ``<awg>.ch<n>.skew`` (s) that
    cancels it, for every channel (the reference keeps its setting).
    """

    sequence = "awg_skew_calibration"

    def analyze(self, run: StoredRun) -> AnalysisResult:
        o: AwgSkewOptions = _stored_options(AwgSkewOptions, run)
        result = AnalysisResult(self.sequence, run.run_id, {}, Verdict.ok())
        blocks = _stored_blocks(run)
        skews = _settings(run, "awg_channel", "skew_setting")
        outputs = _settings(run, "awg_channel", "output_on")
        enabled = _settings(run, "awg_channel", "input_enabled")
        tags = {n: sum(int(np.count_nonzero(b.channels == n)) for b in blocks)
                for n in o.inputs}
        dead = [(ch, n) for ch, n in zip(o.channels, o.inputs, strict=True) if tags[n] == 0]
        if dead:
            why = []
            for ch, n in dead:
                cause = ("its output was off: switch it on" if outputs.get(ch, 1.0) == 0.0
                         else f"tagger input {n} was disabled" if enabled.get(ch, 1.0) == 0.0
                         else f"check the cable to input {n} and its threshold")
                why.append(f"AWG ch{ch} marker {o.marker} showed no edges on input {n} "
                           f"({cause})")
            result.verdict = Verdict.bad(Reason.NO_SIGNAL, "; ".join(why))
            return result
        offsets = o.input_offsets_s or (0.0,) * len(o.inputs)
        ref_ch, ref_in = o.channels[0], o.inputs[0]
        found: dict[int, float] = {ref_ch: 0.0}
        for ch, n, off in zip(o.channels[1:], o.inputs[1:], offsets[1:], strict=True):
            corr = _correlate_all(blocks, ref_in, n, o.range_ps, o.bin_width_ps)
            fit = fit_peak(corr, o.peak_window_ps)
            if isinstance(fit, Verdict):
                result.verdict = Verdict.bad(fit.reason or Reason.NO_SIGNAL,
                                             f"AWG ch{ref_ch} -> ch{ch}: {fit.detail}")
                return result
            result.details.update({f"peak_{ref_in}_{n}_ps": fit.delay_ps,
                                   f"sigma_{ref_in}_{n}_ps": fit.sigma_ps,
                                   f"pairs_{ref_in}_{n}": fit.pairs,
                                   f"chi2_reduced_{ref_in}_{n}": fit.chi2_reduced,
                                   f"error_scale_{ref_in}_{n}": fit.error_scale})
            bad = _peak_verdict(fit, o.range_ps, o.peak_window_ps, f"AWG ch{ref_ch}-ch{ch}")
            if bad is not None:
                result.verdict = bad
                return result
            # Input n sees the signal `off` later than the reference input: remove it.
            skew_ps = fit.delay_ps - (off - offsets[0]) * 1e12
            err_ps = math.hypot(fit.delay_stderr_ps, o.input_offset_stderr_s * 1e12)
            result.values[f"skew_ch{ch}"] = FitValue(skew_ps * 1e-12, err_ps * 1e-12, "s")
            found[ch] = skew_ps * 1e-12
        result.proposed = {f"{o.awg}.ch{ch}.skew": skews.get(ch, 0.0) - s
                           for ch, s in found.items()}
        result.verdict = Verdict.ok(", ".join(
            f"ch{ch} - ch{ref_ch} = {result.values[f'skew_ch{ch}']}" for ch in o.channels[1:]))
        return result

    def plot(self, run: StoredRun, result: AnalysisResult) -> dict[str, Figure]:
        o = run.options
        inputs = list(o.get("inputs", []))
        return _plot_histograms(run, result, [(inputs[0], n) for n in inputs[1:]],
                                int(o.get("range_ps", 20_000)), int(o.get("bin_width_ps", 1)),
                                "inputs")


class AwgSkewCalibration(LabSequence[AwgSkewOptions]):
    """Skew of AWG channels measured by the time tagger.

    `prepare` uploads one marker train played by every channel in ``channels`` at the same
    programmed time and runs it (stopped after the last acquisition). The sequence switches
    no output or input on: an output left off (or an input disabled) gives a bad verdict
    naming the channel.
    """

    name: ClassVar[str] = "awg_skew_calibration"
    options_class: ClassVar[type] = AwgSkewOptions
    analysis_class: ClassVar[type[Analysis]] = AwgSkewAnalysis

    def dataset_parameters(self) -> list[DatasetParameter]:
        return [DatasetParameter("awg_channel", "", "AWG channel"),
                DatasetParameter("skew_setting", "s", "Skew setting", ("awg_channel",)),
                DatasetParameter("output_on", "", "Output on (1/0)", ("awg_channel",)),
                DatasetParameter("input_enabled", "", "Its tagger input enabled (1/0)",
                                 ("awg_channel",)),
                *TAG_COLUMNS]

    def steps(self) -> list[Step]:
        o = self.options
        return [Step(0, "AWG and input settings"), *[
            Step(k + 1, f"acquisition {k + 1}/{o.acquisitions} ({o.duration:g} s)",
                 {"duration": o.duration}) for k in range(o.acquisitions)]]

    def prepare(self, station: LabStation) -> None:
        o = self.options
        self._first_tag = 0
        awg: Any = station.instrument(o.awg)
        awg.stop()
        awg.sample_rate(o.sample_rate)
        awg.upload_sequence(_marker_train(o.channels, (o.marker,), o.period_samples))
        awg.run()

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        o = self.options
        tagger: Any = station.instrument(o.tagger)
        awg: Any = station.instrument(o.awg)
        if step.index == 0:
            chans, inputs = awg.awg_channels, tagger.tagger_channels
            return {"awg_channel": np.asarray(o.channels, float),
                    "skew_setting": np.asarray([chans[c].skew() for c in o.channels], float),
                    "output_on": np.asarray([float(bool(chans[c].output()))
                                             for c in o.channels]),
                    "input_enabled": np.asarray([float(bool(inputs[n].enabled()))
                                                 for n in o.inputs])}
        rows = _acquisition_rows(tagger, o.duration, o.inputs, step.index, self._first_tag)
        self._first_tag += rows["tag"].size
        return rows

    def finish(self, station: LabStation) -> None:
        """Stop the AWG's marker train (also after an interrupted run)."""
        station.instrument(self.options.awg).stop()
