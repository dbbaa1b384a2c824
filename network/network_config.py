"""Reading and validating a network lab config (e.g. lab_configs/two_node_link.yaml).

Strict like `instruments.lab_config`: an unknown key, a wrong type or an impossible value is
refused with a `ConfigError` naming the file, the entry and the fix, because a typo in a
memory cutoff or an address must never pass silently.

The layout::

    network:   {key_dir, run_dir, database, heartbeat_period, heartbeat_misses, stats_period,
                clock_period, resend_timeout, resend_attempts}
    station:   {name, lab, tagger, sync_input, detector_inputs,
                herald_address, request_address, history, telemetry_address}
    orchestrator: {name, address, reconcile_timeout, max_time, telemetry_address}
    nodes:     {NODE_NAME: {station, parameter_address, memory_cutoff, fibre_length_km,
                            collection_efficiency, memory_t2, repetition_limit,
                            telemetry_address}, ...}
    (each optional ``telemetry_address``: where that process publishes telemetry for
    ``qnetlab monitor``, CURVE with its own key; network.telemetry)
    calibration: {operating_points: {...}}   the link's calibration graph (sequences.calibration)
    link:      {id, scheme, nodes: [A, B], detection_window, attempt_period,
                bright_state_population, hom_visibility, phase_drift_rate,
                phase_stabilisation_period, phase_residual}
    simulation: {seed, nodes: {NODE_NAME: {transducer, fibre_length_km,
                 collection_efficiency, memory_t2, repetition_limit}}, hom_visibility,
                 double_excitation_probability, arrival_time_spread, chunk_s,
                 phase_drift_rate, phase_stabilisation_period, phase_residual}

Only operating settings, bench constants and nominal values (a spool's labelled length, where
the arm-delay search looks) are written for the real lab: the detectors' efficiency and dark
counts are calibrations of the station's own lab (``station.lab``), the transducers' of the
nodes' labs. The ``simulation`` section alone holds the *true* world behind the twins (presets,
true fibre lengths, seed); `NetworkConfig.link_simulation` turns it into the station lab's
``qnetlab.simulation.link`` mapping for the sim profile.

Paths are relative to the config file. Addresses are ``tcp://HOST:PORT``, so the same code
runs on one machine (127.0.0.1) or across hosts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import check_keys

from ._config_checks import (
    checked_address,
    checked_fraction,
    checked_input,
    checked_mapping,
    checked_name,
    checked_number,
    checked_whole,
    optional_address,
    optional_positive,
)

OK_INTERVAL_S = 0.005
"""s each node agent gathers its OKs before it sends them (`NodeSettings.ok_interval`): the
orchestrator's reconcile_timeout must be well above it."""

SCHEMES = ("single_click", "two_click")

_TOP = {"network", "station", "orchestrator", "nodes", "link", "calibration", "simulation"}
_REQUIRED_TOP = _TOP - {"calibration", "simulation"}
_NETWORK = {"key_dir", "run_dir", "database", "heartbeat_period", "heartbeat_misses",
            "stats_period", "clock_period", "resend_timeout", "resend_attempts"}
_STATION = {"name", "lab", "tagger", "sync_input", "detector_inputs", "herald_address",
            "request_address", "history", "telemetry_address"}
_ORCHESTRATOR = {"name", "address", "reconcile_timeout", "max_time", "telemetry_address"}
_NODE = {"fibre_length_km", "collection_efficiency", "memory_cutoff", "station",
         "parameter_address", "memory_t2", "repetition_limit", "telemetry_address"}
_PHASE = {"phase_drift_rate", "phase_stabilisation_period", "phase_residual"}
_LINK = {"id", "scheme", "nodes", "detection_window", "bright_state_population",
         "hom_visibility", "attempt_period", *_PHASE}
_SIMULATION = {"seed", "nodes", "hom_visibility", "double_excitation_probability",
               "arrival_time_spread", "chunk_s", *_PHASE}
