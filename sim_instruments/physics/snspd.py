"""Superconducting nanowire single-photon detector (SNSPD) channel model.

Efficiency a sigmoid in the bias current up to latching at the switching current, dark counts
exponential in the bias, a hard dead time then exponential recovery, Gaussian jitter; the click
stream is a renewal process whose mean rate `SnspdModel.click_rate` gives exactly.
Not modelled: jitter growth above ~10 MHz count rate, after-pulsing.

Model, defaults and their sources: docs/detectors.md#2-the-model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

# Beyond this deficit the recovery factor is taken as exactly 1: r = 1 - 1e-9 is
# indistinguishable from 1 in any simulated statistic, and it bounds the sequential part of
# the click generator to events that follow one another closely.
_RECOVERY_DEFICIT = 1e-9


@dataclass(frozen=True)
class SnspdModel:
    """Parameters of one SNSPD channel; currents in A, rates in Hz, times in ps."""

    max_efficiency: float = 0.90
    """Plateau system detection efficiency eta_max (0.90 typical: docs/detectors.md)."""
    switching_current: float = 12.0e-6
    """I_sw, A: at and above it the wire latches (no clicks). Typical of WSi/NbN wires."""
    midpoint_current: float = 8.0e-6
    """I_mid, A: bias where the efficiency is half the plateau."""
    sigmoid_width: float = 0.5e-6
    """w, A: width of the efficiency sigmoid."""
    operating_current: float = 10.5e-6
    """I_op, A: the typical operating point, on the plateau below I_sw."""
    dark_count_rate_at_operating: float = 10.0
    """DCR_op, Hz, at I_op (10 Hz typical: docs/detectors.md)."""
    dark_count_current_scale: float = 0.6e-6
    """I_dc, A: DCR grows by e per I_dc: 10 Hz at I_op, ~120 Hz just below I_sw
    (1-130 Hz range: docs/detectors.md)."""
    jitter_rms_ps: float = 30.0
    """sigma, ps (20-50 ps RMS typical: docs/detectors.md)."""
    dead_time_ps: int = 20_000
    """t_d, ps: no click at all this long after a click."""
    recovery_tau_ps: float = 8_000.0
    """tau, ps: efficiency recovery past the dead time; 95 % back after t_d + 3 tau = 44 ns
    (20-50 ns typical: docs/detectors.md)."""

    # -- steady state --------------------------------------------------------------------
    def is_latched(self, bias: float) -> bool:
        """True if the bias (A) is at or above the switching current."""
        return abs(bias) >= self.switching_current

    def detection_efficiency(self, bias: float) -> float:
        """Steady-state system detection efficiency at bias current `bias` (A), 0..1."""
        i = abs(bias)
        if i >= self.switching_current:
            return 0.0
        x = -(i - self.midpoint_current) / self.sigmoid_width
        # exp overflows far below the midpoint; the efficiency is 0 there anyway
        return 0.0 if x > 700 else self.max_efficiency / (1.0 + math.exp(x))

    def dark_count_rate(self, bias: float) -> float:
        """Intrinsic dark-count rate (Hz) at bias current `bias` (A); 0 when latched."""
        i = abs(bias)
        if i >= self.switching_current:
            return 0.0
        return self.dark_count_rate_at_operating * math.exp(
            (i - self.operating_current) / self.dark_count_current_scale
        )

    def recovery(self, since_click_ps: np.ndarray | float) -> np.ndarray:
        """Recovery factor r (0..1) of efficiency and dark-count hazard, `since_click_ps`
        after a click: 0 within the dead time, then ``1 - exp(-(t - t_d) / tau)``."""
        u = (np.asarray(since_click_ps, dtype=float) - self.dead_time_ps) / self.recovery_tau_ps
        return np.where(u < 0, 0.0, -np.expm1(-np.maximum(u, 0.0)))

    @property
    def recovery_horizon_ps(self) -> float:
        """Time after a click (ps) past which the detector counts as fully recovered."""
        return self.dead_time_ps - self.recovery_tau_ps * math.log(_RECOVERY_DEFICIT)

    def click_rate(self, photon_rate_hz: float, bias: float) -> float:
        """Mean click rate (Hz) under a Poisson photon flux `photon_rate_hz` at the detector.

        Derivation: after a click nothing fires for t_d; then the hazard is ``R r(u)`` with
        ``R = eta(I) Phi + DCR(I)``, so the survival is
        ``S(u) = exp(-R u + R tau (1 - exp(-u/tau)))``. With ``x = exp(-u/tau)`` and
        ``a = R tau``, ``int_0^inf S du = tau e^a int_0^1 x^(a-1) e^(-a x) dx
        = tau e^a a^(-a) gamma(a, a)``, and the rate is the inverse of
        ``E[T] = t_d + that``.
        """
        r_in = self.detection_efficiency(bias) * max(photon_rate_hz, 0.0) + self.dark_count_rate(
            bias
        )
        if r_in <= 0.0:
            return 0.0
        tau = self.recovery_tau_ps * 1e-12
        a = r_in * tau
        # in logs: e^a a^-a Gamma(a) overflows for large a and Gamma(a) for small a
        log_integral = (
            math.log(tau) + a - a * math.log(a) + special.gammaln(a)
            + math.log(special.gammainc(a, a))
        )
        return 1.0 / (self.dead_time_ps * 1e-12 + math.exp(log_integral))

    # -- virtual-time counting ------------------------------------------------------------
    def counts(
        self, duration_s: float, photon_rate_hz: float, bias: float, rng: np.random.Generator
    ) -> int:
        """Clicks in an integration of `duration_s` (s) under a photon flux (Hz), at once.

        Poisson with mean ``click_rate(photon_rate_hz, bias) * duration_s``. The mean carries
        the dead-time saturation exactly; the variance is Poisson's, whereas a dead-time
        limited stream is sub-Poissonian (Fano factor (1 - R_out t_d)^2 for a sharp dead
        time), so close to saturation the spread is too large; at R_out t_d < 1e-3 (20 ns
        dead time, < 50 kHz) the difference is below 0.2 %.
        """
        if duration_s < 0:
            raise ValueError(f"integration time must be >= 0 s, got {duration_s}")
        return int(rng.poisson(self.click_rate(photon_rate_hz, bias) * duration_s))

    # -- click generator ----------------------------------------------------------------
    def clicks(
        self,
        photon_times_ps: np.ndarray,
        start_ps: int,
        stop_ps: int,
        bias: float,
        rng: np.random.Generator,
        *,
        dark_count_rate_hz: float | None = None,
        last_click_ps: int | None = None,
    ) -> np.ndarray:
        """Click times (int64 ps, sorted, in [start_ps, stop_ps)) for incident photons.

        Args:
            photon_times_ps: arrival times of photons at the detector (int64 ps, any order);
                those outside [start_ps, stop_ps) after jitter are ignored, so consecutive
                intervals lose ~ (photon rate x 12 ps) photons per boundary (E|N(0, 30 ps)|/2).
            start_ps, stop_ps: the interval simulated, ps.
            bias: bias current, A.
            rng: the channel's generator.
            dark_count_rate_hz: dark counts (Hz); None for ``dark_count_rate(bias)``. Pass
                the total rate to include background light that is not in the photon list.
            last_click_ps: time of the channel's last click before `start_ps` (None: fully
                recovered), so that consecutive intervals continue one stream.

        Each photon clicks with probability ``eta(bias) * r(t - t_last_click)``, each dark
        count (Poisson, uniform in the interval) with probability ``r(t - t_last_click)``.
        """
        if stop_ps < start_ps:
            raise ValueError(f"interval ends before it starts ({start_ps} .. {stop_ps} ps)")
        if self.is_latched(bias):
            return np.empty(0, dtype=np.int64)
        eta = self.detection_efficiency(bias)
        dcr = self.dark_count_rate(bias) if dark_count_rate_hz is None else dark_count_rate_hz

        photons = np.asarray(photon_times_ps, dtype=np.int64)
        jitter = np.rint(rng.normal(0.0, self.jitter_rms_ps, photons.size)).astype(np.int64)
        photons = photons + jitter
        photons = photons[(photons >= start_ps) & (photons < stop_ps)]
        n_dark = int(rng.poisson(max(dcr, 0.0) * (stop_ps - start_ps) * 1e-12))
        darks = rng.integers(start_ps, max(stop_ps, start_ps + 1), n_dark, dtype=np.int64)

        times = np.concatenate([photons, darks])
        p_base = np.concatenate([np.full(photons.size, eta), np.ones(n_dark)])
        order = np.argsort(times, kind="stable")
        times, p_base = times[order], p_base[order]
        u = rng.random(times.size)
        clicked = _renewal_thinning(self, times, p_base, u, last_click_ps)
        return times[clicked]


def _renewal_thinning(
    model: SnspdModel,
    times: np.ndarray,
    p_base: np.ndarray,
    u: np.ndarray,
    last_click_ps: int | None,
) -> np.ndarray:
    """Which candidate events (sorted int64 ps) become clicks, given the recovery.

    An event further than the recovery horizon from its predecessor candidate is also that
    far from the last click, so it is decided at once (vectorised). Only events that follow
    a candidate closely need the last click time, and are decided in order.
    """
    n = times.size
    clicked = np.zeros(n, dtype=bool)
    if n == 0:
        return clicked
    horizon = model.recovery_horizon_ps
    gap = np.empty(n, dtype=float)
    gap[1:] = np.diff(times)
    gap[0] = math.inf if last_click_ps is None else float(times[0] - last_click_ps)
    fresh = gap >= horizon
    clicked[fresh] = u[fresh] < p_base[fresh]

    close = np.flatnonzero(~fresh)
    if close.size == 0:
        return clicked
    # time of the latest fresh click strictly before each index (-inf if none)
    fresh_click_time = np.where(clicked, times.astype(float), -math.inf)
    latest_fresh = np.maximum.accumulate(fresh_click_time)
    before = np.empty(n, dtype=float)
    before[0] = -math.inf
    before[1:] = latest_fresh[:-1]

    # plain Python floats: this loop is the only sequential part
    t_list = times.tolist()
    before_list = before[close].tolist()
    p_list = p_base[close].tolist()
    u_list = u[close].tolist()
    last = -math.inf if last_click_ps is None else float(last_click_ps)
    t_d, tau = float(model.dead_time_ps), model.recovery_tau_ps
    for k, i in enumerate(close.tolist()):
        t = t_list[i]
        dt = t - max(last, before_list[k])
        if dt < t_d:
            continue
        r = 1.0 if dt >= horizon else -math.expm1(-(dt - t_d) / tau)
        if u_list[k] < p_list[k] * r:
            clicked[i] = True
            last = t
    return clicked


@dataclass
class SnspdChannel:
    """One biased detector channel with its own generator and recovery state."""

    model: SnspdModel
    rng: np.random.Generator
    bias: float | None = None
    """Bias current, A; None starts at the model's operating current."""
    last_click_ps: int | None = None

    def __post_init__(self) -> None:
        if self.bias is None:
            self.bias = self.model.operating_current

    @property
    def _bias(self) -> float:
        assert self.bias is not None
        return self.bias

    def detection_efficiency(self) -> float:
        return self.model.detection_efficiency(self._bias)

    def dark_count_rate(self) -> float:
        """Hz"""
        return self.model.dark_count_rate(self._bias)

    def counts(self, duration_s: float, photon_rate_hz: float) -> int:
        """Clicks in `duration_s` (s) of virtual time under a photon flux (Hz)."""
        return self.model.counts(duration_s, photon_rate_hz, self._bias, self.rng)

    def clicks(self, photon_times_ps: np.ndarray, start_ps: int, stop_ps: int) -> np.ndarray:
        """Click times (int64 ps) in [start_ps, stop_ps), continuing the previous interval."""
        out = self.model.clicks(
            photon_times_ps, start_ps, stop_ps, self._bias, self.rng,
            last_click_ps=self.last_click_ps,
        )
        if out.size:
            self.last_click_ps = int(out[-1])
        return out
