"""The link's calibrations (scope "link"), measured through the heralding station's
`TimeTagger` role: where each arm's photons arrive, and the heralding.

`ArmDelayCalibration` (``link.arm_delay_<node>``) records the tagger (sync + both detectors),
histograms each detector's clicks against the sync tag of the round they could come from
(`arrival_offsets`: the sync nearest ``click - nominal delay``, the nominal from the spool's
labelled length), and fits the peak (`sequences.fitting.fit_peak`, the timing calibrations'
Poisson fit): the centre on detector d is that arm's window centre ``offsets_ps[d][arm]``.
With equal arms both nodes' photons share one peak, and both arms get it; unequal arms search
only halfway to each other's nominal delay.
`HeraldingCalibration` (``link.heralding``) runs the station's `HeraldEngine` on a recording
with the calibrated windows and compares the measured success probability with what the
calibrated parts predict (`link_values.expected_link`, with its propagated error), so a
disagreement is bad data that diagnosis walks back from.

Both run under either profile: the tagger is the station lab's (`StationTagger`); what they
commit is what a real bench measures. Nothing here imports `sim_instruments`.
What each measures, commits and holds in spec: docs/calibration_graph.md#5-the-network-lab.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq
from scipy.special import ndtr

from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.tag_blocks import TagBlock, first_out_of_order
from qnetlab.instruments.time_tagger import TimeTagger, ungated
from qnetlab.network.link_model import FIBRE_DELAY_S_PER_KM

from ..analysis import Verdict
from ..fitting import PeakFit, fit_peak
from ..timetags.correlation import Correlation
from .graph import (
    CalibrationContext,
    CalibrationNode,
    CalibrationOutcome,
    CheckOutcome,
    DataResult,
)
from .link_values import (
    DETECTORS,
    LINK_SCOPE,
    STATION_SCOPE,
    LinkExpectation,
    MissingCalibration,
    arm_delay_name,
    calibrated_parts,
    expected_link,
    herald_windows,
)

if TYPE_CHECKING:
    from qnetlab.network.network_config import NetworkConfig

Z = 4.0
"""Standard errors a measurement may stray before it disagrees (two-sided 6e-5 per check)."""


# -- the station's tagger -------------------------------------------------------------------------
class StationTagger:
    """The station's `TimeTagger` for the link's calibrations: the instrument
    ``station.tagger`` of the station opened for `scope` (network_lab gives the link scope the
    station lab, with the simulated link behind its twins in the sim profile)."""

    def __init__(self, config: NetworkConfig, scope: str = LINK_SCOPE) -> None:
        self.config, self.scope = config, scope

    def get(self, ctx: CalibrationContext) -> TimeTagger:
        name = self.config.station.tagger
        tagger = ctx.station(self.scope).instrument(name)
        if not isinstance(tagger, TimeTagger):
            raise TypeError(f"{self.config.station.lab.name}: instrument {name!r} is a "
                            f"{type(tagger).__name__}, not a TimeTagger: name the station's "
                            "time tagger in station.tagger")
        return tagger

    def record(self, ctx: CalibrationContext, duration: float) -> TagBlock | str:
        """`duration` s of sync and detector tags (the inputs enabled for the recording and
        put back after), or why there is no usable recording."""
        tagger = self.get(ctx)
        station = self.config.station
        inputs = [station.sync_input, *station.detector_inputs]
        # ungated: the arrival histograms need the whole period (a station leaves its gates)
        with _enabled(tagger, inputs), ungated(tagger, inputs):
            block = tagger.acquire(duration)
        if block.overflow:
            lost = "" if block.lost_tags is None else f" ({block.lost_tags} tags)"
            return (f"the tagger dropped tags{lost} in the {duration:g} s recording: a rate "
                    "above its link's: lower the rates or record shorter")
        # Both calibrations pair clicks with syncs by time: a stream out of order would pair
        # them wrongly without a sign, so it is refused here, naming where.
        k = first_out_of_order(block.timestamps, -1)
        if k >= 0:
            return (f"the tagger's {duration:g} s recording is not in time order: tag {k} "
                    f"({int(block.timestamps[k])} ps) follows "
                    f"{int(block.timestamps[k - 1]) if k else -1} ps; the transfer reordered "
                    "or corrupted it: record again, and check the tagger's data link")
        return block


@contextmanager
def _enabled(tagger: TimeTagger, inputs: Iterable[int]) -> Iterator[None]:
    """Enable `inputs` of `tagger` for the block; put each back as it was, however it ends."""
    saved = []
    try:
        for n in inputs:
            channel = tagger.tagger_channels[n]
            saved.append((channel, channel.enabled()))
            channel.enabled(True)
        yield
    finally:
        for channel, was in reversed(saved):
            channel.enabled(was)


# -- arrival histograms ---------------------------------------------------------------------------
def arrival_offsets(timestamps: NDArray[np.int64], channels: NDArray[np.integer[Any]],
                    sync_input: int, detector_input: int, nominal_ps: int,
                    half_range_ps: int) -> tuple[NDArray[np.int64], int, int]:
    """Each click's time after the sync tag it could come from: the first sync at or after
    ``click - nominal - half_range``, kept when the offset lies in ``nominal +- half_range``
    ([lo, hi)). Returns (offsets ps, sync tags, clicks). A periodic clock makes the offset
    known only modulo its period: keep `half_range_ps` at most half the round period, and the
    nominal within it of the truth."""
    ts = np.asarray(timestamps, np.int64)
    ch = np.asarray(channels)
    syncs = ts[ch == sync_input]
    clicks = ts[ch == detector_input]
    lo = clicks - nominal_ps - half_range_ps
    i = np.searchsorted(syncs, lo, side="left")
    inside = i < syncs.size
    offsets = clicks[inside] - syncs[i[inside]]
    keep = (offsets >= nominal_ps - half_range_ps) & (offsets < nominal_ps + half_range_ps)
    return offsets[keep], int(syncs.size), int(clicks.size)


def arrival_search_range(nominal: float, others: Iterable[float], window: float,
                         round_period: float, wanted: float | None = None) -> float:
    """s each side of an arm's `nominal` arrival (s after the sync) to search for its peak:
    `wanted`, or generous (5 % of the light time, 50 ns at least), but never more than half
    a round (the sync clock is periodic: a wider search would see the next round's peak),
    and, when another arm's photons arrive well apart (`others`: their nominal arrivals,
    more than 4 `window`s away) but within reach, only halfway to them, so the fit cannot
    take their peak for this arm's."""
    reach = max(50e-9, 0.05 * nominal) if wanted is None else wanted
    apart = [abs(other - nominal) / 2 for other in others
             if abs(other - nominal) > 4 * window]
    return min(reach, 0.5 * round_period, *apart)