_SIM_NODE = {"transducer", "fibre_length_km", "collection_efficiency", "memory_t2",
             "repetition_limit"}
_MOVED = {
    "nodes.transducer": "a transducer preset is the simulated world's, not the lab's: write "
                        "it under 'simulation: nodes: NODE: transducer:'; the link uses the "
                        "node lab's calibrated transducer values",
    "link.detector_efficiency": "the station's detector efficiency is a calibration of its "
                                "lab (station.lab: heralding_station.yaml): remove it here",
    "link.dark_count_rate": "the station's dark counts are a calibration of its lab "
                            "(station.lab: heralding_station.yaml): remove it here",
    "link.seed": "a seed belongs to the simulated world: write it as 'simulation: seed:'",
    "link.double_excitation_probability": "it is a property of the simulated emitters: "
                                          "write it under 'simulation:'",
}
"""Keys of the old layout (presets and truths in the lab's sections), refused with where
they went."""


@dataclass(frozen=True)
class StationConfig:
    name: str
    herald_address: str
    """PUB: heralds, heartbeats, attempt statistics."""
    request_address: str
    """ROUTER: resend requests and clock exchanges."""
    lab: Path
    """The station's own lab (a station config: its SNSPDs and time tagger, its calibration
    graph and database)."""
    tagger: str = "tagger"
    """The `TimeTagger` instrument of `lab` that records the detectors and the sync."""
    sync_input: int = 3
    """Tagger input of the attempt clock: one sync tag per round."""
    detector_inputs: tuple[int, int] = (1, 2)
    """Tagger inputs of detector 0 and detector 1 behind the beam splitter."""
    history: int = 65536
    """Heralds kept per link for resends."""
    telemetry_address: str | None = None
    """PUB: the station's telemetry for ``qnetlab monitor`` (network.telemetry)."""


@dataclass(frozen=True)
class OrchestratorConfig:
    name: str
    address: str
    """ROUTER the node agents connect to (CREATE / ACK / OK / ERR)."""
    reconcile_timeout: float = 0.05
    """s a pair OK'd by one node waits for the other's verdict before it counts as
    disagreed."""
    max_time: float = 30.0
    """s a request may take before the remaining pairs are reported as TIMEOUT."""
    telemetry_address: str | None = None
    """PUB: the link's statistics for ``qnetlab monitor`` (network.telemetry)."""


@dataclass(frozen=True)
class NodeConfig:
    name: str
    fibre_length_km: float
    """Nominal fibre from the node to the station, km (the spool's label): where the arm-delay
    calibration looks for the node's photons. The calibrated delay replaces it."""
    collection_efficiency: float = 0.5
    """Transducer optical port to the fibre, 0..1: a measured constant of the node's optics
    (no calibration node measures it), used by the link's expectation."""
    memory_cutoff: float = 0.01
    """s: a herald older than this is expired, never delivered as a pair."""
    station: Path | None = None
    """The node's own lab (station config, with its calibration graph and database)."""
    parameter_address: str | None = None
    """Where the node publishes its calibrated values, read-only (the other node's link
    calibrations read them)."""
    memory_t2: float | None = None
    """s, the node memory's dephasing time (a measured constant of the node): a heralded
    pair's coherence decays as exp(-t / T2) per node. None: assumed not to dephase."""
    repetition_limit: float | None = None
    """Hz, the fastest the node's transducer can be fired (its pulse repetition rate, or its
    pump duty cycle over its pulse length). None: continuous wave, no limit."""
    telemetry_address: str | None = None
    """PUB: the node agent's telemetry for ``qnetlab monitor`` (network.telemetry)."""


