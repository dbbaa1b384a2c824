"""``qnetlab.simulation.link``: the simulated link behind a station lab's time tagger twin.

A station lab config (the heralding station: SNSPDs behind a beam splitter and a time tagger)
may carry, in its simulation section, the TRUE world of the two-node link whose photons reach
its detectors. The network launcher injects it (``LabConfig.with_simulation(link=...)``);
it may also be written by hand::

    qnetlab:
      simulation:
        link:
          scheme: two_click            # or single_click
          attempt_period: 1.0e-6       # s between attempts (two_click: a sync each half)
          bright_state_population: 0.05
          sync_input: 3                # tagger input of the attempt clock (a tag per round)
          detector_inputs: [1, 2]      # tagger inputs cabled (qnetlab.wiring) to the SNSPDs
          seed: 20261201               # default: qnetlab.simulation.seed
          nodes:                       # TRUE values, in emission order
            node_a: {transducer: bulk_eo_pulsed, fibre_length_km: 2.0, collection_efficiency: 0.5,
                     memory_t2: 0.1}     # s, the node memory's T2 (default: no dephasing)
            node_b: {transducer: bulk_eo_pulsed, fibre_length_km: 2.0, collection_efficiency: 0.5,
                     repetition_limit: 1.0e5}  # Hz: overrides the preset's (default: its own)
          hom_visibility: 0.95
          double_excitation_probability: 0.0
          arrival_time_spread: 5.0e-11 # s rms (default 7e-11)
          detection_window: 2.0e-9     # s: the truth's heralding window (default 2e-9)
          phase_drift_rate: 1.0e3      # rad^2/s single-click phase diffusion (default 0)
          phase_stabilisation_period: 1.0e-4  # s between corrections (default: none)
          phase_residual: 0.1          # rad rms after a correction (default 0)
          truth_file: run/twin_truth.npy   # ground truth (relative: to this config's folder)
          herald_windows_ps: [[9840123, 9840123], [9841470, 9841470]]  # the station engine's
                                       # window centres (ps after the sync tag, per detector and
                                       # arm, as the tagger records them): the truth judges its
                                       # heralds there (default: at the true arrivals)
          chunk_s: 0.0005              # s of recording per data-link message (<= 1 ms)
          tagger: tagger               # the tagger twin (default: the only one wired)

Detector efficiency and dark counts are not here: they are the SNSPD twins' state at their
bias. `parse_link` checks every key (ConfigError naming ``qnetlab.simulation.link.<key>``),
and refuses an attempt period shorter than a node's device allows (its preset's repetition
limit, or its photon's tail: `NodeOptics.min_round_period`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import LabConfig
from qnetlab.network.link_model import NodeOptics

from .physics.link import node_optics_from_preset
from .physics.link_physics import LinkPhysics
from .physics.presets import PRESETS

ENTRY = "qnetlab.simulation.link"
N_TAGGER_INPUTS = 4
"""The ID1000's inputs (the only tagger twin)."""
DEFAULT_CHUNK_S = 0.0005
MAX_CHUNK_S = 0.001
"""s: a longer message makes a herald wait longer than the network's memory cutoff allows."""
MIN_CHUNK_S = 1e-5

_REQUIRED = ("scheme", "attempt_period", "sync_input", "detector_inputs", "nodes")
_OPTIONAL = ("bright_state_population", "seed", "hom_visibility",
             "double_excitation_probability", "arrival_time_spread", "detection_window",
             "truth_file", "chunk_s", "tagger", "phase_drift_rate", "herald_windows_ps",
             "phase_stabilisation_period", "phase_residual")
_NODE_KEYS = ("transducer", "fibre_length_km", "collection_efficiency", "memory_t2",
              "repetition_limit")


@dataclass(frozen=True)
class LinkSpec:
    """The parsed ``qnetlab.simulation.link`` section."""

    physics: LinkPhysics
    node_names: tuple[str, str]
    sync_input: int
    detector_inputs: tuple[int, int]
    truth_file: Path | None
    chunk_s: float
    tagger: str | None
    herald_windows_ps: tuple[tuple[int, int], tuple[int, int]] | None = None
    """The station engine's window centres, ps after the sync tag as the tagger records them
    ([detector][arm]), or None (the truth judges at the true arrivals)."""


def _number(config: LabConfig, key: str, value: Any, *, low: float, high: float,
            unit: str, low_open: bool = False) -> float:
    entry = f"{ENTRY}.{key}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise config.error(entry, f"expected a number, got {value!r}",
                           f"write the value in {unit}")
    value = float(value)
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low:g}" + (
            f" and <= {high:g}" if math.isfinite(high) else "")
        raise config.error(entry, f"{value!r} is out of range", f"give a value {bound} {unit}")
    return value


