"""What the link is built from: its heralding windows and its expected rate and fidelity, both
from calibrated values only.

* `herald_windows(config, store)`: the `network.herald_engine.HeraldWindows` of the link from
  its arm-delay calibrations (``link.arm_delay_<node>``: per detector, ps after the round's
  sync tag) and the link's window width: what the station's engine decides heralds with.
* `expected_link(config, parts)`: success probability per attempt, herald rate and mean
  fidelity predicted by `network.link_model` from `CalibratedParts` (both nodes' transducers at
  their operating points, the station's detection efficiency and dark counts, the arms' delays
  and arrival spread), each with a standard error propagated linearly from the parts' errors.
  `calibrated_parts` reads them from the stores.

Nothing here measures; nothing reads a preset or the simulated world.
Details: docs/calibration_graph.md#5-the-network-lab.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from qnetlab.instruments.errors import ConfigError

from .store import ParameterStore

if TYPE_CHECKING:
    from qnetlab.instruments.lab_config import LabConfig
    from qnetlab.network.herald_engine import HeraldWindows
    from qnetlab.network.network_config import NetworkConfig

LINK_SCOPE = "link"
STATION_SCOPE = "station"
DETECTORS = (0, 1)

DEFAULT_RELATIVE_ERROR = 0.03
"""Relative standard error assumed for a node's transducer efficiency and added noise at the
operating point when its lab commits none (the operating point is evaluated from fitted
models whose errors are not committed; ~3 % is their typical fit error)."""
OPERATING_FRACTION = 0.98
"""The station's SNSPDs run at the bias where the efficiency reaches this fraction of its
plateau (`EfficiencyBiasScanOptions.plateau_fraction`); the committed efficiency is the
plateau's."""


def arm_delay_name(node: str, detector: int) -> str:
    """Store name of the arm delay of `node` on detector `detector` (s after the sync)."""
    return f"arm_delay_{node}_det{detector}"


@dataclass(frozen=True)
class Estimate:
    """A value and its standard error (same unit)."""

    value: float
    error: float = 0.0


@dataclass(frozen=True)
class CalibratedParts:
    """The calibrated values the link's expectation is computed from (SI units)."""

    transducer_efficiency: Mapping[str, Estimate]
    """Per node: eta at its link operating point."""
    added_noise: Mapping[str, Estimate]
    """Per node: N_add at its operating point, photons per mode at the transducer's input."""
    arm_delay: Mapping[str, float]
    """Per node: s from the round's sync to its photons' arrival (mean of both detectors):
    the fibre's light time plus fixed cable and input delays."""
    arrival_spread: float
    """s rms of the arrival peaks as the tagger sees them."""
    detector_efficiency: Estimate
    """Mean system efficiency of the two detectors at their operating bias."""
    dark_count_rate: Estimate
    """Hz, mean per detector at the operating bias."""
    conversion_bandwidth: Mapping[str, float] = field(default_factory=dict)
    """Per node: Hz FWHM of its transducer's conversion band (its lab's
    ``conversion_bandwidth``), which sets the photon's shape and the noise flux; a node
    without one is taken as instantaneous with noise per mode."""


@dataclass(frozen=True)
class LinkExpectation:
    """The link's expected performance; unpacks as ``rate, fidelity``."""

    success_probability: Estimate
    """Heralds per attempt."""
    rate: Estimate
    """Heralds per second at the link's attempt period."""
    fidelity: Estimate
    """Mean fidelity of a herald's pair to its Bell state."""

    def __iter__(self) -> Iterator[Estimate]:
        yield self.rate
        yield self.fidelity


class MissingCalibration(ConfigError):
    """A value the link needs has never been calibrated (or was invalidated)."""


def _current(store: ParameterStore, name: str, where: str, fix: str) -> float:
    stored = store.current(name)
    if stored is None:
        raise MissingCalibration(str(store.db_path), name, f"no calibrated {name} in {where}",
                                 fix)
    return float(stored.value)


# -- windows --------------------------------------------------------------------------------------
def herald_windows(config: NetworkConfig, store: ParameterStore) -> HeraldWindows:
    """The station engine's windows from the link's stored arm delays (MissingCalibration,
    naming the value and the fix, when one was never calibrated)."""
    from qnetlab.network.herald_engine import HeraldWindows

    fix = f"run `qnetlab calibrate {config.path}` (its link.arm_delay_* nodes) first"
    offsets = tuple(
        tuple(round(_current(store, arm_delay_name(node, d), "the link store", fix) * 1e12)
              for node in config.link.nodes)
        for d in DETECTORS)
    return HeraldWindows(
        scheme=config.link.scheme,  # type: ignore[arg-type]
        sync_channel=config.station.sync_input,
        detector_channels=config.station.detector_inputs,
        offsets_ps=(offsets[0], offsets[1]),
        window_ps=round(config.link.detection_window * 1e12),
        round_period_ps=round(config.link.attempt_period * 1e12 / (
            2 if config.link.scheme == "two_click" else 1)),
    )


# -- reading the parts ----------------------------------------------------------------------------
def station_value_names(config: NetworkConfig, lab: LabConfig) -> dict[str, tuple[str, str]]:
    """Store names of the station's detection efficiency and dark-count rate per detector,
    from the cabling of the station lab (detector input -> SNSPD channel n: ``*_ch<n>``).
    ConfigError when a detector input is not cabled to a detector channel."""
    wires = lab.wiring.get(config.station.tagger, {})
    names: dict[str, tuple[str, str]] = {}
    for d, n in enumerate(config.station.detector_inputs):
        wire = wires.get(n)
        if wire is None or wire.marker is not None:
            raise ConfigError(str(lab.path), f"qnetlab.wiring.{config.station.tagger}.{n}",
                              f"input {n} (detector {d} of {config.path.name}) is not cabled "
                              "to a detector channel",
                              f"write '{n}: snspd.ch<slot>' under the tagger's wiring")
        names[f"det{d}"] = (f"detection_efficiency_ch{wire.channel}",
                            f"dark_count_rate_ch{wire.channel}")
    return names