@dataclass(frozen=True)
class LinkConfig:
    """The link's operating settings and the one assumed property (HOM visibility)."""

    id: int
    scheme: str
    nodes: tuple[str, str]
    detection_window: float = 2e-9
    """s, full width of a heralding window."""
    attempt_period: float = 1e-6
    """s between attempts (two-click: two rounds, a sync tag each, per attempt)."""
    bright_state_population: float = 0.05
    """alpha (single-click only)."""
    hom_visibility: float = 0.95
    """Assumed two-photon interference visibility at the beam splitter (not calibrated)."""
    phase_drift_rate: float = 0.0
    """rad^2/s, the single-click interferometer's phase diffusion (0: phase-stable)."""
    phase_stabilisation_period: float | None = None
    """s between the phase stabilisation's corrections (None: no stabilisation)."""
    phase_residual: float = 0.0
    """rad rms of the phase right after a correction."""

    @property
    def physics(self) -> dict[str, Any]:
        """`network.link_model.LinkModel` keyword arguments these settings give (the
        calibrated detector efficiency and dark counts are added by `expected_link`)."""
        return {"detection_window": self.detection_window,
                "attempt_period": self.attempt_period,
                "bright_state_population": self.bright_state_population,
                "hom_visibility": self.hom_visibility,
                "phase_drift_rate": self.phase_drift_rate,
                "phase_stabilisation_period": self.phase_stabilisation_period,
                "phase_residual": self.phase_residual}

    @property
    def round_period(self) -> float:
        """s between sync tags: the attempt period, half of it for two-click."""
        return self.attempt_period / (2.0 if self.scheme == "two_click" else 1.0)


@dataclass(frozen=True)
class NetworkConfig:
    path: Path
    key_dir: Path
    run_dir: Path
    station: StationConfig
    orchestrator: OrchestratorConfig
    nodes: dict[str, NodeConfig]
    link: LinkConfig
    heartbeat_period: float = 0.05
    """s between heartbeats (station -> nodes, nodes -> orchestrator)."""
    heartbeat_misses: int = 4
    """Missed heartbeat periods after which a peer is declared lost."""
    stats_period: float = 0.1
    """s between AttemptStats messages."""
    clock_period: float = 0.05
    """s between clock exchanges of a node with the station."""
    resend_timeout: float = 0.005
    """s a node waits for a resend before asking again (each later wait twice as long)."""
    resend_attempts: int = 4
    """Resend requests per gap before it is given up as lost."""
    database: Path | None = None
    """The link's own database: its calibrations (the nodes' are in their labs')."""
    calibration: dict[str, Any] = field(default_factory=dict)
    """The link's calibration graph section, raw (validated by sequences.calibration)."""
    simulation: dict[str, Any] = field(default_factory=dict)
    """The ``simulation`` section (validated; {} when the config has none): the true world
    behind the twins, used only by the sim profile and ``qnetlab sim serve``."""

    def link_simulation(self) -> dict[str, Any]:
        """The station lab's ``qnetlab.simulation.link`` mapping for this link: scheme,
        attempt period and alpha from ``link``, the tagger inputs from ``station``, the true
        world from ``simulation`` (nodes in the link's order: the order they emit in).
        ConfigError when the config has no ``simulation`` section."""
        sim = self.simulation
        if not sim:
            raise self.error("simulation", "no simulation section: the sim profile has no "
                             "world to put behind the station's twins",
                             "add 'simulation: {seed: ..., nodes: {NODE: {transducer: ..., "
                             "fibre_length_km: ...}}}' (lab_configs/two_node_link.yaml), or "
                             "run with --profile real")
        out: dict[str, Any] = {
            "scheme": self.link.scheme,
            "attempt_period": self.link.attempt_period,
            "bright_state_population": self.link.bright_state_population,
            "detection_window": self.link.detection_window,
            "sync_input": self.station.sync_input,
            "detector_inputs": list(self.station.detector_inputs),
            "seed": sim["seed"],
            "nodes": {name: dict(sim["nodes"][name]) for name in self.link.nodes},
            "hom_visibility": sim["hom_visibility"],
            "double_excitation_probability": sim["double_excitation_probability"],
        }
        for key in ("arrival_time_spread", "chunk_s", *sorted(_PHASE)):
            if key in sim:
                out[key] = sim[key]
        return out

    def key_names(self) -> list[str]:
        """Every process that holds a CURVE key: station, orchestrator, nodes."""
        return [self.station.name, self.orchestrator.name, *self.nodes]

    def telemetry_addresses(self) -> dict[str, str]:
        """Process name -> its telemetry PUB address, for the processes that publish."""
        named = [(self.station.name, self.station.telemetry_address),
                 (self.orchestrator.name, self.orchestrator.telemetry_address),
                 *((name, node.telemetry_address) for name, node in self.nodes.items())]
        return {name: address for name, address in named if address is not None}

    @property
    def port_count(self) -> int:
        """Ports `with_ports` assigns: herald, request, orchestrator, then telemetry."""
        return 3 + len(self.telemetry_addresses())

    def with_ports(self, base: int) -> NetworkConfig:
        """The same lab on 127.0.0.1 ports base, base+1, base+2 and, for the processes that
        publish telemetry, base+3... (`port_count` in all; tests, benchmarks)."""
        ports = iter(range(base + 3, base + self.port_count))

        def telemetry(address: str | None) -> str | None:
            return None if address is None else f"tcp://127.0.0.1:{next(ports)}"

        return replace(
            self,
            station=replace(self.station, herald_address=f"tcp://127.0.0.1:{base}",
                            request_address=f"tcp://127.0.0.1:{base + 1}",
                            telemetry_address=telemetry(self.station.telemetry_address)),
            orchestrator=replace(self.orchestrator, address=f"tcp://127.0.0.1:{base + 2}",
                                 telemetry_address=telemetry(
                                     self.orchestrator.telemetry_address)),
            nodes={name: replace(node, telemetry_address=telemetry(node.telemetry_address))
                   for name, node in self.nodes.items()},
        )

    def error(self, entry: str, problem: str, fix: str = "") -> ConfigError:
        return ConfigError(str(self.path), entry, problem, fix)


