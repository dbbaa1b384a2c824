"""Reading and validating a network lab config (e.g. lab_configs/two_node_link.yaml).

Strict like `instruments.lab_config`: an unknown key, a wrong type or an impossible value is
refused with a `ConfigError` naming the file, the entry and the fix, because a typo in a
memory cutoff or an address must never pass silently.

The layout::

    network:   {key_dir, run_dir, database, heartbeat_period, heartbeat_misses, stats_period,
                clock_period, resend_timeout, resend_attempts}
    station:   {name, herald_address, request_address, history}
    orchestrator: {name, address, reconcile_timeout, max_time}
    nodes:     {NODE_NAME: {transducer, fibre_length_km, collection_efficiency,
                            memory_cutoff, station, parameter_address}, ...}
    calibration: {nodes: {...}}   the link's calibration graph (sequences.calibration)
    link:      {id, scheme, nodes: [A, B], seed, detector_efficiency, dark_count_rate,
                detection_window, bright_state_population, hom_visibility,
                double_excitation_probability, attempt_period}

Paths are relative to the config file. Addresses are ``tcp://HOST:PORT``, so the same code
runs on one machine (127.0.0.1) or across hosts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import check_keys

SCHEMES = ("single_click", "two_click")

_TOP = {"network", "station", "orchestrator", "nodes", "link", "calibration"}
_REQUIRED_TOP = _TOP - {"calibration"}
_NETWORK = {"key_dir", "run_dir", "database", "heartbeat_period", "heartbeat_misses",
            "stats_period", "clock_period", "resend_timeout", "resend_attempts"}
_STATION = {"name", "herald_address", "request_address", "history"}
_ORCHESTRATOR = {"name", "address", "reconcile_timeout", "max_time"}
_NODE = {"transducer", "fibre_length_km", "collection_efficiency", "memory_cutoff", "station",
         "parameter_address"}
_LINK = {"id", "scheme", "nodes", "seed", "detector_efficiency", "dark_count_rate",
         "detection_window", "bright_state_population", "hom_visibility",
         "double_excitation_probability", "attempt_period"}
_ADDRESS = re.compile(r"^tcp://(?P<host>[A-Za-z0-9.\-]+|\*):(?P<port>\d{1,5})$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


@dataclass(frozen=True)
class StationConfig:
    name: str
    herald_address: str
    """PUB: heralds, heartbeats, attempt statistics."""
    request_address: str
    """ROUTER: resend requests and clock exchanges."""
    history: int = 65536
    """Heralds kept per link for resends."""


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


@dataclass(frozen=True)
class NodeConfig:
    name: str
    transducer: str
    """Transducer preset (sim_instruments.physics.presets) at its operating pump power."""
    fibre_length_km: float
    """Fibre from the node to the midpoint station, km."""
    collection_efficiency: float = 0.5
    memory_cutoff: float = 0.01
    """s: a herald older than this is expired, never delivered as a pair."""
    station: Path | None = None
    """The node's own lab (station config, with its calibration graph and database)."""
    parameter_address: str | None = None
    """Where the node publishes its calibrated values, read-only (the other node's link
    calibrations read them)."""


@dataclass(frozen=True)
class LinkConfig:
    id: int
    scheme: str
    nodes: tuple[str, str]
    seed: int = 1
    physics: dict[str, float] = field(default_factory=dict)
    """LinkModel keyword arguments beyond scheme and nodes (detector_efficiency, ...)."""


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

    def key_names(self) -> list[str]:
        """Every process that holds a CURVE key: station, orchestrator, nodes."""
        return [self.station.name, self.orchestrator.name, *self.nodes]

    def with_ports(self, base: int) -> NetworkConfig:
        """The same lab on 127.0.0.1 ports base, base+1, base+2 (tests, benchmarks)."""
        return replace(
            self,
            station=replace(self.station, herald_address=f"tcp://127.0.0.1:{base}",
                            request_address=f"tcp://127.0.0.1:{base + 1}"),
            orchestrator=replace(self.orchestrator, address=f"tcp://127.0.0.1:{base + 2}"),
        )

    def error(self, entry: str, problem: str, fix: str = "") -> ConfigError:
        return ConfigError(str(self.path), entry, problem, fix)


