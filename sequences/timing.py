"""Timing calibrations of the detection chain: time-tagger input delays
(`TaggerDelayCalibration`) and AWG channel skew (`AwgSkewCalibration`), both from the
coincidence peak of a common signal (`sequences.fitting.fit_peak`). They store the raw tags and
the settings they started from, so the analysis re-runs on the stored dataset alone.
Derivation and limits: docs/timing.md#4-calibrations-sequencestimingpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.special import ndtr

from qnetlab.instruments.awg import AwgStep, AwgWaveform
from qnetlab.instruments.station import LabStation
from qnetlab.instruments.time_tagger import ungated

from .analysis import Analysis, FitValue, Reason, Verdict
from .curve_analysis import CurveAnalysis, CurveData, Param
from .data import StoredRun
from .fitting import Fit, PeakFit, fit_peak
from .framework import DatasetParameter, LabSequence, Step
from .timetags.storage import TAG_COLUMNS, acquisition_rows, correlate_all, stored_blocks


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


def _marker_train(n_channels: tuple[int, ...], markers_on: tuple[int, ...],
                  period_samples: int) -> list[AwgStep]:
    """One step: markers `markers_on` (from 1) of every channel in `n_channels` high, all at
    once, for a tenth of each period (rising edges at the same programmed sample)."""
    markers = np.zeros((4, period_samples), dtype=bool)
    for m in markers_on:
        markers[m - 1, period_samples // 20: period_samples // 20 + period_samples // 10] = True
    wave = AwgWaveform(np.zeros(period_samples), markers)
    return [AwgStep(dict.fromkeys(n_channels, wave))]


def _settings(run: StoredRun, key: str, column: str) -> dict[int, float]:
    keys = np.asarray(run.data.get(key, []), float)
    values = np.asarray(run.data.get(column, []), float)
    return {int(k): float(v) for k, v in zip(keys, values, strict=False)}


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


class _PeakAnalysis(CurveAnalysis):
    """What both timing analyses share: one curve per input pair (`groups`), the
    coincidence histogram against t_b - t_a, fitted by `fitting.fit_peak` (Poisson
    likelihood, the search for the peak and its window its own); the figure draws the fit
    within 8 peak widths."""

    options_class: ClassVar[type[_CorrelationOptions]]
    counts = True
    params = (Param("pairs"), Param("delay_ps", "ps"), Param("sigma_ps", "ps"),
              Param("background_per_bin"), Param("bin_width_ps", "ps"))
    """The peak's model (`model`); the bin width is fixed (zero variance)."""
    figure_name = "correlation"
    y_label = "pairs per bin"

    def model(self, x: np.ndarray, *p: float) -> np.ndarray:
        pairs, t0, s, background, w = p
        x = np.asarray(x, float)
        return background + pairs * (ndtr((x + w / 2 - t0) / s) - ndtr((x - w / 2 - t0) / s))

    def pair(self, blocks: list[Any], a: int, b: int, options: _CorrelationOptions,
             **extra: Any) -> CurveData:
        """The correlation of inputs a -> b as a curve (x: bin centres, ps)."""
        corr = correlate_all(blocks, a, b, options.range_ps, options.bin_width_ps)
        x = corr.edges_ps[:-1] + 0.5 * (corr.bin_width_ps - 1)
        return CurveData(np.asarray(x, float), np.asarray(corr.counts, float),
                         extra={"corr": corr, "a": a, "b": b, "options": options, **extra})

    def peak_fit(self, data: CurveData, peak: PeakFit) -> Fit:
        """`peak` as a `Fit` (chi2 and dof: `fit_peak`'s Pearson chi2) over the bins within
        8 peak widths, which `data` keeps for the figure. The background is fixed in the fit
        (no variance)."""
        w = float(data.extra["corr"].bin_width_ps)
        p = np.array([peak.pairs, peak.delay_ps, peak.sigma_ps, peak.background_per_bin, w])
        sel = np.abs(data.x - peak.delay_ps) < 8 * peak.sigma_ps
        data.x, data.y = data.x[sel], data.y[sel]
        cov = np.zeros((5, 5))
        if peak.covariance is not None:
            cov[:3, :3] = peak.covariance
        model_y = self.model(data.x, *p)
        return Fit(tuple(x.name for x in self.params), p, cov, peak.chi2_reduced * peak.dof,
                   peak.dof, data.x, data.y, model_y, np.sqrt(np.maximum(model_y, 1.0)),
                   {x.name: x.unit for x in self.params})

    def x_axis(self, data: CurveData) -> tuple[float, float, str]:
        return 0.0, 1.0, f"t{data.extra.get('b', 'b')} - t{data.extra.get('a', 'a')} (ps)"