_keys = check_keys


def _moved(file: str, section: str, entry: str, data: dict[str, Any]) -> None:
    """Refuse a key of the old layout with where it went (`_MOVED`)."""
    for key in data:
        why = _MOVED.get(f"{section}.{key}")
        if why is not None:
            raise ConfigError(file, f"{entry}.{key}", f"'{key}' is no longer written here",
                              why)


def _parse_nodes(file: str, data: Any) -> dict[str, NodeConfig]:
    if not isinstance(data, dict) or len(data) < 2:
        raise ConfigError(file, "nodes", "expected a mapping of at least two nodes",
                          "write 'node_a: {station: node_a_lab.yaml, fibre_length_km: ...}' "
                          "per node")
    nodes = {}
    for raw_name, spec in data.items():
        entry = f"nodes.{raw_name}"
        name = checked_name(file, entry, raw_name)
        if isinstance(spec, dict):
            _moved(file, "nodes", entry, spec)
        _keys(file, entry, spec, _NODE, {"fibre_length_km"})
        station = spec.get("station")
        if station is not None and (not isinstance(station, str) or not station):
            raise ConfigError(file, f"{entry}.station", "expected a station config path",
                              "write a path relative to this file, e.g. node_a_lab.yaml")
        address = spec.get("parameter_address")
        nodes[name] = NodeConfig(
            name,
            checked_number(file, f"{entry}.fibre_length_km", spec["fibre_length_km"], "km",
                      zero_ok=True),
            checked_fraction(file, f"{entry}.collection_efficiency",
                      spec.get("collection_efficiency", 0.5)),
            checked_number(file, f"{entry}.memory_cutoff", spec.get("memory_cutoff", 0.01), "s"),
            None if station is None else (Path(file).parent / station).resolve(),
            None if address is None else checked_address(file, f"{entry}.parameter_address",
                                                  address),
            optional_positive(file, f"{entry}.memory_t2", spec.get("memory_t2"), "s"),
            optional_positive(file, f"{entry}.repetition_limit", spec.get("repetition_limit"),
                               "Hz"),
            optional_address(file, f"{entry}.telemetry_address", spec),
        )
    return nodes


