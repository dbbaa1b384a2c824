"""The link's calibrations (scope "link"): where each arm's photons arrive, and the heralding.

`ArmDelayCalibration` (``link.arm_delay_<node>``) finds where one node's photons arrive at the
station and centres that arm's heralding window there; `HeraldingCalibration`
(``link.heralding``) compares the measured success probability with what the calibrated parts
predict, so a disagreement is bad data that diagnosis walks back from.

The nodes reach the link bench only through configuration (`open_link_bench`: the simulated
lab's backend, reached through PyVISA by name like the VISA twins); nothing here imports
`sim_instruments`.
What each measures, commits and holds in spec: docs/calibration_graph.md#5-the-network-lab.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from scipy.optimize import brentq, curve_fit
from scipy.special import ndtr

from qnetlab.instruments.station import simulation_backend

from .graph import (
    CalibrationContext,
    CalibrationNode,
    CalibrationOutcome,
    CheckOutcome,
    DataResult,
)

if TYPE_CHECKING:
    from qnetlab.network.network_config import NetworkConfig

LINK_SCOPE = "link"
Z = 4.0
"""Standard errors a measurement may stray before it disagrees (two-sided 6e-5 per check)."""


class LinkBench(Protocol):
    """What the link calibrations use of the link bench (sim: `SimulatedLinkBench`)."""

    nodes: tuple[str, str]

    @property
    def attempt_period(self) -> float: ...

    def set_expected_delay(self, node: str, delay: float) -> None: ...

    def arrival_histogram(self, node: str, attempts: int, *, start: float, stop: float,
                          bin_width: float, pulse_photons: float = ...) -> Any: ...

    def herald(self, attempts: int) -> Any: ...


def open_link_bench(config: NetworkConfig, profile: str = "sim") -> LinkBench:
    """The link bench of a network config for a profile ("sim": the simulated link)."""
    if profile != "sim":
        raise ValueError(f"no link bench for profile {profile!r}: only the simulated link "
                         "exists ('sim'); a hardware link needs a station driver first")
    bench: LinkBench = simulation_backend().link_bench(config)
    return bench


class LinkBenchHandle:
    """Opens the link bench once per session, with the stored arm delays applied (what the
    station reads from the parameter store at start-up). Share one among the link's nodes."""

    def __init__(self, opener: Callable[[], LinkBench], scope: str = LINK_SCOPE) -> None:
        self._opener, self._scope = opener, scope
        self._bench: LinkBench | None = None

    def get(self, ctx: CalibrationContext) -> LinkBench:
        if self._bench is None:
            bench = self._opener()
            store = ctx.store(self._scope)
            for node in bench.nodes:
                stored = store.current(f"arm_delay_{node}")
                if stored is not None:
                    bench.set_expected_delay(node, stored.value)
            self._bench = bench
        return self._bench


# -- arm delays ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Peak:
    delay: float
    """s after emission."""
    error: float
    """s, standard error of `delay` from the fit."""
    spread: float
    """s rms."""
    clicks: int


def _gauss(t: np.ndarray, height: float, centre: float, spread: float, floor: float
           ) -> np.ndarray:
    return height * np.exp(-0.5 * ((t - centre) / spread) ** 2) + floor