class TaggerDelayAnalysis(_PeakAnalysis):
    """Relative input delays from the coincidence peaks of a common signal.

    Values ``delay_input<n>`` (s): arrival time at input n minus that at the reference,
    as recorded (hidden delays plus the delay settings); ``jitter_input<n>`` (s): the peak's
    rms width. Proposes ``<tagger>.input<n>.delay`` (s) for every input.
    """

    sequence = "tagger_delay_calibration"
    options_class = TaggerDelayOptions

    def groups(self, run: StoredRun) -> dict[str, CurveData] | Verdict:
        options: TaggerDelayOptions = run.options_as(TaggerDelayOptions)
        blocks = stored_blocks(run)
        enabled = _settings(run, "input", "input_enabled")
        tags = {n: sum(int(np.count_nonzero(b.channels == n)) for b in blocks)
                for n in options.inputs}
        dead = [n for n in options.inputs if tags[n] == 0]
        if dead:
            return Verdict.bad(Reason.NO_SIGNAL, "; ".join(
                f"input {n} recorded no tags" + (
                    " (it was disabled: enable it)" if enabled.get(n, 1.0) == 0.0
                    else " (check its cable, threshold and the signal)") for n in dead))
        ref = options.inputs[0]
        settings = _settings(run, "input", "input_delay_setting")
        return {f"input{n}": self.pair(blocks, ref, n, options, settings=settings)
                for n in options.inputs[1:]}

    def group_title(self, name: str, data: CurveData) -> str:
        return f"inputs {data.extra['a']} -> {data.extra['b']}"

    def fit(self, data: CurveData) -> Fit | Verdict:
        peak = fit_peak(data.extra["corr"], data.extra["options"].peak_window_ps)
        if isinstance(peak, Verdict):
            return peak
        data.extra["peak"] = peak
        return self.peak_fit(data, peak)

    def values(self, fit: Fit, data: CurveData) -> dict[str, FitValue]:
        f: PeakFit = data.extra["peak"]
        return {"delay": FitValue(f.delay_ps * 1e-12, f.delay_stderr_ps * 1e-12, "s"),
                "jitter": FitValue(f.sigma_ps * 1e-12, f.sigma_stderr_ps * 1e-12, "s")}

    def fit_details(self, fit: Fit, data: CurveData) -> dict[str, float]:
        f: PeakFit = data.extra["peak"]
        a, b = data.extra["a"], data.extra["b"]
        return {f"peak_{a}_{b}_ps": f.delay_ps, f"sigma_{a}_{b}_ps": f.sigma_ps,
                f"pairs_{a}_{b}": f.pairs, f"background_{a}_{b}_per_bin": f.background_per_bin,
                f"chi2_reduced_{a}_{b}": f.chi2_reduced, f"error_scale_{a}_{b}": f.error_scale}

    def judge(self, fit: Fit, data: CurveData, values: dict[str, FitValue]) -> Verdict:
        o, a, b = data.extra["options"], data.extra["a"], data.extra["b"]
        bad = _peak_verdict(data.extra["peak"], o.range_ps, o.peak_window_ps,
                            f"inputs {a}-{b}")
        return bad or Verdict.ok(f"input {b} - input {a} = {values[f'delay_input{b}']}")

    def propose_groups(self, values: dict[str, FitValue],
                       groups: dict[str, CurveData]) -> dict[str, float]:
        # Align every input with the latest: new setting = old + (latest - own arrival).
        first = next(iter(groups.values())).extra
        arrival = {first["a"]: 0.0, **{d.extra["b"]: d.extra["peak"].delay_ps
                                       for d in groups.values()}}
        latest = max(arrival.values())
        return {f"{first['options'].tagger}.input{n}.delay":
                first["settings"].get(n, 0.0) + (latest - t) * 1e-12
                for n, t in arrival.items()}


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
        options = self.options
        return [Step(0, "input settings"), *[
            Step(k + 1, f"acquisition {k + 1}/{options.acquisitions} ({options.duration:g} s)",
                 {"duration": options.duration}) for k in range(options.acquisitions)]]

    def prepare(self, station: LabStation) -> None:
        options = self.options
        self._first_tag = 0
        if options.awg is not None:
            awg: Any = station.instrument(options.awg)
            awg.stop()
            awg.sample_rate(options.sample_rate)
            awg.upload_sequence(_marker_train((options.awg_channel,), options.awg_markers,
                                              options.period_samples))
            awg.run()

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        options = self.options
        tagger: Any = station.instrument(options.tagger)
        if step.index == 0:
            chans = tagger.tagger_channels
            return {"input": np.asarray(options.inputs, float),
                    "input_delay_setting": np.asarray([chans[n].delay() for n in options.inputs],
                                                      float),
                    "input_enabled": np.asarray([float(bool(chans[n].enabled()))
                                                 for n in options.inputs])}
        with ungated(tagger, options.inputs):  # the delay histograms need every tag
            rows = acquisition_rows(tagger, options.duration, options.inputs, step.index,
                                    self._first_tag)
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