def _phase(file: str, section: str, data: dict[str, Any]) -> dict[str, Any]:
    """The phase drift and stabilisation keys of `section` (link or simulation), checked."""
    residual = checked_number(file, f"{section}.phase_residual", data.get("phase_residual", 0.0),
                         "rad rms", zero_ok=True)
    if residual > math.pi:
        raise ConfigError(file, f"{section}.phase_residual", f"{residual!r} rad is more than "
                          "pi", "give the rms phase error in radians, e.g. 0.1")
    return {
        "phase_drift_rate": checked_number(file, f"{section}.phase_drift_rate",
                                      data.get("phase_drift_rate", 0.0), "rad^2/s",
                                      zero_ok=True),
        "phase_stabilisation_period": optional_positive(
            file, f"{section}.phase_stabilisation_period",
            data.get("phase_stabilisation_period"), "s"),
        "phase_residual": residual,
    }


def _parse_station(file: str, st: Any) -> StationConfig:
    _keys(file, "station", st, _STATION, {"name", "lab", "herald_address", "request_address"})
    lab = st["lab"]
    if not isinstance(lab, str) or not lab:
        raise ConfigError(file, "station.lab", "expected the station's lab config path",
                          "write a path relative to this file, e.g. heralding_station.yaml")
    tagger = st.get("tagger", "tagger")
    if not isinstance(tagger, str) or not tagger:
        raise ConfigError(file, "station.tagger", f"{tagger!r} is not an instrument name",
                          "name the TimeTagger instrument of the station's lab, e.g. tagger")
    detectors = st.get("detector_inputs", [1, 2])
    if not isinstance(detectors, list) or len(detectors) != 2:
        raise ConfigError(file, "station.detector_inputs", f"expected two tagger inputs, got "
                          f"{detectors!r}", "write 'detector_inputs: [1, 2]' (detector 0, "
                          "detector 1 behind the beam splitter)")
    inputs = tuple(checked_input(file, "station.detector_inputs", d) for d in detectors)
    sync = checked_input(file, "station.sync_input", st.get("sync_input", 3))
    if len({*inputs, sync}) != 3:
        raise ConfigError(file, "station.detector_inputs", f"inputs {[*inputs, sync]} are "
                          "not three different inputs", "give the sync and each detector "
                          "their own tagger input")
    path = (Path(file).parent / lab).resolve()
    if not path.is_file():
        raise ConfigError(file, "station.lab", f"no station lab config at {path}",
                          "write the path of the heralding station's lab config relative to "
                          "this file (shipped: heralding_station.yaml)")
    return StationConfig(
        checked_name(file, "station.name", st["name"]),
        checked_address(file, "station.herald_address", st["herald_address"]),
        checked_address(file, "station.request_address", st["request_address"]),
        path, tagger, sync,
        (inputs[0], inputs[1]),
        checked_whole(file, "station.history", st.get("history", 65536), 16),
        optional_address(file, "station.telemetry_address", st),
    )


