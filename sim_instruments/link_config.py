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
            node_a: {transducer: bulk_eo_pulsed, fibre_length_km: 2.0, collection_efficiency: 0.5}
            node_b: {transducer: bulk_eo_pulsed, fibre_length_km: 2.0, collection_efficiency: 0.5}
          hom_visibility: 0.95
          double_excitation_probability: 0.0
          arrival_time_spread: 5.0e-11 # s rms (default 7e-11)
          detection_window: 2.0e-9     # s: the truth's heralding window (default 2e-9)
          truth_file: run/twin_truth.npy   # ground truth (relative: to this config's folder)
          chunk_s: 0.0005              # s of recording per data-link message (<= 1 ms)
          tagger: tagger               # the tagger twin (default: the only one wired)

Detector efficiency and dark counts are not here: they are the SNSPD twins' state at their
bias. `parse_link` checks every key (ConfigError naming ``qnetlab.simulation.link.<key>``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import LabConfig
from qnetlab.network.link_model import NodeOptics

from .physics.link import node_optics_from_preset
from .physics.link_clicks import LinkPhysics
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
             "truth_file", "chunk_s", "tagger")
_NODE_KEYS = ("transducer", "fibre_length_km", "collection_efficiency")


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
    return node_optics_from_preset(preset, length, collection)


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
            detection_window_ps=window_ps, seed=seed)
    except ValueError as exc:  # every field was checked above; a leftover says what
        raise ConfigError(str(config.path), ENTRY, str(exc), "fix the link's values") from None
    return LinkSpec(physics, (names[0], names[1]), sync, inputs, truth_path, chunk, tagger)