def calibrated_parts(config: NetworkConfig, lab: LabConfig, station: ParameterStore,
                     link: ParameterStore, nodes: Mapping[str, Mapping[str, float]],
                     ) -> CalibratedParts:
    """The parts from the stores: the station's (its lab `lab`), the link's, and each node's
    values (`nodes`: name -> values by parameter name, read locally or over the network).
    MissingCalibration naming the first value never calibrated."""
    fix = f"run `qnetlab calibrate {config.path}` first"
    eff: list[Estimate] = []
    dark: list[Estimate] = []
    for efficiency_name, dark_name in station_value_names(config, lab).values():
        for name, found in ((efficiency_name, eff), (dark_name, dark)):
            value = _current(station, name, "the station store", fix)
            stored_error = station.current(f"{name}_error")
            found.append(Estimate(value, 0.0 if stored_error is None
                                  else float(stored_error.value)))
    eta: dict[str, Estimate] = {}
    noise: dict[str, Estimate] = {}
    delays: dict[str, float] = {}
    bandwidth: dict[str, float] = {}
    spreads: list[float] = []
    for node in config.link.nodes:
        values = nodes.get(node, {})
        for name, out in (("transducer_efficiency", eta), ("transducer_added_noise", noise)):
            if name not in values:
                raise MissingCalibration(str(config.path), f"nodes.{node}", f"no calibrated "
                                         f"{name} for {node}", f"calibrate {node}'s "
                                         "link_operating_point first")
            error = values.get(f"{name}_error", DEFAULT_RELATIVE_ERROR * abs(values[name]))
            out[node] = Estimate(float(values[name]), float(error))
        if values.get("conversion_bandwidth", 0.0) > 0.0:
            bandwidth[node] = float(values["conversion_bandwidth"])
        delays[node] = sum(_current(link, arm_delay_name(node, d), "the link store", fix)
                           for d in DETECTORS) / len(DETECTORS)
        spreads.append(_current(link, f"arrival_spread_{node}", "the link store", fix))
    return CalibratedParts(
        eta, noise, delays, max(spreads),
        # The plateau's efficiency times where on it the bias sits; the mean of both
        # detectors (the model has one efficiency for both).
        Estimate(OPERATING_FRACTION * sum(e.value for e in eff) / 2,
                 OPERATING_FRACTION * math.hypot(*(e.error for e in eff)) / 2),
        Estimate(sum(d.value for d in dark) / 2, math.hypot(*(d.error for d in dark)) / 2),
        bandwidth,
    )


# -- the expectation ------------------------------------------------------------------------------
def _predict(config: NetworkConfig, parts: CalibratedParts) -> tuple[float, float]:
    """(success probability, fidelity) of `parts`' central values."""
    from qnetlab.network.link_model import (
        FIBRE_DELAY_S_PER_KM,
        LinkModel,
        NodeOptics,
        expected_fidelity,
        expected_success_probability,
    )

    optics = [NodeOptics(
        # The fibre's length (for its loss) from the calibrated delay: the cables' and
        # inputs' few ns in it are centimetres of fibre, negligible for the loss.
        max(0.0, parts.arm_delay[n]) / FIBRE_DELAY_S_PER_KM,
        min(1.0, max(0.0, parts.transducer_efficiency[n].value)),
        max(0.0, parts.added_noise[n].value), config.nodes[n].collection_efficiency,
        conversion_bandwidth=parts.conversion_bandwidth.get(n),
        memory_t2=config.nodes[n].memory_t2,
        repetition_limit=config.nodes[n].repetition_limit)
        for n in config.link.nodes]
    model = LinkModel(
        config.link.scheme, optics[0], optics[1],  # type: ignore[arg-type]
        detector_efficiency=min(1.0, max(0.0, parts.detector_efficiency.value)),
        dark_count_rate=max(0.0, parts.dark_count_rate.value),
        arrival_time_spread=parts.arrival_spread, **config.link.physics)
    return expected_success_probability(model), expected_fidelity(model)


def expected_link(config: NetworkConfig, parts: CalibratedParts) -> LinkExpectation:
    """Success probability, rate (Hz at ``link.attempt_period``) and fidelity from calibrated
    `parts`, with standard errors propagated linearly (one-sided finite differences of one
    standard error of each part; the parts' errors taken as independent)."""
    p0, f0 = _predict(config, parts)
    var_p = var_f = 0.0
    def up(e: Estimate) -> Estimate:
        return Estimate(e.value + e.error, e.error)

    shifted: list[CalibratedParts] = []
    for node in config.link.nodes:
        shifted.append(replace(parts, transducer_efficiency={
            **parts.transducer_efficiency, node: up(parts.transducer_efficiency[node])}))
        shifted.append(replace(parts, added_noise={
            **parts.added_noise, node: up(parts.added_noise[node])}))
    shifted.append(replace(parts, detector_efficiency=up(parts.detector_efficiency)))
    shifted.append(replace(parts, dark_count_rate=up(parts.dark_count_rate)))
    for variant in shifted:
        p, f = _predict(config, variant)
        var_p += (p - p0) ** 2
        var_f += (f - f0) ** 2
    period = config.link.attempt_period
    return LinkExpectation(Estimate(p0, math.sqrt(var_p)),
                           Estimate(p0 / period, math.sqrt(var_p) / period),
                           Estimate(f0, math.sqrt(var_f)))
