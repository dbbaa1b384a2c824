"""`PumpHeatingScan`: added-noise counts against delay after a pump pulse (pump-probe), fitted
with a floor plus two exponentials (`fit_heating`) for the heating channels' amplitudes and
time constants. The cycle, the probe reading on hardware and the fit:
docs/transducer.md#pump-heating-the-cycle-and-the-probe.

First look. Before the delays, one pulse is watched from its cold start to its end
(`heating_plan`): the heating contrast it shows sets the cycles counted per delay, and a slow
channel still rising at the pulse's end lengthens the pulse (up to `max_pulse_duration`). The
delays are measured interleaved (`interleaved_order`), so what drift the references leave is
scatter, not a smooth distortion of the curve (docs/transducer.md#the-first-look).

Drift. A real lab's detection efficiency (fibre polarization at the SNSPD), delivered pump
power and pump detuning wander between cycles by more than the probe's counting error, which
counting statistics alone do not cover. Each cycle therefore counts a *reference* at the end
of its heating pulse (the pump still on, the heating in its steady state: the same physical
state every cycle), and each probe is divided by the gain at its time
(`normalise_to_references`): the slow gain cancels. The gain's wander over a lag is
measured from the references themselves (the change between consecutive cycles' references
beyond their counting error) and, at lags like the probes' own, from an early reference
counted 1, 4 or 16 s before each pulse's end (`early_reference_leads`,
`heating_references.drift_structure`); each probe's gain is estimated from every reference,
near ones weighing more the faster the drift (a Kalman smoother along the wander's axis,
`gain_at`, `lag_axis`), and its variance goes into the point's error. That estimate is
independent of the fit's residuals, so the chi2 test still fails a model that does not
describe the relaxation. Only the converted noise scales with that gain (the pump's
detuning from the drifting optical line sets the efficiency): the pump leakage through the
filters and the dark counts do not, so they are counted with the pump far detuned at the
start and at the end of the scan (`background_time`), interpolated in lab time and taken off
probe and reference before dividing (and added back to the floor).

Below resolution. A scan that does not resolve both channels and their times (piezo_om's
heating, < 2 photons on N_add ~ 100) reports an upper limit on the heating's share of the
noise, its times not determined (`heating_limit`, docs/transducer.md#heating-below-resolution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from qnetlab.instruments.station import LabStation
from qnetlab.sequences.analysis import Analysis, FitValue, Reason, Verdict
from qnetlab.sequences.curve_analysis import CurveAnalysis, CurveData, Param
from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.fitting import Fit
from qnetlab.sequences.framework import DatasetParameter, LabSequence, Step

from .counting import (
    COUNTER_WINDOW_S,
    MAX_DEAD_TIME_LOSS,
    DeadTimeModel,
    count_clicks,
    counter_input_switch,
    detector_channel,
)
from .heating_fit import MIN_DELAYS, HeatingFit, fit_heating, heating_model, model_sigma
from .heating_limit import HeatingLimit, limit_verdict, upper_limits
from .heating_plan import Plan, interleaved_order, next_pulse, plan_from_look, take_look
from .heating_references import Wander, background_at, early_references, normalise_to_references

SIGNIFICANCE = 5.0
"""Each heating amplitude must exceed this many standard errors to count as seen."""
FIT_P_MIN = 1e-6
"""A fit whose chi2 is less probable than this does not describe the relaxation."""
MIN_TAU_RATIO = 3.0
"""tau_slow / tau_fast below this: two exponentials cannot be told apart."""
MIN_PULSE_TAUS = 3.0
"""A heating pulse shorter than this many slow times leaves the slow channel uncharged."""
MAX_UPPER_RATIO = 2.0
"""A time whose one-sigma profile interval reaches this multiple of it is not constrained."""


@dataclass(frozen=True)
class PumpHeatingScanOptions:
    """Options of `PumpHeatingScan` (SI units)."""

    pump_power: float = 2e-3
    """W, of both the heating pulse and the probe."""
    pump_detuning: float = 0.0
    """Hz, the pump on the optical resonance (from `OpticalResonanceScan`)."""
    pulse_duration: float = 30.0
    """s: the heating pulse; several slow heating times, so both channels are charged."""
    cool_down: float = 30.0
    """s with the pump off before each pulse (lets the previous cycle's heat decay)."""
    delay_min: float = 1e-4
    """s, shortest delay after the pulse."""
    delay_max: float = 60.0
    """s, longest delay (several slow heating times: R_0 is seen there)."""
    delays: int = 24
    """Log-spaced delays from delay_min to delay_max, one step each."""
    repeats: int = 1
    """Pump-probe cycles per delay (their clicks are summed); with `first_look` the least."""
    first_look: bool = True
    """Watch one pulse before the scan and choose the pulse length and the cycles per delay
    from it (`heating_plan`): enough counting that the heating shows `target_snr` times
    above the probe's error, and a pulse that lets the slow channel settle."""
    target_snr: float = 40.0
    """The heating contrast over the probe's counting error at zero delay that the first
    look plans for (the slow channel, ~30 % of it, then shows at ~12 errors)."""
    max_repeats: int = 6
    """The most cycles per delay the first look may choose (bounds the scan's lab time:
    24 delays x 6 cycles of ~1 min is ~2.5 h)."""
    max_pulse_duration: float = 120.0
    """s: the longest heating pulse the first look may choose (the bench's limit: the
    pulse also heats the mixing chamber, and the interlock stops a pulse that warms it
    beyond its ceiling)."""
    look_windows: int = 4
    """Counter windows per reading of the first look."""
    interleave: bool = True
    """Measure the delays in `interleaved_order`, not ascending: the gain's drift left after
    the references is smooth in lab time, and delays swept in order would turn it into a
    smooth distortion of the curve that the slow exponential absorbs (membrane_eom, seed
    7006: tau_slow 2.4 ± 0.6 s against 5 s, with a good fit). Interleaved, neighbouring
    delays are half a scan apart and that drift is scatter the chi2 sees."""
    probe_windows: int = 1
    """Counter windows read per probe."""
    background_time: float = 5.0
    """s counted with the pump on but `far_detuning` off the optical resonance, before the
    first cycle, after every `background_every`-th step and after the last: the pump leakage
    and dark counts, which do not follow the references' gain. 0 measures none (then the
    references also scale the background)."""
    background_every: int = 4
    """Steps between background counts. The background wanders (detection path, pump
    power) less than the gain, which also carries the pump's detuning from the drifting
    optical line; measured several times, its own wander is estimated from its counts
    (`heating_references.reference_drift_rate`) instead of taking the gain's."""
    far_detuning: float = -8e9
    """Hz: the pump's detuning for the background count, >> the optical linewidth (8 GHz is
    250 linewidths of a 30 MHz line, 8 of a 1 GHz one). Within the laser's fine-tuning range
    (the TSL-570's 80 pm, about 10 GHz) so the way there and back moves only the cavity
    length and the pump lands back on its detuning: a coarse move lands anywhere within the
    grating's repeatability (+-0.5 pm, 60 MHz, two linewidths of the electro-optic lines).
    Red of the pump, away from the converted light on the blue sideband."""
    reference_windows: int = 2
    """Counter windows read at the end of each heating pulse (pump on, steady state): the
    cycle's gain reference (module docstring). 0 takes no reference (counting errors only:
    right only on a lab that does not drift)."""
    early_reference_leads: tuple[float, ...] = (1.0, 4.0, 16.0)
    """s: each cycle also reads `reference_windows` counter windows this long before its
    pulse's end (pump on, the heating settled; the steps take the leads in turn, each at most
    half the pulse, stored per row as `early_lead`). Those pairs measure the gain's wander
    over lags like the probes' own (`heating_references.drift_structure`), which the
    references, a cycle apart, cannot: a random walk fitted at their spacing overstated it
    ~10x at the slow channel's delays on the bulk electro-optic benches (tau_slow 44/50
    within 1 sigma). () reads none (the gain is then a random walk in lab time); without
    references (`reference_windows` 0) none is read."""
    max_unresolved_heating: float = 0.1
    """The largest share of the steady converted noise that heating the scan does not
    resolve may have (its 95 % upper limit, `heating_limit`) for the verdict to be good: a
    heating below a tenth of N_add changes the noise between pulsed and steady operation by
    less than that, and the steady N_add (`AddedNoiseScan`) holds it anyway."""
    detector_bias: float = 10.5e-6
    """A, the detector's operating bias during the run (restored afterwards)."""
    dead_time: float = 20e-9
    """s, detector dead time (`counting.DeadTimeModel` says where the defaults come from)."""
    recovery_time: float = 8e-9
    """s, detector efficiency recovery after the dead time."""
    counter_dead_time: float = 3e-9
    """s, tagger input dead time."""

    def __post_init__(self) -> None:
        if not self.pump_power > 0:
            raise ValueError(f"pump_power must be > 0 W, got {self.pump_power}")
        if not 0 < self.delay_min < self.delay_max:
            raise ValueError(f"need 0 < delay_min < delay_max, got {self.delay_min:g} .. "
                             f"{self.delay_max:g} s")
        if self.delays < MIN_DELAYS or self.repeats < 1 or self.probe_windows < 1:
            raise ValueError(f"need delays >= {MIN_DELAYS}, repeats >= 1 and probe_windows "
                             ">= 1")
        if self.background_time < 0 or (self.background_time > 0 and abs(
                self.far_detuning - self.pump_detuning) < 5e9):
            raise ValueError(f"background_time must be >= 0 s (0: none) and far_detuning "
                             f"{self.far_detuning:g} Hz at least 5 GHz from pump_detuning")
        if self.background_every < 1:
            raise ValueError(f"background_every must be >= 1 (steps between background "
                             f"counts), got {self.background_every}")
        if self.reference_windows < 0:
            raise ValueError(f"reference_windows must be >= 0 (0: no reference), got "
                             f"{self.reference_windows}")
        if not all(0 < lead < math.inf for lead in self.early_reference_leads):
            raise ValueError(f"early_reference_leads must be finite times > 0 s, got "
                             f"{self.early_reference_leads}")
        if self.pulse_duration <= 0 or self.cool_down < 0:
            raise ValueError("pulse_duration must be > 0 s and cool_down >= 0 s")
        if not (self.max_repeats >= self.repeats and self.look_windows >= 1
                and self.target_snr > 0 and self.max_pulse_duration >= self.pulse_duration):
            raise ValueError(f"the first look needs max_repeats >= repeats ({self.repeats}), "
                             f"look_windows >= 1, target_snr > 0 and max_pulse_duration >= "
                             f"pulse_duration ({self.pulse_duration:g} s)")
        if not self.detector_bias > 0:
            raise ValueError("detector_bias must be > 0 A")
        if not 0 < self.max_unresolved_heating <= 1:
            raise ValueError(f"max_unresolved_heating must be in (0, 1] (a share of the "
                             f"noise), got {self.max_unresolved_heating}")
        DeadTimeModel(self.dead_time, self.recovery_time, self.counter_dead_time)


class PumpHeatingAnalysis(CurveAnalysis):
    """Two-exponential fit of the dead-time corrected noise rate against the delay after a
    pump pulse (own optimiser: `fit_heating` starts from a grid of time pairs)."""

    sequence = "pump_heating_scan"
    params = (Param("floor", "Hz"), Param("amp_fast", "Hz"), Param("tau_fast", "s"),
              Param("amp_slow", "Hz"), Param("tau_slow", "s"))
    min_points = MIN_DELAYS
    figure_name = "heating"
    x_label, y_label, x_log = "delay after the pump pulse (s)", "noise count rate (Hz)", True

    def model(self, x: np.ndarray, *p: float) -> np.ndarray:
        return heating_model(x, *p)

    def load(self, run: StoredRun) -> CurveData | Verdict:
        d = {k: np.asarray(run.data.get(k, []), float)
             for k in ("delay", "counts", "exposure", "latched", "bias")}
        # A run stored before the references (or with reference_windows 0) has none.
        refs = {k: np.asarray(run.data.get(k, []), float)
                for k in ("ref_counts", "ref_exposure", "ref_time", "probe_time")}
        referenced = (all(v.size == d["delay"].size for v in refs.values())
                      and d["delay"].size > 0 and bool(np.all(refs["ref_exposure"] > 0)))
        if referenced:
            d.update(refs)
        order = np.argsort(d["delay"], kind="stable")
        d = {k: v[order] for k, v in d.items()}
        t, n = d["delay"], d["delay"].size
        data = CurveData(t, d["counts"], None, {"points": float(n)}, extra={"exposure":
                                                                          d["exposure"]})
        if np.any(d["latched"] > 0) or np.any(d["bias"] <= 0):
            data.stop = Verdict.bad(Reason.NO_SIGNAL, "the detector was latched or unbiased: "
                                    "reset it and check detector_bias")
        elif n and d["counts"].sum() == 0:
            data.stop = Verdict.bad(Reason.NO_SIGNAL, "the detector counted nothing at any "
                                    "delay with the pump on: the channel is dead; check the "
                                    "detector, amplifier, cable and the counter's input and "
                                    "threshold")
        elif n < MIN_DELAYS:
            data.stop = Verdict.bad(Reason.TOO_FEW_POINTS, f"{n} delays, at least "
                                    f"{MIN_DELAYS} needed")
        if data.stop is not None:
            return data
        o = run.options_as(PumpHeatingScanOptions)
        dead = DeadTimeModel(float(o.dead_time), float(o.recovery_time),
                             float(o.counter_dead_time))
        data.y, data.sigma = dead.correct(d["counts"], d["exposure"])
        loss = dead.loss(d["counts"], d["exposure"])
        data.extra["rate_err"] = data.sigma
        data.extra["rel_var"] = None
        data.extra["max_share"] = float(o.max_unresolved_heating)
        # The pulse the cycles used (the first look may lengthen it; older runs: the option)
        pulse = np.asarray(run.data.get("pulse", []), float)
        data.extra["pulse"] = float(np.min(pulse)) if pulse.size == n and np.all(
            pulse > 0) else float(o.pulse_duration)
        data.details.update({"pulse_duration": data.extra["pulse"], "pump_power": float(
            o.pump_power), "cycles_per_delay": float(
            np.median(d["exposure"]) / (o.probe_windows * COUNTER_WINDOW_S))})
        table = {"delay (s)": t.tolist()}
        if referenced:
            if np.any(d["ref_counts"] <= 0):
                data.stop = Verdict.bad(Reason.NO_SIGNAL, "a reference count at the end of "
                                        "a heating pulse (pump on) is 0: the detector lost "
                                        "the light; check the pump and the detection path")
                return data
            ref, ref_err = dead.correct(d["ref_counts"], d["ref_exposure"])
            loss = np.maximum(loss, dead.loss(d["ref_counts"], d["ref_exposure"]))
            bg, bg_err, bg_times, bg_drift = background_at(run, dead, d["probe_time"])
            norm = normalise_to_references(data.y, data.sigma, ref, ref_err, d["ref_time"],
                                           d["probe_time"], bg, bg_err, bg_times, bg_drift,
                                           early_references(run, dead, order))
            table.update({"raw rate (Hz)": data.y.tolist(), "reference rate (Hz)":
                          ref.tolist(), "background (Hz)": bg.tolist(),
                          "relative gain": norm.gain.tolist()})
            data.details["background_rate"] = float(np.mean(bg))
            # The converted noise at the pulses' ends on the probes' scale: an unresolved
            # heating's limit is quoted as a share of it.
            data.extra["steady_rate"] = float(np.exp(np.mean(np.log(np.maximum(
                ref - bg, 1e-300)))))
            data.details["steady_converted_rate"] = data.extra["steady_rate"]
            if np.any(norm.gain <= 0):
                data.stop = Verdict.bad(Reason.NO_SIGNAL, "a reference at the end of a "
                                        "heating pulse is not above the background (pump far "
                                        "detuned): no converted noise; is the pump on the "
                                        "optical resonance?")
                return data
            data.y, data.extra["rate_err"] = norm.rate, norm.rate_err
            data.extra["rel_var"] = norm.rel_var
            data.sigma = np.sqrt(norm.rate_err**2 + norm.rel_var * norm.rate**2)
            wander = norm.wander or Wander((norm.drift_rate,))
            data.details.update({"reference_drift_rate": norm.drift_rate,
                                 # the wander over a probe's lag, 1 s and 10 s (relative var)
                                 "gain_wander_1s": float(wander.at(np.array(1.0))),
                                 "gain_wander_10s": float(wander.at(np.array(10.0))),
                                 "reference_drift_rate_stderr": norm.drift_rate_stderr,
                                 "reference_gain_spread": float(np.ptp(norm.gain))})
        data.details["max_dead_time_loss"] = float(loss.max())
        table.update({"rate (Hz)": data.y.tolist(), "rate stderr (Hz)": data.sigma.tolist()})
        data.tables["heating"] = table
        if np.any(loss > MAX_DEAD_TIME_LOSS):
            data.stop = Verdict.bad(Reason.OUT_OF_RANGE, f"the detector saturates (dead time "
                                    f"loses {loss.max():.0%} of the clicks): lower the pump "
                                    "power")
        return data

    def fit(self, data: CurveData) -> Fit | Verdict:
        assert data.sigma is not None
        f = fit_heating(data.x, data.y, data.extra["rate_err"], data.extra["exposure"],
                        data.extra["rel_var"])
        if f is None or not heating_resolved(f):
            # Nothing to fit, a channel not seen or a time not constrained: an upper limit.
            try:
                limit = unresolved_limit(data)
            except ValueError as exc:  # a point without a positive error: nothing bounds it
                return Verdict.bad(Reason.POOR_FIT, f"no fit and no upper limit: {exc}")
            data.extra["limit"] = limit
            data.details.update(limit.details())
            return limit_verdict(limit, None if f is None else f.fit_p,
                                 max_share=data.extra.get("max_share", 0.1),
                                 fit_p_min=FIT_P_MIN)
        data.extra["fit"] = f
        p = np.array([f.floor, f.amp_fast, f.tau_fast, f.amp_slow, f.tau_slow])
        cov = f.covariance if f.covariance is not None else np.diag(
            [f.stderr[x.name] ** 2 for x in self.params])
        # Residuals with the errors of the fit's last pass (rescaled to the model's counts).
        model_y = self.model(data.x, *p)
        sigma = model_sigma(data.extra["rate_err"], data.y, model_y, data.extra["exposure"],
                            data.extra["rel_var"])
        return Fit(tuple(x.name for x in self.params), p, cov, f.chi2, f.dof, data.x, data.y,
                   model_y, sigma, {x.name: x.unit for x in self.params})

    def values(self, fit: Fit, data: CurveData) -> dict[str, FitValue]:
        f: HeatingFit = data.extra["fit"]
        return {f"heating_{k}": FitValue(getattr(f, x), f.stderr[x], u) for k, x, u in (
            ("tau_fast", "tau_fast", "s"), ("tau_slow", "tau_slow", "s"),
            ("amplitude_fast", "amp_fast", "Hz"), ("amplitude_slow", "amp_slow", "Hz"))}

    def fit_details(self, fit: Fit, data: CurveData) -> dict[str, float]:
        f: HeatingFit = data.extra["fit"]
        return {"cold_rate": f.floor, "cold_rate_stderr": f.stderr["floor"], "chi2": f.chi2,
                "dof": float(f.dof), "fit_p": f.fit_p}

    def judge(self, fit: Fit, data: CurveData, values: dict[str, FitValue]) -> Verdict:
        return heating_verdict(data.extra["fit"], data.x, data.extra["pulse"])


def time_constrained(fit: HeatingFit, name: str) -> bool:
    """Time `name` ('tau_fast', 'tau_slow') measured: both its half-width and its profile's
    upper side (long for a weakly seen time), within half of it resp. `MAX_UPPER_RATIO`."""
    value, err = getattr(fit, name), fit.stderr[name]
    upper = fit.intervals.get(name, (0.0, value + err))[1]
    return err < 0.5 * value and upper < MAX_UPPER_RATIO * value


def heating_resolved(fit: HeatingFit) -> bool:
    """Both amplitudes above `SIGNIFICANCE` standard errors and both times constrained
    (else the data do not determine the times: `unresolved_limit`)."""
    return all(time_constrained(fit, n) for n in ("tau_fast", "tau_slow")) and all(
        amp > SIGNIFICANCE * fit.stderr[f"amp_{name}"]
        for name, amp in (("fast", fit.amp_fast), ("slow", fit.amp_slow)))


def unresolved_limit(data: CurveData) -> HeatingLimit:
    """The upper limit on the heating (`heating_limit`) of a scan's loaded data, for times
    from the shortest delay to a third of the longest delay and of the pulse."""
    assert data.sigma is not None
    lo = float(data.x.min())
    hi = min(float(data.x.max()), float(data.extra.get("pulse", math.inf))) / MIN_PULSE_TAUS
    limit = upper_limits(data.x, data.y, data.sigma, (lo, max(hi, MIN_TAU_RATIO * lo)),
                         ratio=MIN_TAU_RATIO)[0]
    steady = data.extra.get("steady_rate")
    return limit if steady is None else replace(limit, steady_rate=steady)


def heating_verdict(fit: HeatingFit, delay: np.ndarray, pulse: float = math.inf) -> Verdict:
    """The verdict on a heating fit over `delay` (s) after pulses of `pulse` s: both
    channels seen, their times inside the delays and the pulse, apart, constrained, and the
    fit describing the data."""
    s = fit.stderr
    for name, amp in (("fast", fit.amp_fast), ("slow", fit.amp_slow)):
        if not amp > SIGNIFICANCE * s[f"amp_{name}"]:
            return Verdict.bad(Reason.NO_SIGNAL, f"no {name} heating seen (amplitude "
                               f"{amp:.3g} ± {s[f'amp_{name}']:.2g} Hz): a longer or stronger "
                               "pulse, or only one heating channel?")
    lo, hi = float(delay.min()), float(delay.max())
    if fit.tau_fast < lo or fit.tau_slow > hi / 3:
        return Verdict.bad(Reason.OUT_OF_RANGE, f"the relaxation times ({fit.tau_fast:.3g}, "
                           f"{fit.tau_slow:.3g} s) are not inside the delays measured "
                           f"({lo:.3g}-{hi:.3g} s): widen the delay range")
    if fit.tau_slow > pulse / MIN_PULSE_TAUS:
        return Verdict.bad(Reason.OUT_OF_RANGE, f"tau_slow {fit.tau_slow:.3g} s is more than "
                           f"1/{MIN_PULSE_TAUS:g} of the {pulse:.3g} s heating pulse, which did "
                           "not charge the slow channel: raise max_pulse_duration")
    if fit.tau_slow < MIN_TAU_RATIO * fit.tau_fast:
        return Verdict.bad(Reason.POOR_FIT, "the two times are too close to tell apart")
    for name in ("tau_fast", "tau_slow"):
        value = getattr(fit, name)
        upper = fit.intervals.get(name, (0.0, value + s[name]))[1]
        if not time_constrained(fit, name):
            return Verdict.bad(Reason.POOR_FIT, f"{name} is not constrained ({value:.3g} ± "
                               f"{s[name]:.2g} s, one-sigma upper bound {upper:.3g} s): more "
                               "cycles per delay (repeats) or a stronger pulse")
    if fit.fit_p < FIT_P_MIN:
        return Verdict.bad(Reason.POOR_FIT, f"two exponentials do not describe the relaxation "
                           f"(chi2 {fit.chi2:.1f} for {fit.dof} dof)")
    return Verdict.ok(f"tau_fast = {fit.tau_fast:.4g} ± {s['tau_fast']:.2g} s, tau_slow = "
                      f"{fit.tau_slow:.4g} ± {s['tau_slow']:.2g} s")


# -- sequence -------------------------------------------------------------------------------
class PumpHeatingScan(LabSequence[PumpHeatingScanOptions]):
    """Noise counts against delay after a pump pulse; see the module docstring. Proposes
    nothing (the heating times are device properties)."""

    name: ClassVar[str] = "pump_heating_scan"
    options_class: ClassVar[type] = PumpHeatingScanOptions
    analysis_class: ClassVar[type[Analysis]] = PumpHeatingAnalysis
    plan: Plan | None = None
    """What the first look chose (set when the run prepares; None without `first_look`)."""

    def dataset_parameters(self) -> list[DatasetParameter]:
        sp = ("delay",)
        return [DatasetParameter("delay", "s", "Delay after the pump pulse"),
                DatasetParameter("counts", "", "Probe clicks (all repeats)", sp),
                DatasetParameter("exposure", "s", "Time counted over (all repeats)", sp),
                DatasetParameter("latched", "", "Detector latched", sp),
                DatasetParameter("bias", "A", "Detector bias", sp),
                DatasetParameter("ref_counts", "", "Reference clicks at the pulses' ends "
                                 "(all repeats)", sp),
                DatasetParameter("ref_exposure", "s", "Time the references counted over", sp),
                DatasetParameter("ref_time", "s", "Lab time of the reference (mean)", sp),
                DatasetParameter("early_counts", "", "Clicks early_lead s before the pulses' "
                                 "ends (all repeats)", sp),
                DatasetParameter("early_exposure", "s", "Time the early references counted "
                                 "over", sp),
                DatasetParameter("early_lead", "s", "How long before the pulses' ends the "
                                 "early references counted (0: none)", sp),
                DatasetParameter("probe_time", "s", "Lab time of the probe (mean)", sp),
                DatasetParameter("bg_counts", "", "Background clicks, pump far detuned (first "
                                 "and last step only)", sp),
                DatasetParameter("bg_exposure", "s", "Time the background counted over", sp),
                DatasetParameter("bg_time", "s", "Lab time of the background count", sp),
                DatasetParameter("pulse", "s", "Heating pulse of the cycles (first look)",
                                 sp)]

    def delays(self) -> np.ndarray:
        """The delays, s."""
        options = self.options
        return np.geomspace(options.delay_min, options.delay_max, options.delays)

    def steps(self) -> list[Step]:
        """One step per delay, in `interleaved_order` (or ascending without `interleave`)."""
        delays = self.delays()
        order = interleaved_order(delays.size) if self.options.interleave else range(
            delays.size)
        return [Step(i, f"delay {delays[k]:.3g} s", {"delay": float(delays[k])})
                for i, k in enumerate(order)]

    def prepare(self, station: LabStation) -> None:
        options = self.options
        setup = station.setup
        channel = detector_channel(station, self.name)
        assert setup is not None
        setup.pump_on(False)  # the power ramps with the pump off: no heating before the pulse
        setup.mw_source.rf_output(False)
        r = self.restorer
        switch = counter_input_switch(channel)
        if switch is not None:
            r.change(switch, True)
        r.change(channel.bias_current, options.detector_bias)
        r.change(setup.pump_detuning, options.pump_detuning)
        r.change(setup.pump_power, options.pump_power)
        self.plan = self._look(station, channel) if options.first_look else None

    def _look(self, station: LabStation, channel: object) -> Plan:
        """The first look (`heating_plan`): one pulse watched, lengthened while the slow
        channel has not settled (up to `max_pulse_duration`); the plan it gives."""
        o = self.options
        dead = DeadTimeModel(o.dead_time, o.recovery_time, o.counter_dead_time)
        pulse: float | None = o.pulse_duration
        while pulse is not None:
            look = take_look(station, channel, pulse, o.cool_down, o.look_windows, dead)
            pulse = next_pulse(look, o.max_pulse_duration)
        plan = plan_from_look(look, target_snr=o.target_snr,
                              counting_time=o.probe_windows * COUNTER_WINDOW_S,
                              least=o.repeats, most=o.max_repeats)
        progress = getattr(self, "_progress", None)
        if progress is not None:
            progress.note(plan.describe())
        return plan

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        options = self.options
        setup = station.setup
        assert setup is not None
        channel = detector_channel(station, self.name)
        clicks, exposure, ref_clicks, ref_exposure = 0, 0.0, 0, 0.0
        early_clicks, early_exposure = 0, 0.0
        ref_times, probe_times = [], []
        background: tuple[int, float, float] = (0, 0.0, math.nan)
        if step.index == 0:
            background = self._background(station)
        plan = self.plan
        pulse = options.pulse_duration if plan is None else plan.pulse
        leads = options.early_reference_leads if options.reference_windows else ()
        lead = min(leads[step.index % len(leads)], 0.5 * pulse) if leads else 0.0
        for _ in range(options.repeats if plan is None else plan.repeats):
            setup.pump_on(False)
            station.sleep(options.cool_down)
            setup.pump_on(True)
            station.sleep(pulse - lead)
            if lead > 0:
                early = count_clicks(channel, min_clicks=math.inf,
                                     max_time=options.reference_windows * COUNTER_WINDOW_S)
                early_clicks += early.clicks
                early_exposure += early.exposure
                station.sleep(lead)
            if options.reference_windows:
                # The pulse's end, heating in its steady state: this cycle's gain reference.
                ref = count_clicks(channel, min_clicks=math.inf,
                                   max_time=options.reference_windows * COUNTER_WINDOW_S)
                ref_times.append(station.clock.now())
                ref_clicks += ref.clicks
                ref_exposure += ref.exposure
            setup.pump_on(False)
            station.sleep(step.settings["delay"])
            setup.pump_on(True)
            probe_times.append(station.clock.now())
            probe = count_clicks(channel, min_clicks=math.inf,
                                 max_time=options.probe_windows * COUNTER_WINDOW_S)
            setup.pump_on(False)
            clicks += probe.clicks
            exposure += probe.exposure
        last = step.index == options.delays - 1
        if last or (step.index > 0 and (step.index + 1) % options.background_every == 0):
            background = self._background(station)
        row = {"delay": step.settings["delay"], "counts": clicks, "exposure": exposure,
               "latched": float(bool(channel.latched())), "bias": float(channel.bias_current()),
               "ref_counts": ref_clicks, "ref_exposure": ref_exposure,
               "early_counts": early_clicks, "early_exposure": early_exposure,
               "early_lead": lead,
               "ref_time": float(np.mean(ref_times)) if ref_times else math.nan,
               "probe_time": float(np.mean(probe_times)), "bg_counts": background[0],
               "bg_exposure": background[1], "bg_time": background[2], "pulse": pulse}
        return {k: np.array([float(v)]) for k, v in row.items()}

    def _background(self, station: LabStation) -> tuple[int, float, float]:
        """Clicks, exposure (s) and lab time (s) with the pump on, far detuned: leakage and
        dark counts (module docstring); the pump back on its detuning and off after."""
        options = self.options
        setup = station.setup
        assert setup is not None
        if options.background_time <= 0:
            return 0, 0.0, math.nan
        channel = detector_channel(station, self.name)
        setup.pump_detuning(options.far_detuning)
        setup.pump_on(True)
        count = count_clicks(channel, min_clicks=math.inf, max_time=options.background_time)
        now = station.clock.now()
        setup.pump_on(False)
        setup.pump_detuning(options.pump_detuning)
        return count.clicks, count.exposure, now

    def finish(self, station: LabStation) -> None:
        """Pump off and microwave off (the safe state); the framework's restorer then puts
        the detector bias, tagger input, pump power and detuning back."""
        setup = station.setup
        if setup is not None:
            setup.pump_on(False)
            setup.mw_source.rf_output(False)