_keys = check_keys


def _positive(file: str, entry: str, value: Any, unit: str, *, zero_ok: bool = False
              ) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(file, entry, f"expected a number, got {value!r}",
                          f"write a plain number in {unit}")
    if value < 0 or (value == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigError(file, entry, f"must be {bound}, got {value!r}",
                          f"write a value {bound} in {unit}")
    return float(value)


def _fraction(file: str, entry: str, value: Any) -> float:
    number = _positive(file, entry, value, "the range 0..1", zero_ok=True)
    if number > 1:
        raise ConfigError(file, entry, f"must be between 0 and 1, got {value!r}",
                          "write a probability or efficiency as a fraction, e.g. 0.9 not 90")
    return number


def _whole(file: str, entry: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(file, entry, f"expected a whole number >= {minimum}, got {value!r}",
                          f"write an integer >= {minimum}")
    return value


def _name(file: str, entry: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(file, entry, f"{value!r} is not a usable process name",
                          "use letters, digits, '_' or '-', starting with a letter "
                          "(it names the CURVE key files)")
    return value


def _address(file: str, entry: str, value: Any) -> str:
    match = _ADDRESS.match(value) if isinstance(value, str) else None
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ConfigError(file, entry, f"{value!r} is not a tcp address",
                          "write tcp://HOST:PORT, e.g. tcp://127.0.0.1:29101 (ipc is not "
                          "supported: it lost the tail of streams at close, libzmq #4660)")
    if match["host"] == "*":
        raise ConfigError(file, entry, "binding every interface is refused",
                          "name the host's address, e.g. tcp://127.0.0.1:PORT on one "
                          "machine or tcp://<lab LAN address>:PORT across hosts")
    return str(value)


def _parse_nodes(file: str, data: Any) -> dict[str, NodeConfig]:
    if not isinstance(data, dict) or len(data) < 2:
        raise ConfigError(file, "nodes", "expected a mapping of at least two nodes",
                          "write 'node_a: {transducer: ..., fibre_length_km: ...}' per node")
    nodes = {}
    for raw_name, spec in data.items():
        entry = f"nodes.{raw_name}"
        name = _name(file, entry, raw_name)
        _keys(file, entry, spec, _NODE, {"transducer", "fibre_length_km"})
        if not isinstance(spec["transducer"], str):
            raise ConfigError(file, f"{entry}.transducer", "expected a preset name",
                              "name a preset of sim_instruments.physics.presets, e.g. "
                              "bulk_eo_pulsed")
        station = spec.get("station")
        if station is not None and (not isinstance(station, str) or not station):
            raise ConfigError(file, f"{entry}.station", "expected a station config path",
                              "write a path relative to this file, e.g. node_a_lab.yaml")
        address = spec.get("parameter_address")
        nodes[name] = NodeConfig(
            name, spec["transducer"],
            _positive(file, f"{entry}.fibre_length_km", spec["fibre_length_km"], "km",
                      zero_ok=True),
            _fraction(file, f"{entry}.collection_efficiency",
                      spec.get("collection_efficiency", 0.5)),
            _positive(file, f"{entry}.memory_cutoff", spec.get("memory_cutoff", 0.01), "s"),
            None if station is None else (Path(file).parent / station).resolve(),
            None if address is None else _address(file, f"{entry}.parameter_address",
                                                  address),
        )
    return nodes


def _parse_link(file: str, data: Any, nodes: dict[str, NodeConfig]) -> LinkConfig:
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
    physics: dict[str, float] = {}
    for key in ("detector_efficiency", "bright_state_population", "hom_visibility",
                "double_excitation_probability"):
        if key in data:
            physics[key] = _fraction(file, f"link.{key}", data[key])
    for key, unit, zero_ok in (("dark_count_rate", "Hz", True),
                               ("detection_window", "s", False),
                               ("attempt_period", "s", False)):
        if key in data:
            physics[key] = _positive(file, f"link.{key}", data[key], unit, zero_ok=zero_ok)
    link_id = _whole(file, "link.id", data.get("id", 0), 0)
    if link_id > 0xFFFF:
        raise ConfigError(file, "link.id", f"{link_id} does not fit the herald's 16-bit "
                          "link field", "use a link id below 65536")
    return LinkConfig(link_id, data["scheme"], (str(ends[0]), str(ends[1])),
                      _whole(file, "link.seed", data.get("seed", 1), 0), physics)


def _mapping(file: str, entry: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(file, entry, f"expected a mapping, got {type(value).__name__}",
                          "write it as 'key: value' lines")
    return dict(value)


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
    st = data["station"]
    _keys(file, "station", st, _STATION, {"name", "herald_address", "request_address"})
    station = StationConfig(
        _name(file, "station.name", st["name"]),
        _address(file, "station.herald_address", st["herald_address"]),
        _address(file, "station.request_address", st["request_address"]),
        _whole(file, "station.history", st.get("history", 65536), 16),
    )
    orc = data["orchestrator"]
    _keys(file, "orchestrator", orc, _ORCHESTRATOR, {"name", "address"})
    orchestrator = OrchestratorConfig(
        _name(file, "orchestrator.name", orc["name"]),
        _address(file, "orchestrator.address", orc["address"]),
        _positive(file, "orchestrator.reconcile_timeout", orc.get("reconcile_timeout", 0.05),
                  "s"),
        _positive(file, "orchestrator.max_time", orc.get("max_time", 30.0), "s"),
    )
    nodes = _parse_nodes(file, data["nodes"])
    names = [station.name, orchestrator.name, *nodes]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(file, "", f"the name '{name}' is used by two processes",
                              "give the station, the orchestrator and every node its own "
                              "name (each names a CURVE key)")
    addresses = [station.herald_address, station.request_address, orchestrator.address,
                 *(n.parameter_address for n in nodes.values() if n.parameter_address)]
    if len(set(addresses)) != len(addresses):
        raise ConfigError(file, "station/orchestrator", "two sockets share one address",
                          "give the herald, request and orchestrator sockets their own ports")
    link = _parse_link(file, data["link"], nodes)
    config = NetworkConfig(
        path=path, key_dir=(path.parent / net["key_dir"]).resolve(),
        run_dir=(path.parent / net["run_dir"]).resolve(),
        station=station, orchestrator=orchestrator, nodes=nodes, link=link,
        heartbeat_period=_positive(file, "network.heartbeat_period",
                                   net.get("heartbeat_period", 0.05), "s"),
        heartbeat_misses=_whole(file, "network.heartbeat_misses",
                                net.get("heartbeat_misses", 4), 1),
        stats_period=_positive(file, "network.stats_period", net.get("stats_period", 0.1),
                               "s"),
        clock_period=_positive(file, "network.clock_period", net.get("clock_period", 0.05),
                               "s"),
        resend_timeout=_positive(file, "network.resend_timeout",
                                 net.get("resend_timeout", 0.005), "s"),
        resend_attempts=_whole(file, "network.resend_attempts",
                               net.get("resend_attempts", 4), 1),
        database=(path.parent / net["database"]).resolve() if net.get("database") else None,
        calibration=_mapping(file, "calibration", data.get("calibration") or {}),
    )
    for node in nodes.values():
        if node.memory_cutoff <= config.resend_timeout:
            raise ConfigError(file, f"nodes.{node.name}.memory_cutoff",
                              f"{node.memory_cutoff:g} s is not longer than "
                              f"network.resend_timeout ({config.resend_timeout:g} s): no "
                              "resent herald could ever be used",
                              "raise the cutoff or lower resend_timeout")
    return config