def _parse_link(file: str, data: Any, nodes: dict[str, NodeConfig]) -> LinkConfig:
    if isinstance(data, dict):
        _moved(file, "link", "link", data)
    _keys(file, "link", data, _LINK, {"scheme", "nodes"})
    if data["scheme"] not in SCHEMES:
        raise ConfigError(file, "link.scheme", f"unknown scheme {data['scheme']!r}",
                          f"use one of: {', '.join(SCHEMES)}")
    ends = data["nodes"]
    if (not isinstance(ends, list) or len(ends) != 2 or len(set(map(str, ends))) != 2):
        raise ConfigError(file, "link.nodes", f"expected two different node names, got "
                          f"{ends!r}", "write 'nodes: [node_a, node_b]'")
    for end in ends:
        if end not in nodes:
            raise ConfigError(file, "link.nodes", f"'{end}' is not a node of this lab",
                              f"use one of: {', '.join(nodes)}")
    link_id = checked_whole(file, "link.id", data.get("id", 0), 0)
    if link_id > 0xFFFF:
        raise ConfigError(file, "link.id", f"{link_id} does not fit the herald's 16-bit "
                          "link field", "use a link id below 65536")
    link = LinkConfig(
        link_id, data["scheme"], (str(ends[0]), str(ends[1])),
        checked_number(file, "link.detection_window", data.get("detection_window", 2e-9), "s"),
        checked_number(file, "link.attempt_period", data.get("attempt_period", 1e-6), "s"),
        checked_fraction(file, "link.bright_state_population",
                  data.get("bright_state_population", 0.05)),
        checked_fraction(file, "link.hom_visibility", data.get("hom_visibility", 0.95)),
        **_phase(file, "link", data),
    )
    # A node's memory holds one qubit: it may emit again only once the last attempt's herald
    # (or its absence) is back from the station, a round trip over its arm. (The link model
    # is imported here: it loads SciPy, which the lab's processes do not need.)
    from .link_model import FIBRE_DELAY_S_PER_KM

    round_trip = 2.0 * max(nodes[end].fibre_length_km for end in link.nodes) * FIBRE_DELAY_S_PER_KM
    if link.attempt_period < round_trip * (1.0 - 1e-9):
        raise ConfigError(file, "link.attempt_period", f"{link.attempt_period:g} s is shorter "
                          f"than the round trip over the longer arm ({round_trip:.3g} s): a "
                          "node would overwrite its memory before the station's herald of "
                          "the last attempt could reach it",
                          f"set attempt_period >= {round_trip:.3g} s, or shorten the fibre")
    for end in link.nodes:
        limit = nodes[end].repetition_limit
        if limit is not None and link.round_period < (1.0 / limit) * (1.0 - 1e-9):
            rounds = round(link.attempt_period / link.round_period)
            raise ConfigError(file, "link.attempt_period", f"{link.attempt_period:g} s gives "
                              f"a round every {link.round_period:g} s, faster than node {end}'s "
                              f"transducer can fire ({limit:g} Hz, "
                              f"nodes.{end}.repetition_limit)",
                              f"set attempt_period >= {rounds / limit:.3g} s, or fire {end} "
                              "with a faster device")
    if link.detection_window >= link.round_period:
        raise ConfigError(file, "link.detection_window", f"{link.detection_window:g} s is not "
                          f"shorter than a round ({link.round_period:g} s between sync tags)",
                          "a window must fit inside one round: shorten it or lengthen "
                          "attempt_period")
    return link