class AwgSkewAnalysis(_PeakAnalysis):
    """Skew of each AWG channel against the reference, from marker arrival times.

    Values ``skew_ch<n>`` (s): output time of channel n minus that of the reference, as
    played (intrinsic skew plus the skew settings). Proposes ``<awg>.ch<n>.skew`` (s) that
    cancels it, for every channel (the reference keeps its setting).
    """

    sequence = "awg_skew_calibration"
    options_class = AwgSkewOptions

    def groups(self, run: StoredRun) -> dict[str, CurveData] | Verdict:
        options: AwgSkewOptions = run.options_as(AwgSkewOptions)
        blocks = stored_blocks(run)
        outputs = _settings(run, "awg_channel", "output_on")
        enabled = _settings(run, "awg_channel", "input_enabled")
        tags = {n: sum(int(np.count_nonzero(b.channels == n)) for b in blocks)
                for n in options.inputs}
        dead = [(ch, n) for ch, n in zip(options.channels, options.inputs, strict=True)
                if tags[n] == 0]
        if dead:
            why = []
            for ch, n in dead:
                cause = ("its output was off: switch it on" if outputs.get(ch, 1.0) == 0.0
                         else f"tagger input {n} was disabled" if enabled.get(ch, 1.0) == 0.0
                         else f"check the cable to input {n} and its threshold")
                why.append(f"AWG ch{ch} marker {options.marker} showed no edges on input {n} "
                           f"({cause})")
            return Verdict.bad(Reason.NO_SIGNAL, "; ".join(why))
        offsets = options.input_offsets_s or (0.0,) * len(options.inputs)
        skews = _settings(run, "awg_channel", "skew_setting")
        return {f"ch{ch}": self.pair(blocks, options.inputs[0], n, options, ch=ch,
                                     offset=off - offsets[0], skews=skews)
                for ch, n, off in zip(options.channels[1:], options.inputs[1:], offsets[1:],
                                      strict=True)}

    def group_title(self, name: str, data: CurveData) -> str:
        e = data.extra
        return f"AWG ch{e['options'].channels[0]} -> {name} (inputs {e['a']} -> {e['b']})"

    def fit(self, data: CurveData) -> Fit | Verdict:
        """The peak's details are kept, its verdict given, before the skew is a value."""
        o: AwgSkewOptions = data.extra["options"]
        ref_ch, ch, a, b = o.channels[0], data.extra["ch"], data.extra["a"], data.extra["b"]
        peak = fit_peak(data.extra["corr"], o.peak_window_ps)
        if isinstance(peak, Verdict):
            return Verdict.bad(peak.reason or Reason.NO_SIGNAL,
                               f"AWG ch{ref_ch} -> ch{ch}: {peak.detail}")
        data.extra["peak"] = peak
        data.details.update({f"peak_{a}_{b}_ps": peak.delay_ps,
                             f"sigma_{a}_{b}_ps": peak.sigma_ps, f"pairs_{a}_{b}": peak.pairs,
                             f"chi2_reduced_{a}_{b}": peak.chi2_reduced,
                             f"error_scale_{a}_{b}": peak.error_scale})
        bad = _peak_verdict(peak, o.range_ps, o.peak_window_ps, f"AWG ch{ref_ch}-ch{ch}")
        return bad or self.peak_fit(data, peak)

    def values(self, fit: Fit, data: CurveData) -> dict[str, FitValue]:
        # Input b sees the signal `offset` later than the reference input: remove it.
        o: AwgSkewOptions = data.extra["options"]
        skew_ps = data.extra["peak"].delay_ps - data.extra["offset"] * 1e12
        err_ps = math.hypot(data.extra["peak"].delay_stderr_ps,
                            o.input_offset_stderr_s * 1e12)
        return {"skew": FitValue(skew_ps * 1e-12, err_ps * 1e-12, "s")}

    def fit_details(self, fit: Fit, data: CurveData) -> dict[str, float]:
        return dict(data.details)

    def judge(self, fit: Fit, data: CurveData, values: dict[str, FitValue]) -> Verdict:
        ch = data.extra["ch"]
        return Verdict.ok(f"ch{ch} - ch{data.extra['options'].channels[0]} = "
                          f"{values[f'skew_ch{ch}']}")

    def propose_groups(self, values: dict[str, FitValue],
                       groups: dict[str, CurveData]) -> dict[str, float]:
        o: AwgSkewOptions = next(iter(groups.values())).extra["options"]
        skews = next(iter(groups.values())).extra["skews"]
        found = {o.channels[0]: 0.0, **{d.extra["ch"]: values[f"skew_{k}"].value
                                        for k, d in groups.items()}}
        return {f"{o.awg}.ch{ch}.skew": skews.get(ch, 0.0) - s for ch, s in found.items()}


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
        options = self.options
        return [Step(0, "AWG and input settings"), *[
            Step(k + 1, f"acquisition {k + 1}/{options.acquisitions} ({options.duration:g} s)",
                 {"duration": options.duration}) for k in range(options.acquisitions)]]

    def prepare(self, station: LabStation) -> None:
        options = self.options
        self._first_tag = 0
        awg: Any = station.instrument(options.awg)
        awg.stop()
        awg.sample_rate(options.sample_rate)
        awg.upload_sequence(_marker_train(options.channels, (options.marker,),
                                          options.period_samples))
        awg.run()

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        options = self.options
        tagger: Any = station.instrument(options.tagger)
        awg: Any = station.instrument(options.awg)
        if step.index == 0:
            chans, inputs = awg.awg_channels, tagger.tagger_channels
            return {"awg_channel": np.asarray(options.channels, float),
                    "skew_setting": np.asarray([chans[c].skew() for c in options.channels], float),
                    "output_on": np.asarray([float(bool(chans[c].output()))
                                             for c in options.channels]),
                    "input_enabled": np.asarray([float(bool(inputs[n].enabled()))
                                                 for n in options.inputs])}
        with ungated(tagger, options.inputs):  # the delay histograms need every tag
            rows = acquisition_rows(tagger, options.duration, options.inputs, step.index,
                                    self._first_tag)
        self._first_tag += rows["tag"].size
        return rows

    def finish(self, station: LabStation) -> None:
        """Stop the AWG's marker train (also after an interrupted run)."""
        station.instrument(self.options.awg).stop()