def fit_arrival(offsets: NDArray[np.int64], syncs: int, clicks: int, *, sync_input: int,
                detector_input: int, nominal_ps: int, half_range_ps: int, bin_ps: int = 10,
                peak_window_ps: int = 1000) -> PeakFit | Verdict:
    """The arrival peak of `offsets` (`arrival_offsets`), histogrammed in `bin_ps` bins over
    ``nominal +- half_range`` and fitted by `fitting.fit_peak` (a Gaussian on a flat
    background, Poisson likelihood); a bad Verdict when there is no peak."""
    half = (half_range_ps // bin_ps) * bin_ps
    edges = np.arange(nominal_ps - half, nominal_ps + half + bin_ps, bin_ps, dtype=np.int64)
    counts, _ = np.histogram(offsets, edges)
    span = int(offsets.max() - offsets.min()) if offsets.size else 0
    corr = Correlation(sync_input, detector_input, edges, counts.astype(np.int64), syncs,
                       clicks, span)
    return fit_peak(corr, peak_window_ps)


ARRIVAL_RESAMPLES = 10
"""Bootstrap resamples of an arrival fit's clicks for its error (each a fit: 5 ms on a quiet
host, 15 ms beside the simulated world; the error's own uncertainty ~25 %)."""


def arrival_error(fit: PeakFit, offsets: NDArray[np.int64], syncs: int, clicks: int, *,
                  sync_input: int, detector_input: int, nominal_ps: int, half_range_ps: int,
                  bin_ps: int = 10, seed: int = 0,
                  resamples: int = ARRIVAL_RESAMPLES) -> float:
    """ps: the error of `fit` (`fit_arrival` of `offsets`): the larger of the fit's own and
    the scatter of the fit over `resamples` bootstrap resamples of the clicks. The fit's own
    assumes a Gaussian peak; a transducer's photon arrives as an exponential edge, and on it
    that error came out 2-9 times smaller than the scatter of repeated measurements
    (docs/bridge.md#per-path-calibrations)."""
    rng = np.random.default_rng(seed)
    again = [fit_arrival(rng.choice(offsets, offsets.size), syncs, clicks,
                         sync_input=sync_input, detector_input=detector_input,
                         nominal_ps=nominal_ps, half_range_ps=half_range_ps, bin_ps=bin_ps)
             for _ in range(resamples)]
    delays = [f.delay_ps for f in again if not isinstance(f, Verdict)]
    spread = float(np.std(delays, ddof=1)) if len(delays) > 1 else 0.0
    return max(fit.delay_stderr_ps, spread)


@dataclass(frozen=True)
class _Peak:
    delay: float
    """s after the round's sync tag."""
    error: float
    """s, standard error of `delay`."""
    spread: float
    """s rms."""
    clicks: float
    """Fitted clicks in the peak."""


class ArmDelayCalibration(CalibrationNode):
    """``link.arm_delay_<node>`` (module docstring). Times in s unless named ps."""

    def __init__(self, node: str, config: NetworkConfig, tagger: StationTagger, *,
                 duration: float = 1.0, check_duration: float = 1.0,
                 search_range: float | None = None, bin_width: float = 10e-12,
                 max_acceptance_loss: float = 1e-3, depends_on: Iterable[str] = (),
                 timeout: float = 6 * 3600.0, name: str | None = None) -> None:
        super().__init__(name or f"link.arm_delay_{node}", scope=LINK_SCOPE,
                         depends_on=depends_on, timeout=timeout,
                         description=f"where {node}'s photons arrive at the station")
        self.node, self.config, self.tagger = node, config, tagger
        self.parameter = f"arm_delay_{node}"
        self.duration, self.check_duration = duration, check_duration
        """s recorded (real time): 1 s at a 20 us two-click period holds ~1800 photon clicks
        per detector; a 10 MHz-band transducer's ~16 ns photon puts ~6 % of them in the
        fitted nanosecond at its arrival edge (docs/link.md#1-the-link): enough for the peak.
        The check records as long: with half of that, one detector's edge fit came back
        unresolved now and then (+-11 ns on one seed of tests/test_network_bringup.py's
        fibre-change test), and a check that cannot confirm the arm says out of spec, so
        the unchanged arm was recalibrated too."""
        self.nominal = config.nodes[node].fibre_length_km * FIBRE_DELAY_S_PER_KM
        """s: where the search looks (the spool's labelled length)."""
        self.search_range = arrival_search_range(
            self.nominal, [config.nodes[n].fibre_length_km * FIBRE_DELAY_S_PER_KM
                           for n in config.link.nodes if n != node],
            config.link.detection_window, config.link.round_period, search_range)
        self.bin_width = bin_width
        self.detection_window = config.link.detection_window
        self.max_acceptance_loss = max_acceptance_loss
        self.last_arrivals: dict[int, tuple[NDArray[np.int64], int, int, int, PeakFit]] = {}
        """Per detector, the last measurement's (offsets ps, nominal ps, half range ps, bin
        ps, fit): what a report draws as the arrival histogram with its fit."""

    def _measure(self, ctx: CalibrationContext, duration: float) -> dict[int, _Peak] | str:
        """The fitted peak on each detector (0, 1), or why there is none."""
        block = self.tagger.record(ctx, duration)
        if isinstance(block, str):
            return block
        station = self.config.station
        nominal_ps, half_ps = round(self.nominal * 1e12), round(self.search_range * 1e12)
        peaks: dict[int, _Peak] = {}
        for d in DETECTORS:
            inp = station.detector_inputs[d]
            offsets, syncs, clicks = arrival_offsets(block.timestamps, block.channels,
                                                     station.sync_input, inp, nominal_ps,
                                                     half_ps)
            if syncs == 0:
                return (f"no sync tag on input {station.sync_input} in {duration:g} s: is "
                        "the attempt clock cabled and running?")
            fit = fit_arrival(offsets, syncs, clicks, sync_input=station.sync_input,
                              detector_input=inp, nominal_ps=nominal_ps, half_range_ps=half_ps,
                              bin_ps=max(1, round(self.bin_width * 1e12)))
            if isinstance(fit, Verdict):
                return (f"detector {d} (input {inp}): no arrival peak of {self.node} within "
                        f"{self.nominal * 1e6:.4g} µs ± {self.search_range * 1e9:.0f} ns of "
                        f"the sync ({clicks} clicks, {syncs} syncs): {fit}")
            self.last_arrivals[d] = (offsets, nominal_ps, half_ps,
                                     max(1, round(self.bin_width * 1e12)), fit)
            error = arrival_error(fit, offsets, syncs, clicks, sync_input=station.sync_input,
                                  detector_input=inp, nominal_ps=nominal_ps,
                                  half_range_ps=half_ps, seed=d,
                                  bin_ps=max(1, round(self.bin_width * 1e12)))
            peaks[d] = _Peak(fit.delay_ps * 1e-12, error * 1e-12, fit.sigma_ps * 1e-12,
                             fit.pairs)
        return peaks

    def _shared(self, delay: float) -> str:
        """A note when another node's nominal delay falls in the same peak."""
        others = [n for n in self.config.link.nodes if n != self.node and abs(
            self.config.nodes[n].fibre_length_km * FIBRE_DELAY_S_PER_KM - delay)
            < self.search_range]
        if not others:
            return ""
        return (f"; {', '.join(others)}'s photons arrive in the same range (equal arms share "
                "one peak: both arms get it)")

    def calibrate(self, ctx: CalibrationContext) -> CalibrationOutcome:
        peaks = self._measure(ctx, self.duration)
        if isinstance(peaks, str):
            return CalibrationOutcome(False, peaks)
        values: dict[str, tuple[float, str]] = {}
        for d, peak in peaks.items():
            values[arm_delay_name(self.node, d)] = (peak.delay, "s")
            values[f"{arm_delay_name(self.node, d)}_error"] = (peak.error, "s")
        mean = sum(p.delay for p in peaks.values()) / len(peaks)
        values[self.parameter] = (mean, "s")
        values[f"{self.parameter}_error"] = (
            math.sqrt(sum(p.error ** 2 for p in peaks.values())) / len(peaks), "s")
        values[f"arrival_spread_{self.node}"] = (max(p.spread for p in peaks.values()), "s")
        detail = "; ".join(f"detector {d}: {p.delay * 1e9:.4f} ns ± {p.error * 1e12:.1f} ps "
                           f"after the sync, spread {p.spread * 1e12:.0f} ps rms "
                           f"({p.clicks:.0f} clicks)" for d, p in peaks.items())
        return CalibrationOutcome(True, f"{self.node}: {detail}{self._shared(mean)}", values)

    def allowed_shift(self, spread: float) -> float:
        """s: the largest window offset that keeps all but `max_acceptance_loss` of the
        photons of arrival spread `spread` (s rms) inside the heralding window."""
        half, loss = self.detection_window / 2.0, self.max_acceptance_loss

        def lost(offset: float) -> float:
            kept = ndtr((half - offset) / spread) - ndtr((-half - offset) / spread)
            return float(1.0 - kept - loss)

        if lost(0.0) >= 0.0:
            return 0.0  # even a centred window loses more than allowed
        return float(brentq(lost, 0.0, half + 10.0 * spread))

    def check_data(self, ctx: CalibrationContext) -> CheckOutcome:
        store = ctx.store(self.scope)
        stored = {d: store.current(arm_delay_name(self.node, d)) for d in DETECTORS}
        if any(v is None for v in stored.values()):
            return CheckOutcome(DataResult.BAD_DATA, f"no stored {self.parameter} per "
                                "detector to check")
        peaks = self._measure(ctx, self.check_duration)
        if isinstance(peaks, str):
            return CheckOutcome(DataResult.BAD_DATA, peaks)
        findings, ok = [], True
        for d, peak in peaks.items():
            old = stored[d]
            assert old is not None
            old_error = store.current(f"{arm_delay_name(self.node, d)}_error")
            shift = peak.delay - old.value
            sigma = math.hypot(peak.error, old_error.value if old_error else 0.0)
            allowed = self.allowed_shift(peak.spread)
            # in spec only while the shift is, with Z errors to spare, inside what the window
            # tolerates: the photons' loss at the stored window position stays below the limit
            ok &= abs(shift) + Z * sigma <= allowed
            findings.append(f"detector {d}: peak {peak.delay * 1e9:.4f} ns vs stored "
                            f"{old.value * 1e9:.4f} ns: shift {shift * 1e12:+.1f} ± "
                            f"{sigma * 1e12:.1f} ps, window tolerates {allowed * 1e12:.0f} ps")
        detail = "; ".join(findings) + (f" (loss < {self.max_acceptance_loss:g})")
        return CheckOutcome(DataResult.IN_SPEC if ok else DataResult.OUT_OF_SPEC, detail)


# -- heralding -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteParameters:
    """Another node's published values (`network.parameters.ParameterServer`)."""

    address: str
    key_dir: Path
    client_name: str
    """Our key name in the lab's key directory."""
    server_name: str
    """The serving node's key name."""
    timeout: float = 2.0

    def fetch(self) -> dict[str, float]:
        from qnetlab.network.parameters import fetch_parameters

        return fetch_parameters(self.address, self.key_dir, self.client_name,
                                self.server_name, self.timeout)


@dataclass(frozen=True)
class NodeInputs:
    """Where a network node's calibrated values come from."""

    node: str
    """The node's name in the network config, and its calibration scope."""
    remote: RemoteParameters | None = None
    """None: read the node's own store; else read its values over the network."""

    def read(self, ctx: CalibrationContext) -> tuple[dict[str, float], str]:
        """(values by parameter name, where they came from)."""
        if self.remote is not None:
            return self.remote.fetch(), self.remote.address
        values = ctx.store(self.node).current_values()
        return {k: v.value for k, v in values.items()}, f"the {self.node} store"


class HeraldingCalibration(CalibrationNode):
    """``link.heralding`` (module docstring)."""

    def __init__(self, config: NetworkConfig, tagger: StationTagger,
                 inputs: tuple[NodeInputs, NodeInputs], *, name: str = "link.heralding",
                 depends_on: Iterable[str] = (), heralds: int = 400, check_heralds: int = 150,
                 max_duration: float = 2.0, station_scope: str = STATION_SCOPE,
                 timeout: float = 3600.0) -> None:
        if sorted(i.node for i in inputs) != sorted(config.link.nodes):
            raise ValueError(f"{name}: inputs are for {[i.node for i in inputs]}, the link "
                             f"joins {list(config.link.nodes)}; give one NodeInputs per node")
        arms = [f"link.arm_delay_{n}" for n in config.link.nodes]
        super().__init__(name, scope=LINK_SCOPE, depends_on=[*arms, *depends_on],
                         timeout=timeout, description="heralded success vs calibrated parts")
        self.config, self.tagger, self.inputs = config, tagger, inputs
        self.heralds, self.check_heralds = heralds, check_heralds
        self.max_duration = max_duration
        """s: the longest recording (the tagger records in real time)."""
        self.station_scope = station_scope

    def expectation(self, ctx: CalibrationContext) -> LinkExpectation | str:
        """The link's expectation from the calibrated parts, or what is missing."""
        nodes: dict[str, Mapping[str, float]] = {}
        for spec in self.inputs:
            try:
                nodes[spec.node], _ = spec.read(ctx)
            except Exception as exc:  # the other node unreachable: no prediction
                return f"{spec.node}'s values unavailable: {exc}"
        try:
            parts = calibrated_parts(self.config, load_config(self.config.station.lab),
                                     ctx.store(self.station_scope), ctx.store(LINK_SCOPE),
                                     nodes)
        except MissingCalibration as exc:
            return f"{exc.problem} ({exc.fix})"
        return expected_link(self.config, parts)

    def _run(self, ctx: CalibrationContext, heralds: int
             ) -> tuple[float, float, LinkExpectation, bool, str] | str:
        """(measured p, its error, the expectation, agree, detail) or what made it
        impossible."""
        from qnetlab.network.herald_engine import HeraldEngine

        expected = self.expectation(ctx)
        if isinstance(expected, str):
            return expected
        p_exp = expected.success_probability
        if not p_exp.value > 0.0:
            return "the calibrated parts predict no heralds at all"
        duration = min(self.max_duration, max(0.01, heralds / expected.rate.value))
        block = self.tagger.record(ctx, duration)
        if isinstance(block, str):
            return block
        try:
            engine = HeraldEngine(herald_windows(self.config, ctx.store(LINK_SCOPE)))
        except MissingCalibration as exc:
            return f"{exc.problem} ({exc.fix})"
        engine.feed_block(block)
        counts = engine.counters
        attempts, successes = counts["attempts"], counts["heralds"]
        if attempts == 0:
            return (f"no attempt decided in {duration:g} s ({counts['rounds']} sync tags on "
                    f"input {self.config.station.sync_input}): is the attempt clock running?")
        p = successes / attempts
        error = math.sqrt(max(p * (1 - p), 1.0 / attempts) / attempts)
        binomial = math.sqrt(p_exp.value * (1 - p_exp.value) / attempts)
        tolerance = Z * math.hypot(binomial, p_exp.error)
        agree = abs(p - p_exp.value) <= tolerance
        detail = (f"{successes} heralds ({counts['psi_plus']} psi+, {counts['psi_minus']} "
                  f"psi-) in {attempts} attempts ({duration:.3g} s): p = {p:.3e} ± "
                  f"{error:.1e} vs {p_exp.value:.3e} ± {p_exp.error:.1e} expected from the "
                  f"calibrated parts (tolerance {tolerance:.1e}: {Z:g} x binomial and "
                  f"expectation errors); expected {expected.rate.value:.4g} ± "
                  f"{expected.rate.error:.2g} heralds/s at fidelity "
                  f"{expected.fidelity.value:.3f} ± {expected.fidelity.error:.3f}")
        return p, error, expected, agree, detail

    def calibrate(self, ctx: CalibrationContext) -> CalibrationOutcome:
        result = self._run(ctx, self.heralds)
        if isinstance(result, str):
            return CalibrationOutcome(False, result)
        p, error, expected, agree, detail = result
        if not agree:
            return CalibrationOutcome(False, "disagrees: " + detail)
        return CalibrationOutcome(True, detail, {
            "herald_success_probability": (p, ""),
            "herald_success_probability_error": (error, ""),
            "herald_expected_success_probability": (expected.success_probability.value, ""),
            "herald_expected_success_probability_error": (expected.success_probability.error,
                                                          ""),
            "herald_expected_rate": (expected.rate.value, "Hz"),
            "herald_expected_fidelity": (expected.fidelity.value, ""),
            "herald_expected_fidelity_error": (expected.fidelity.error, ""),
        })

    def check_data(self, ctx: CalibrationContext) -> CheckOutcome:
        result = self._run(ctx, self.check_heralds)
        if isinstance(result, str):
            return CheckOutcome(DataResult.BAD_DATA, result)
        p, error, _, agree, detail = result
        if not agree:
            return CheckOutcome(DataResult.BAD_DATA, "disagrees with its calibrated parts: "
                                + detail)
        store = ctx.store(self.scope)
        stored = store.current("herald_success_probability")
        stored_error = store.current("herald_success_probability_error")
        if stored is None or stored_error is None:
            return CheckOutcome(DataResult.OUT_OF_SPEC, "nothing committed yet; " + detail)
        sigma = math.hypot(error, stored_error.value)
        if abs(p - stored.value) > Z * sigma:
            return CheckOutcome(DataResult.OUT_OF_SPEC, f"committed p = {stored.value:.3e} "
                                f"is stale; " + detail)
        return CheckOutcome(DataResult.IN_SPEC, detail)


def link_calibrations(config: NetworkConfig, inputs: tuple[NodeInputs, NodeInputs], *,
                      depends_on: Iterable[str] = (), arm_depends_on: Iterable[str] = (),
                      tagger: StationTagger | None = None) -> list[CalibrationNode]:
    """The link's nodes of a calibration graph: an arm delay per node (depending on
    `arm_depends_on`, e.g. the station's tagger delays) and the heralding, which also depends
    on `depends_on` (the calibrations its inputs come from, e.g. "node_a.link_operating_point",
    "station.dark_counts")."""
    handle = tagger or StationTagger(config)
    arm_deps = tuple(arm_depends_on)
    arms: list[CalibrationNode] = [ArmDelayCalibration(n, config, handle, depends_on=arm_deps)
                                   for n in config.link.nodes]
    return [*arms, HeraldingCalibration(config, handle, inputs, depends_on=depends_on)]