def _parse_simulation(file: str, data: Any, link: LinkConfig) -> dict[str, Any]:
    """The validated ``simulation`` section with its defaults filled in."""
    if data is None:
        return {}
    _keys(file, "simulation", data, _SIMULATION, {"seed", "nodes"})
    out: dict[str, Any] = {
        "seed": checked_whole(file, "simulation.seed", data["seed"], 0),
        "hom_visibility": checked_fraction(file, "simulation.hom_visibility",
                                    data.get("hom_visibility", 0.95)),
        "double_excitation_probability": checked_fraction(
            file, "simulation.double_excitation_probability",
            data.get("double_excitation_probability", 0.0)),
    }
    for key in ("arrival_time_spread", "chunk_s"):
        if key in data:
            out[key] = checked_number(file, f"simulation.{key}", data[key], "s")
    out.update({k: v for k, v in _phase(file, "simulation", data).items()
                if k in data})
    raw = data["nodes"]
    if not isinstance(raw, dict):
        raise ConfigError(file, "simulation.nodes", "expected a mapping of the link's nodes",
                          "write 'NODE: {transducer: bulk_eo_pulsed, fibre_length_km: 2.0}'")
    for name in raw:
        if name not in link.nodes:
            raise ConfigError(file, f"simulation.nodes.{name}", f"'{name}' is not a node of "
                              "the link", f"simulate the link's nodes: {', '.join(link.nodes)}")
    nodes: dict[str, dict[str, Any]] = {}
    for name in link.nodes:
        entry = f"simulation.nodes.{name}"
        if name not in raw:
            raise ConfigError(file, entry, f"the simulated world has no node {name}",
                              f"add '{name}: {{transducer: ..., fibre_length_km: ...}}'")
        spec = raw[name]
        _keys(file, entry, spec, _SIM_NODE, {"transducer", "fibre_length_km"})
        if not isinstance(spec["transducer"], str) or not spec["transducer"]:
            raise ConfigError(file, f"{entry}.transducer", "expected a preset name",
                              "name a transducer preset of the simulator, e.g. "
                              "bulk_eo_pulsed")
        nodes[name] = {
            "transducer": spec["transducer"],
            "fibre_length_km": checked_number(file, f"{entry}.fibre_length_km",
                                         spec["fibre_length_km"], "km", zero_ok=True),
            "collection_efficiency": checked_fraction(file, f"{entry}.collection_efficiency",
                                               spec.get("collection_efficiency", 0.5)),
        }
        for key, unit in (("memory_t2", "s"), ("repetition_limit", "Hz")):
            value = optional_positive(file, f"{entry}.{key}", spec.get(key), unit)
            if value is not None:
                nodes[name][key] = value
    out["nodes"] = nodes
    return out


def load_network_config(path: str | Path) -> NetworkConfig:
    """Read and validate a network lab config; raise `ConfigError` on the first problem."""
    path = Path(path)
    file = str(path)
    try:
        data = YAML(typ="safe").load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(file, "", "no such file", "check the path; the shipped network "
                          "config is lab_configs/two_node_link.yaml") from None
    except YAMLError as exc:
        raise ConfigError(file, "", f"not valid YAML: {exc}", "fix the YAML syntax") from None
    _keys(file, "", data, _TOP, _REQUIRED_TOP)
    net = data["network"]
    _keys(file, "network", net, _NETWORK, {"key_dir", "run_dir"})
    for key in ("key_dir", "run_dir"):
        if not isinstance(net[key], str) or not net[key]:
            raise ConfigError(file, f"network.{key}", "expected a directory path",
                              "write a path relative to this file, e.g. ../lab_data/keys")
    station = _parse_station(file, data["station"])
    orc = data["orchestrator"]
    _keys(file, "orchestrator", orc, _ORCHESTRATOR, {"name", "address"})
    orchestrator = OrchestratorConfig(
        checked_name(file, "orchestrator.name", orc["name"]),
        checked_address(file, "orchestrator.address", orc["address"]),
        checked_number(file, "orchestrator.reconcile_timeout", orc.get("reconcile_timeout", 0.05),
                  "s"),
        checked_number(file, "orchestrator.max_time", orc.get("max_time", 30.0), "s"),
        optional_address(file, "orchestrator.telemetry_address", orc),
    )
    if orchestrator.reconcile_timeout <= 4 * OK_INTERVAL_S:
        raise ConfigError(file, "orchestrator.reconcile_timeout",
                          f"{orchestrator.reconcile_timeout} s leaves a node's OKs no time: "
                          f"each node gathers them for {OK_INTERVAL_S} s before it sends them",
                          f"write more than {4 * OK_INTERVAL_S:g} s (e.g. 0.05)")
    nodes = _parse_nodes(file, data["nodes"])
    names = [station.name, orchestrator.name, *nodes]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(file, "", f"the name '{name}' is used by two processes",
                              "give the station, the orchestrator and every node its own "
                              "name (each names a CURVE key)")
    addresses = [station.herald_address, station.request_address, orchestrator.address,
                 *(n.parameter_address for n in nodes.values() if n.parameter_address),
                 *(a for a in [station.telemetry_address, orchestrator.telemetry_address,
                               *(n.telemetry_address for n in nodes.values())] if a)]
    if len(set(addresses)) != len(addresses):
        raise ConfigError(file, "station/orchestrator", "two sockets share one address",
                          "give the herald, request and orchestrator sockets their own ports")
    link = _parse_link(file, data["link"], nodes)
    config = NetworkConfig(
        path=path, key_dir=(path.parent / net["key_dir"]).resolve(),
        run_dir=(path.parent / net["run_dir"]).resolve(),
        station=station, orchestrator=orchestrator, nodes=nodes, link=link,
        heartbeat_period=checked_number(file, "network.heartbeat_period",
                                   net.get("heartbeat_period", 0.05), "s"),
        heartbeat_misses=checked_whole(file, "network.heartbeat_misses",
                                net.get("heartbeat_misses", 4), 1),
        stats_period=checked_number(file, "network.stats_period", net.get("stats_period", 0.1),
                               "s"),
        clock_period=checked_number(file, "network.clock_period", net.get("clock_period", 0.05),
                               "s"),
        resend_timeout=checked_number(file, "network.resend_timeout",
                                 net.get("resend_timeout", 0.005), "s"),
        resend_attempts=checked_whole(file, "network.resend_attempts",
                               net.get("resend_attempts", 4), 1),
        database=(path.parent / net["database"]).resolve() if net.get("database") else None,
        calibration=checked_mapping(file, "calibration", data.get("calibration") or {}),
        simulation=_parse_simulation(file, data.get("simulation"), link),
    )
    for node in nodes.values():
        if node.memory_cutoff <= config.resend_timeout:
            raise ConfigError(file, f"nodes.{node.name}.memory_cutoff",
                              f"{node.memory_cutoff:g} s is not longer than "
                              f"network.resend_timeout ({config.resend_timeout:g} s): no "
                              "resent herald could ever be used",
                              "raise the cutoff or lower resend_timeout")
    return config