class ArmDelayCalibration(CalibrationNode):
    """``link.arm_delay_<node>`` (module docstring). Times in s."""

    def __init__(self, node: str, bench: LinkBenchHandle, *, detection_window: float,
                 attempts: int = 20_000, check_attempts: int = 4_000,
                 search_attempts: int = 2_000, pulse_photons: float = 0.2,
                 max_acceptance_loss: float = 1e-3, timeout: float = 6 * 3600.0,
                 name: str | None = None) -> None:
        super().__init__(name or f"link.arm_delay_{node}", scope=LINK_SCOPE, timeout=timeout,
                         description=f"where {node}'s photons arrive at the station")
        self.node, self.bench = node, bench
        self.parameter = f"arm_delay_{node}"
        self.detection_window = detection_window
        self.attempts, self.check_attempts = attempts, check_attempts
        self.search_attempts, self.pulse_photons = search_attempts, pulse_photons
        self.max_acceptance_loss = max_acceptance_loss

    def _measure(self, ctx: CalibrationContext, attempts: int) -> _Peak | str:
        """The fitted arrival peak, or why there is none."""
        bench = self.bench.get(ctx)
        coarse = bench.arrival_histogram(self.node, self.search_attempts, start=0.0,
                                         stop=bench.attempt_period, bin_width=1e-9,
                                         pulse_photons=self.pulse_photons)
        counts = coarse.counts
        pairs = counts[:-1] + counts[1:]  # the peak may straddle two bins
        i = int(np.argmax(pairs))
        floor = 2.0 * float(np.median(counts))
        # a peak: well above the (dark-count) floor by Poisson statistics, and not a handful
        if pairs[i] < max(20.0, floor + 5.0 * math.sqrt(floor + 1.0)):
            return (f"no arrival peak: at most {int(pairs[i])} clicks in 2 ns against a "
                    f"floor of {floor:.1f} over {self.search_attempts} pulses")
        centre = float(coarse.edges[i + 1])
        fine = bench.arrival_histogram(self.node, attempts, start=max(0.0, centre - 3e-9),
                                       stop=centre + 3e-9, bin_width=10e-12,
                                       pulse_photons=self.pulse_photons)
        t, n = fine.centres, fine.counts.astype(float)
        if n.sum() < 20:
            return f"no arrival peak in the fine histogram ({int(n.sum())} clicks)"
        mean = float((t * n).sum() / n.sum())
        rms = float(np.sqrt((n * (t - mean) ** 2).sum() / n.sum()))
        try:
            # Poisson errors from the counts first, then from the first fit's model: weights
            # from the counts themselves pull a fitted width low where bins hold few clicks
            fit, _ = curve_fit(_gauss, t, n, p0=(n.max(), mean, max(rms, 20e-12), 0.0),
                               sigma=np.sqrt(np.maximum(n, 1.0)), maxfev=5000)
            fit, cov = curve_fit(_gauss, t, n, p0=fit,
                                 sigma=np.sqrt(np.maximum(_gauss(t, *fit), 0.5)),
                                 absolute_sigma=True, maxfev=5000)
        except (RuntimeError, ValueError) as exc:
            return f"the arrival peak did not fit a Gaussian ({exc})"
        height, delay, spread = float(fit[0]), float(fit[1]), abs(float(fit[2]))
        error = float(np.sqrt(cov[1, 1]))
        if not (height > 0 and t[0] < delay < t[-1] and 1e-12 < spread < 1e-9
                and math.isfinite(error)):
            return (f"the arrival fit is not a peak (centre {delay * 1e9:.3f} ns, spread "
                    f"{spread * 1e12:.0f} ps)")
        return _Peak(delay, error, spread, int(n.sum()))

    def calibrate(self, ctx: CalibrationContext) -> CalibrationOutcome:
        peak = self._measure(ctx, self.attempts)
        if isinstance(peak, str):
            return CalibrationOutcome(False, peak)
        detail = (f"{self.node} arrives {peak.delay * 1e9:.4f} ns +- "
                  f"{peak.error * 1e12:.1f} ps after emission, spread "
                  f"{peak.spread * 1e12:.0f} ps rms ({peak.clicks} clicks)")
        return CalibrationOutcome(True, detail, {
            self.parameter: (peak.delay, "s"),
            f"{self.parameter}_error": (peak.error, "s"),
            f"arrival_spread_{self.node}": (peak.spread, "s"),
        })

    def apply(self, ctx: CalibrationContext, values: Mapping[str, float]) -> None:
        self.bench.get(ctx).set_expected_delay(self.node, values[self.parameter])

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
        stored = store.current(self.parameter)
        if stored is None:
            return CheckOutcome(DataResult.BAD_DATA, f"no stored {self.parameter} to check")
        stored_error = store.current(f"{self.parameter}_error")
        peak = self._measure(ctx, self.check_attempts)
        if isinstance(peak, str):
            return CheckOutcome(DataResult.BAD_DATA, peak)
        shift = peak.delay - stored.value
        sigma = math.hypot(peak.error, stored_error.value if stored_error else 0.0)
        allowed = self.allowed_shift(peak.spread)
        # in spec only while the shift is, with Z errors to spare, inside what the window
        # tolerates: the photons' loss at the stored window position stays below the limit
        ok = abs(shift) + Z * sigma <= allowed
        detail = (f"peak {peak.delay * 1e9:.4f} ns vs stored {stored.value * 1e9:.4f} ns: "
                  f"shift {shift * 1e12:+.1f} +- {sigma * 1e12:.1f} ps, window tolerates "
                  f"{allowed * 1e12:.0f} ps (loss < {self.max_acceptance_loss:g} at spread "
                  f"{peak.spread * 1e12:.0f} ps)")
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
    """Where a network node's calibrated values come from, and their parameter names."""

    node: str
    """The node's name in the network config, and its calibration scope."""
    transducer_efficiency: str = "transducer_efficiency"
    transducer_added_noise: str = "transducer_added_noise"
    """Photons per mode, referred to the transducer's input."""
    detection_efficiency: str | None = None
    """The station's SNSPD efficiency, on the one node whose lab calibrates it."""
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

    def __init__(self, config: NetworkConfig, bench: LinkBenchHandle,
                 inputs: tuple[NodeInputs, NodeInputs], *, name: str = "link.heralding",
                 depends_on: Iterable[str] = (), heralds: int = 400, check_heralds: int = 150,
                 max_attempts: int = 5_000_000, model_tolerance: float = 0.10,
                 timeout: float = 3600.0) -> None:
        if sorted(i.node for i in inputs) != sorted(config.link.nodes):
            raise ValueError(f"{name}: inputs are for {[i.node for i in inputs]}, the link "
                             f"joins {list(config.link.nodes)}; give one NodeInputs per node")
        if sum(i.detection_efficiency is not None for i in inputs) > 1:
            raise ValueError(f"{name}: name the station's detection efficiency on at most one "
                             "node's NodeInputs (the lab that calibrates the SNSPDs; none: "
                             "the network config's link.detector_efficiency)")
        arms = [f"link.arm_delay_{n}" for n in config.link.nodes]
        super().__init__(name, scope=LINK_SCOPE, depends_on=[*arms, *depends_on],
                         timeout=timeout, description="heralded success vs calibrated parts")
        self.config, self.bench, self.inputs = config, bench, inputs
        self.heralds, self.check_heralds = heralds, check_heralds
        self.max_attempts = max_attempts
        self.model_tolerance = model_tolerance
        """Relative error of the prediction from its calibrated inputs: p goes as the
        product of both arms' transducer efficiencies and the detector efficiency squared
        (two-click), so ~3 % on each of four factors is ~6 % in quadrature; 10 % bounds it."""

    def expectation(self, ctx: CalibrationContext) -> tuple[float, float] | str:
        """(success probability, fidelity) predicted from the calibrated values, or what is
        missing."""
        from qnetlab.network.link_model import (
            FIBRE_DELAY_S_PER_KM,
            LinkModel,
            NodeOptics,
            expected_fidelity,
            expected_success_probability,
        )

        link_store = ctx.store(LINK_SCOPE)
        optics: dict[str, NodeOptics] = {}
        physics: dict[str, Any] = dict(self.config.link.physics)
        for spec in self.inputs:
            try:
                values, source = spec.read(ctx)
            except Exception as exc:  # the other node unreachable: no prediction
                return f"{spec.node}'s values unavailable: {exc}"
            delay = link_store.current(f"arm_delay_{spec.node}")
            wanted = [spec.transducer_efficiency, spec.transducer_added_noise]
            wanted += [spec.detection_efficiency] if spec.detection_efficiency else []
            missing = [w for w in wanted if w not in values]
            if missing or delay is None:
                gone = missing + ([] if delay else [f"arm_delay_{spec.node}"])
                return f"no calibrated {', '.join(gone)} for {spec.node} (read from {source})"
            if spec.detection_efficiency:
                physics["detector_efficiency"] = values[spec.detection_efficiency]
            optics[spec.node] = NodeOptics(
                delay.value / FIBRE_DELAY_S_PER_KM, values[spec.transducer_efficiency],
                values[spec.transducer_added_noise],
                self.config.nodes[spec.node].collection_efficiency)
        a, b = self.config.link.nodes
        model = LinkModel(self.config.link.scheme, optics[a], optics[b],  # type: ignore[arg-type]
                          **physics)
        return expected_success_probability(model), expected_fidelity(model)

    def _run(self, ctx: CalibrationContext, heralds: int
             ) -> tuple[float, float, float, float, bool, str] | str:
        """(measured p, its error, expected p, expected fidelity, agree, detail) or what
        made it impossible."""
        expected = self.expectation(ctx)
        if isinstance(expected, str):
            return expected
        p_exp, fidelity = expected
        if not p_exp > 0.0:
            return "the calibrated parts predict no heralds at all"
        attempts = min(self.max_attempts, math.ceil(heralds / p_exp))
        run = self.bench.get(ctx).herald(attempts)
        p = run.successes / run.attempts
        error = math.sqrt(max(p * (1 - p), 1.0 / run.attempts) / run.attempts)
        expected_error = math.sqrt(p_exp * (1 - p_exp) / run.attempts)
        tolerance = Z * expected_error + self.model_tolerance * p_exp
        agree = abs(p - p_exp) <= tolerance
        detail = (f"{run.successes} heralds in {run.attempts} attempts: p = {p:.3e} +- "
                  f"{error:.1e} vs {p_exp:.3e} expected from the calibrated parts "
                  f"(tolerance {tolerance:.1e}: {Z:g} binomial errors + "
                  f"{self.model_tolerance:.0%} model); expected fidelity {fidelity:.3f}")
        return p, error, p_exp, fidelity, agree, detail

    def calibrate(self, ctx: CalibrationContext) -> CalibrationOutcome:
        result = self._run(ctx, self.heralds)
        if isinstance(result, str):
            return CalibrationOutcome(False, result)
        p, error, p_exp, fidelity, agree, detail = result
        if not agree:
            return CalibrationOutcome(False, "disagrees: " + detail)
        return CalibrationOutcome(True, detail, {
            "herald_success_probability": (p, ""),
            "herald_success_probability_error": (error, ""),
            "herald_expected_success_probability": (p_exp, ""),
            "herald_expected_fidelity": (fidelity, ""),
        })

    def check_data(self, ctx: CalibrationContext) -> CheckOutcome:
        result = self._run(ctx, self.check_heralds)
        if isinstance(result, str):
            return CheckOutcome(DataResult.BAD_DATA, result)
        p, error, _, _, agree, detail = result
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
                      depends_on: Iterable[str] = (), bench: LinkBenchHandle | None = None,
                      profile: str = "sim") -> list[CalibrationNode]:
    """The link's nodes of a calibration graph: an arm delay per node and the heralding,
    which also depends on `depends_on` (the node-scope calibrations its inputs come from,
    e.g. "node_a.added_noise", "node_b.detector_efficiency")."""
    handle = bench or LinkBenchHandle(lambda: open_link_bench(config, profile))
    window = float(config.link.physics.get("detection_window", 2e-9))
    arms: list[CalibrationNode] = [ArmDelayCalibration(n, handle, detection_window=window)
                                   for n in config.link.nodes]
    return [*arms, HeraldingCalibration(config, handle, inputs, depends_on=depends_on)]