def _input(config: LabConfig, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (
            1 <= value <= N_TAGGER_INPUTS):
        raise config.error(f"{ENTRY}.{key}", f"expected a tagger input 1-{N_TAGGER_INPUTS}, "
                           f"got {value!r}", "give the front-panel input number")
    return value


def _node(config: LabConfig, name: str, raw: Any) -> NodeOptics:
    entry = f"{ENTRY}.nodes.{name}"
    if not isinstance(raw, dict):
        raise config.error(entry, "expected a mapping",
                           f"write '{name}: {{transducer: bulk_eo_pulsed, fibre_length_km: "
                           "2.0, collection_efficiency: 0.5}'")
    for key in raw:
        if key not in _NODE_KEYS:
            raise config.error(f"{entry}.{key}", f"unknown key '{key}'",
                               f"allowed: {', '.join(_NODE_KEYS)}")
    for key in ("transducer", "fibre_length_km"):
        if key not in raw:
            raise config.error(f"{entry}.{key}", "missing", f"add '{key}:' to the node")
    preset = raw["transducer"]
    if preset not in PRESETS:
        raise config.error(f"{entry}.transducer", f"unknown transducer preset {preset!r}",
                           f"choose one of: {', '.join(sorted(PRESETS))}")
    length = _number(config, f"nodes.{name}.fibre_length_km", raw["fibre_length_km"],
                     low=0.0, high=1e4, unit="km")
    collection = _number(config, f"nodes.{name}.collection_efficiency",
                         raw.get("collection_efficiency", 0.5), low=0.0, high=1.0,
                         unit="(a fraction 0-1)")
    t2 = raw.get("memory_t2")
    if t2 is not None:
        t2 = _number(config, f"nodes.{name}.memory_t2", t2, low=0.0, high=math.inf,
                     unit="s", low_open=True)
    optics = node_optics_from_preset(preset, length, collection, t2)
    limit = raw.get("repetition_limit")
    if limit is not None:  # this world's device fires faster (or slower) than the preset's
        limit = _number(config, f"nodes.{name}.repetition_limit", limit, low=0.0,
                        high=math.inf, unit="Hz", low_open=True)
        optics = dataclasses.replace(optics, repetition_limit=limit)
    return optics


def _check_repetition(config: LabConfig, names: tuple[str, ...], optics: tuple[NodeOptics, ...],
                      nodes: dict[str, Any], round_period: float, rounds: int) -> None:
    """Refuse a round shorter than a node's device allows (its repetition limit, its photon's
    tail), naming the node and the fix."""
    for name, node in zip(names, optics, strict=True):
        shortest = node.min_round_period
        if round_period < shortest * (1.0 - 1e-9):
            preset = nodes[name]["transducer"]
            why = (f"its transducer ({preset}) fires at most {node.repetition_limit:g} times "
                   "per second" if node.repetition_limit is not None
                   and 1.0 / node.repetition_limit >= shortest * (1.0 - 1e-9) else
                   f"its transducer's ({preset}) photon lasts {node.photon_duration:.3g} s "
                   "(1 / (2 pi x its conversion bandwidth)) and must be out before the next")
            raise config.error(f"{ENTRY}.attempt_period",
                               f"a round of {round_period:g} s is too short for node {name}: "
                               f"{why}", f"set attempt_period >= {rounds * shortest:.3g} s, "
                               f"give {name} a faster transducer, or write its device's "
                               f"nodes.{name}.repetition_limit (Hz) if it fires faster than "
                               "the preset's")


def parse_link(config: LabConfig) -> LinkSpec | None:
    """The link section of `config`'s simulation (None if it has none), every key checked."""
    raw = config.simulation.get("link")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise config.error(ENTRY, "expected a mapping",
                           f"give the link's keys: {', '.join(_REQUIRED)} (see "
                           "sim_instruments/link_config.py)")
    for key in raw:
        if key not in _REQUIRED + _OPTIONAL:
            raise config.error(f"{ENTRY}.{key}", f"unknown key '{key}'",
                               f"allowed: {', '.join(sorted(_REQUIRED + _OPTIONAL))}")
    for key in _REQUIRED:
        if key not in raw:
            raise config.error(f"{ENTRY}.{key}", "missing", f"add '{key}:' to the link")
    scheme = raw["scheme"]
    if scheme not in ("single_click", "two_click"):
        raise config.error(f"{ENTRY}.scheme", f"unknown scheme {scheme!r}",
                           "use single_click or two_click")
    period = _number(config, "attempt_period", raw["attempt_period"], low=0.0, high=1.0,
                     unit="s", low_open=True)
    rounds = 1 if scheme == "single_click" else 2
    period_ps = round(period * 1e12 / rounds) * rounds
    window = _number(config, "detection_window", raw.get("detection_window", 2e-9),
                     low=0.0, high=1.0, unit="s", low_open=True)
    window_ps = max(1, round(window * 1e12))
    if window_ps > period_ps // rounds:
        raise config.error(f"{ENTRY}.detection_window", f"{window:g} s is longer than a round "
                           f"({period / rounds:g} s)", "shorten the window or lengthen "
                           "attempt_period")
    alpha = _number(config, "bright_state_population", raw.get("bright_state_population", 0.05),
                    low=0.0, high=1.0, unit="(a probability 0-1)")
    visibility = _number(config, "hom_visibility", raw.get("hom_visibility", 0.95),
                         low=0.0, high=1.0, unit="(a fraction 0-1)")
    double = _number(config, "double_excitation_probability",
                     raw.get("double_excitation_probability", 0.0), low=0.0, high=1.0,
                     unit="(a probability 0-1)")
    spread = _number(config, "arrival_time_spread", raw.get("arrival_time_spread", 70e-12),
                     low=0.0, high=period / rounds / 10, unit="s rms")
    seed = raw.get("seed", config.simulation.get("seed", 0))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise config.error(f"{ENTRY}.seed", f"expected a whole number >= 0, got {seed!r}",
                           "write e.g. 'seed: 1'")
    sync = _input(config, "sync_input", raw["sync_input"])
    detectors = raw["detector_inputs"]
    if not (isinstance(detectors, list) and len(detectors) == 2):
        raise config.error(f"{ENTRY}.detector_inputs", f"expected two inputs, got "
                           f"{detectors!r}", "write e.g. '[1, 2]' (detector 0, detector 1)")
    inputs = (_input(config, "detector_inputs", detectors[0]),
              _input(config, "detector_inputs", detectors[1]))
    if len({sync, *inputs}) != 3:
        raise config.error(f"{ENTRY}.detector_inputs", f"sync_input {sync} and detector "
                           f"inputs {list(inputs)} must be three different inputs",
                           "cable the attempt clock and each detector to its own input")
    nodes = raw["nodes"]
    if not (isinstance(nodes, dict) and len(nodes) == 2):
        raise config.error(f"{ENTRY}.nodes", "expected a mapping of the two nodes",
                           "write 'nodes: {node_a: {...}, node_b: {...}}' (emission order)")
    names = tuple(str(n) for n in nodes)
    optics = tuple(_node(config, name, nodes[name]) for name in nodes)
    _check_repetition(config, names, optics, nodes, period_ps * 1e-12 / rounds, rounds)
    drift = _number(config, "phase_drift_rate", raw.get("phase_drift_rate", 0.0), low=0.0,
                    high=math.inf, unit="rad^2/s")
    stabilisation = raw.get("phase_stabilisation_period")
    if stabilisation is not None:
        stabilisation = _number(config, "phase_stabilisation_period", stabilisation, low=0.0,
                                high=math.inf, unit="s", low_open=True)
    residual = _number(config, "phase_residual", raw.get("phase_residual", 0.0), low=0.0,
                       high=math.pi, unit="rad rms")
    truth = raw.get("truth_file")
    truth_path = None
    if truth is not None:
        if not isinstance(truth, str | Path) or not str(truth):
            raise config.error(f"{ENTRY}.truth_file", f"expected a file path, got {truth!r}",
                               "write e.g. 'truth_file: run/twin_truth.npy'")
        truth_path = Path(truth)
        if not truth_path.is_absolute():
            truth_path = Path(config.path).parent / truth_path
    chunk = _number(config, "chunk_s", raw.get("chunk_s", DEFAULT_CHUNK_S), low=MIN_CHUNK_S,
                    high=MAX_CHUNK_S, unit="s")
    tagger = raw.get("tagger")
    if tagger is not None and tagger not in config.instruments:
        raise config.error(f"{ENTRY}.tagger", f"no instrument {tagger!r} in this lab",
                           f"use one of: {', '.join(config.instruments)}")
    try:
        physics = LinkPhysics(
            scheme=scheme, attempt_period_ps=period_ps, nodes=(optics[0], optics[1]),
            bright_state_population=alpha, hom_visibility=visibility,
            double_excitation_probability=double, arrival_time_spread_ps=spread * 1e12,
            detection_window_ps=window_ps, seed=seed, phase_drift_rate=drift,
            phase_stabilisation_period=stabilisation, phase_residual=residual)
    except ValueError as exc:  # every field was checked above; a leftover says what
        raise ConfigError(str(config.path), ENTRY, str(exc), "fix the link's values") from None
    return LinkSpec(physics, (names[0], names[1]), sync, inputs, truth_path, chunk, tagger,
                    _windows(config, raw.get("herald_windows_ps")))


def _windows(config: LabConfig, raw: Any) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``herald_windows_ps``: two rows (detector 0, 1) of two whole ps (arm 0, 1), or None."""
    if raw is None:
        return None
    ok = (isinstance(raw, list | tuple) and len(raw) == 2
          and all(isinstance(row, list | tuple) and len(row) == 2 for row in raw)
          and all(isinstance(v, int) and not isinstance(v, bool) for row in raw for v in row))
    if not ok:
        raise config.error(f"{ENTRY}.herald_windows_ps", f"expected [[d0 arm0, d0 arm1], "
                           f"[d1 arm0, d1 arm1]] in whole ps, got {raw!r}",
                           "give the engine's window centres (HeraldWindows.offsets_ps), or "
                           "leave the key out")
    return ((raw[0][0], raw[0][1]), (raw[1][0], raw[1][1]))