LAB_KEY, NETWORK_KEY = "instruments", "network"
"""The top-level key that makes a YAML file a lab (station) config, or a network config."""


def config_kind(path: str | Path) -> str:
    """"lab" or "network", from the file's top-level keys; ConfigError naming the file
    when it is neither (or both)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    file = str(path)
    try:
        data = YAML(typ="safe").load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(file, "", "no such file", "check the path, e.g. "
                          "lab_configs/two_node_link.yaml") from None
    except IsADirectoryError:
        raise ConfigError(file, "", "is a directory, not a config file",
                          "name a YAML file, e.g. lab_configs/two_node_link.yaml") from None
    except YAMLError as exc:
        raise ConfigError(file, "", f"not valid YAML: {exc}", "fix the YAML syntax") from None
    keys = set(data) if isinstance(data, dict) else set()
    fix = ("name a lab config (top-level 'instruments:', e.g. lab_configs/node_a_lab.yaml) "
           "or a network config (top-level 'network:', e.g. lab_configs/two_node_link.yaml)")
    if LAB_KEY in keys and NETWORK_KEY in keys:
        raise ConfigError(file, "", "has both 'instruments:' and 'network:' at the top "
                          "level: neither a lab config nor a network config", fix)
    if NETWORK_KEY in keys:
        return "network"
    if LAB_KEY in keys:
        return "lab"
    if "bridge" in keys:
        raise ConfigError(file, "", "is a bridge config (top-level 'bridge:'), which only "
                          "`qnetlab bridge` reads so far",
                          f"run `qnetlab bridge {file} --workload FILE`, or give this "
                          "command one of the labs the bridge config names")
    found = ", ".join(sorted(map(str, keys))) or "none"
    raise ConfigError(file, "", f"is neither a lab config nor a network config (top-level "
                      f"keys: {found})", fix)
