"""Reading and validating a bridge config (e.g. lab_configs/bridge_8.yaml) into a
`BridgeTopology`.

Strict like `network.network_config`: an unknown key (with the closest allowed one), a wrong
type, an impossible value, a port used twice, a station without both arms, a path without its
calibration entry are refused with a `ConfigError` naming the file, the entry and the fix.

The layout (units: s, km, Hz, dB)::

    bridge:      {name, run_dir, memory_cutoff, key_dir?}
    orchestrator: {address, telemetry_address?}             (across hosts; optional)
    world:       {address}                                   (across hosts; optional)
    switch:      {lab, instrument, ingress_ports, egress_ports, settle_time, insertion_loss_db}
    qnus:        {QNU: {lab, port, fibre_length_km}, ...}
    stations:    {STATION: {lab, arms: {a: {port, fibre_length_km}, b: {...}},
                            herald_address?, request_address?}, ...}
    calibration: {lifetime, recheck_time, database,
                  paths: {QNU/STATION: {age, arm_delay}, ...}}
    link_model:  {scheme, transducer_efficiency, ..., hom_visibility}   (LinkParameters)

Ports are the switch's own numbers (Polatis N x M: ingress 1..N, egress N+1..N+M): a QNU's
fibre ends on an ingress port, a station arm on an egress port. Each path's age and arm delay
seed its calibration record (``calibration.database``, `path_calibration`) when the store has
none; the orchestrator process reads the records, `qnetlab bridge`'s simulation the config's
values. Lab, database and key paths are relative to the config file.

Across hosts (`qnetlab bridge CONFIG --stations --role ...`, docs/bridge.md#across-hosts) each
process binds the addresses the config gives it: the orchestrator's ``orchestrator.address``
(and telemetry), each station's ``herald_address`` and ``request_address``, the bridge
world's twins from ``world.address``'s port up on its host (`BridgeConfig.world_address`);
``bridge.key_dir`` holds the keys (`qnetlab keys CONFIG`). These come all together or not at
all (`BridgeConfig.hosts`): without them `qnetlab bridge --stations` starts every process on
this host on free loopback ports with keys made for the run. Addresses are checked as the
network config's are: ``tcp://HOST:PORT``, no wildcard, no address used twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import check_keys

from .._config_checks import checked_address, checked_fraction, checked_number
from ..link_model import FIBRE_DELAY_S_PER_KM
from ..network_config import config_kind
from .topology import BridgeTopology, LinkParameters

ARMS = ("a", "b")
"""A station's two arms: the two inputs of its beam splitter."""
SCHEMES = ("single_click", "two_click")

_TOP = {"bridge", "switch", "qnus", "stations", "calibration", "link_model", "orchestrator",
        "world"}
_BRIDGE = {"name", "run_dir", "memory_cutoff", "key_dir"}
_ORCHESTRATOR = {"address", "telemetry_address"}
_WORLD = {"address"}
_SWITCH = {"lab", "instrument", "ingress_ports", "egress_ports", "settle_time",
           "insertion_loss_db"}
_QNU = {"lab", "port", "fibre_length_km"}
_STATION = {"lab", "arms", "herald_address", "request_address"}
_STATION_ADDRESSES = ("herald_address", "request_address")
ORCHESTRATOR_KEY = "bridge_orchestrator"
"""The orchestrator process's key name (`service.BridgeServiceSettings.name`)."""
APPLICATION_KEY = "app"
"""The key name of the application that runs a workload (`client.BridgeClient`)."""
MONITOR_KEY = "monitor"
"""The monitor's key name (`network.telemetry_config.MONITOR`)."""
RESERVED_NAMES = ("world", "orchestrator", ORCHESTRATOR_KEY, APPLICATION_KEY, MONITOR_KEY)
"""Names a QNU or station may not take: the roles of `qnetlab bridge --role` and the key
names of the orchestrator, the workload's application and the monitor."""
_ARM = {"port", "fibre_length_km"}
_CALIBRATION = {"lifetime", "recheck_time", "paths", "database"}
_PATH = {"age", "arm_delay"}
_LINK_FRACTIONS = {"transducer_efficiency", "collection_efficiency", "hom_visibility"}
_LINK_POSITIVE = {"conversion_bandwidth": "Hz", "memory_t2": "s", "repetition_limit": "Hz",
                  "detection_window": "s", "attempt_period": "s"}
_LINK = {"scheme", "transducer_added_noise", *_LINK_FRACTIONS, *_LINK_POSITIVE}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
MAX_PORTS = 1024
"""Largest switch side accepted (the Series 6000 family reaches 384 x 384)."""


@dataclass(frozen=True)
class SwitchConfig:
    lab: Path
    """The switch's own lab config (its OpticalSwitch instrument)."""
    instrument: str
    ingress_ports: int
    egress_ports: int
    settle_time: float
    """s from a connect command to a path that carries light."""
    insertion_loss_db: float

    @property
    def ingress(self) -> range:
        return range(1, self.ingress_ports + 1)

    @property
    def egress(self) -> range:
        return range(self.ingress_ports + 1, self.ingress_ports + self.egress_ports + 1)


@dataclass(frozen=True)
class QnuConfig:
    lab: Path
    """The QNU's node lab (transducer bench, calibration graph, database)."""
    port: int
    fibre_length_km: float
    """Fibre from the QNU to its switch port."""


@dataclass(frozen=True)
class StationConfig:
    lab: Path
    """The station's own lab (SNSPDs, time tagger, calibration graph)."""
    ports: tuple[int, int]
    """Egress ports of arms a and b."""
    fibre_length_km: float
    """Fibre from the switch to the beam splitter (both arms)."""
    herald_address: str | None = None
    """``tcp://HOST:PORT`` its heralding-station process publishes HERALDS on (PUB)."""
    request_address: str | None = None
    """``tcp://HOST:PORT`` of its request socket (ROUTER: re-sends of missed heralds)."""


@dataclass(frozen=True)
class PathConfig:
    age: float
    """s since the path's last arm-delay calibration, at the start of a run."""
    arm_delay: float
    """s, the path's calibrated arm delay."""


@dataclass(frozen=True)
class BridgeConfig:
    path: Path
    name: str
    run_dir: Path
    switch: SwitchConfig
    qnus: dict[str, QnuConfig]
    stations: dict[str, StationConfig]
    paths: dict[tuple[str, str], PathConfig]
    """(QNU, station) -> its calibration values."""
    link: LinkParameters
    memory_cutoff: float = 0.1
    calibration_lifetime: float = 600.0
    recheck_time: float = 0.2
    calibration_database: Path | None = None
    """The store of the paths' calibration records (``calibration.database``; None: the
    default, ``<run_dir>/bridge_calibration.db``)."""
    key_dir: Path | None = None
    """``bridge.key_dir``: the CURVE keys of the processes across hosts (`qnetlab keys`)."""
    orchestrator_address: str | None = None
    orchestrator_telemetry_address: str | None = None
    world_address: str | None = None
    """``tcp://HOST:PORT``: the bridge world serves its twins on HOST from PORT up."""

    @property
    def hosts(self) -> bool:
        """Whether the config places the processes on hosts (addresses and key_dir)."""
        return self.world_address is not None

    def key_names(self) -> list[str]:
        """Every key the bridge's processes use: the orchestrator, each station, each QNU's
        node agent, the application that runs a workload, the monitor (`qnetlab keys
        CONFIG`)."""
        return [ORCHESTRATOR_KEY, *self.stations, *self.qnus, APPLICATION_KEY, MONITOR_KEY]

    def bound_addresses(self) -> dict[str, str]:
        """Config entry -> address of every socket the processes bind (the world's twins
        aside: their ports follow from ``world.address``)."""
        found = {"orchestrator.address": self.orchestrator_address,
                 "orchestrator.telemetry_address": self.orchestrator_telemetry_address,
                 **{f"stations.{s}.{key}": getattr(c, key) for s, c in self.stations.items()
                    for key in _STATION_ADDRESSES}}
        return {entry: address for entry, address in found.items() if address is not None}

    @property
    def calibration_db(self) -> Path:
        """Where the orchestrator keeps each path's arm delay and its time
        (`path_calibration.PathCalibrations`)."""
        return self.calibration_database or self.run_dir / "bridge_calibration.db"

    def path_seeds(self) -> dict[tuple[str, str], tuple[float, float]]:
        """(QNU, station) -> (age s, arm delay s) as the config gives them: the seeds of a
        calibration store that has no record of a path yet."""
        return {path: (c.age, c.arm_delay) for path, c in self.paths.items()}

    def arm_delay(self, qnu: str, station: str) -> float:
        """s, the path's arm delay as the config gives it: the seed of its calibration
        record (the orchestrator reads the record, `path_calibration`)."""
        return self.paths[(qnu, station)].arm_delay

    def topology(self) -> BridgeTopology:
        """The bridge as the scheduling core and the simulation see it: calibration times on
        the run's clock (minus each path's age), the switch's settle time and loss."""
        qnus, stations = tuple(self.qnus), tuple(self.stations)
        calibrated = np.array([[-self.paths[(q, s)].age for s in stations] for q in qnus],
                              dtype=float)
        ports: dict[str, int] = {q: c.port for q, c in self.qnus.items()}
        for s, c in self.stations.items():
            ports.update({f"{s}/{arm}": port for arm, port in zip(ARMS, c.ports, strict=True)})
        return BridgeTopology(
            self.name, qnus, stations,
            {q: c.fibre_length_km for q, c in self.qnus.items()},
            {s: c.fibre_length_km for s, c in self.stations.items()},
            ports, calibrated, link=self.link, settle_time=self.switch.settle_time,
            recheck_time=self.recheck_time, calibration_lifetime=self.calibration_lifetime,
            memory_cutoff=self.memory_cutoff)


# -- checked values ---------------------------------------------------------------------------
def _number(file: str, entry: str, value: Any, unit: str, *, zero_ok: bool = True) -> float:
    # the network config's check, with zero allowed unless said (lengths, ages, times)
    return checked_number(file, entry, value, unit, zero_ok=zero_ok)


def _name(file: str, entry: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(file, entry, f"{value!r} is not a usable name",
                          "use letters, digits, '_' or '-', starting with a letter")
    return value


def _lab(file: str, entry: str, value: Any, example: str) -> Path:
    """A lab config path relative to the config file: it must exist and be a lab config."""
    if not isinstance(value, str) or not value:
        raise ConfigError(file, entry, "expected a lab config path",
                          f"write a path relative to this file, e.g. {example}")
    path = (Path(file).parent / value).resolve()
    if not path.is_file():
        raise ConfigError(file, entry, f"no lab config at {path}",
                          f"write the lab's config path relative to this file, e.g. {example}")
    if _kind(path) != "lab":
        raise ConfigError(file, entry, f"{value} is a network config, not a lab config",
                          f"name the lab itself (top-level 'instruments:'), e.g. {example}")
    return path


def _kind(path: Path) -> str:
    """`config_kind` of a file, read once per version of it (eight QNUs name two labs)."""
    stat = path.stat()
    return _cached_kind(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _cached_kind(path: Path, mtime_ns: int, size: int) -> str:
    return config_kind(path)


def _port(file: str, entry: str, value: Any, allowed: range, side: str,
          owners: dict[int, str]) -> int:
    """A switch port on `side` (ingress/egress) not used by another fibre (`owners`)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(file, entry, f"expected a port number, got {value!r}",
                          f"write an {side} port, {allowed.start}..{allowed.stop - 1}")
    if value not in allowed:
        raise ConfigError(file, entry, f"port {value} is not an {side} port of the switch "
                          f"({allowed.start}..{allowed.stop - 1})",
                          f"QNUs go on ingress ports, station arms on egress ports: write "
                          f"an {side} port, {allowed.start}..{allowed.stop - 1}")
    if value in owners:
        raise ConfigError(file, entry, f"port {value} is used twice (also by {owners[value]})",
                          "give every QNU and every station arm its own switch port")
    owners[value] = entry
    return value


def _section(file: str, data: dict[str, Any], key: str, allowed: set[str],
             required: set[str]) -> dict[str, Any]:
    raw = data.get(key)
    check_keys(file, key, raw, allowed, required)
    assert isinstance(raw, dict)  # check_keys refused anything else
    return dict(raw)


# -- sections ---------------------------------------------------------------------------------
def _parse_switch(file: str, data: dict[str, Any]) -> SwitchConfig:
    raw = _section(file, data, "switch", _SWITCH, {"lab", "ingress_ports", "egress_ports"})
    lab = _lab(file, "switch.lab", raw["lab"], "optical_switch_bench.yaml")
    instrument = raw.get("instrument", "optical_switch")
    if instrument not in _lab_instruments(lab):
        raise ConfigError(file, "switch.instrument", f"{instrument!r} is not an instrument of "
                          f"{lab.name}", "name the OpticalSwitch instrument of the switch's "
                          "lab, e.g. optical_switch")
    sides = []
    for side in ("ingress_ports", "egress_ports"):
        count = raw[side]
        if isinstance(count, bool) or not isinstance(count, int) or \
                not 1 <= count <= MAX_PORTS:
            raise ConfigError(file, f"switch.{side}", f"expected a port count 1..{MAX_PORTS}, "
                              f"got {count!r}", "write the switch's size, e.g. 16 for a "
                              "16 x 16 switch (:OXC:SWITch:SIZE?)")
        sides.append(count)
    return SwitchConfig(lab, instrument, sides[0], sides[1],
                        _number(file, "switch.settle_time", raw.get("settle_time", 0.025), "s"),
                        _number(file, "switch.insertion_loss_db",
                                raw.get("insertion_loss_db", 1.0), "dB"))


def _lab_instruments(lab: Path) -> set[str]:
    data = YAML(typ="safe").load(lab.read_text())
    instruments = data.get("instruments") if isinstance(data, dict) else None
    return set(instruments) if isinstance(instruments, dict) else set()


def _parse_qnus(file: str, data: dict[str, Any], switch: SwitchConfig,
                owners: dict[int, str]) -> dict[str, QnuConfig]:
    raw = data.get("qnus")
    if not isinstance(raw, dict) or len(raw) < 2:
        raise ConfigError(file, "qnus", "expected a mapping of at least two QNUs",
                          "write 'qnu0: {lab: node_a_lab.yaml, port: 1, fibre_length_km: 0.1}' "
                          "per QNU")
    qnus = {}
    for raw_name, spec in raw.items():
        entry = f"qnus.{raw_name}"
        name = _name(file, entry, raw_name)
        check_keys(file, entry, spec, _QNU, _QNU)
        qnus[name] = QnuConfig(
            _lab(file, f"{entry}.lab", spec["lab"], "node_a_lab.yaml"),
            _port(file, f"{entry}.port", spec["port"], switch.ingress, "ingress", owners),
            _number(file, f"{entry}.fibre_length_km", spec["fibre_length_km"], "km"))
    return qnus


def _parse_stations(file: str, data: dict[str, Any], switch: SwitchConfig,
                    owners: dict[int, str]) -> dict[str, StationConfig]:
    raw = data.get("stations")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(file, "stations", "expected a mapping of at least one station",
                          "write 'st0: {lab: heralding_station.yaml, arms: {a: {port: 17, "
                          "fibre_length_km: 0.01}, b: {port: 18, fibre_length_km: 0.01}}}'")
    stations = {}
    for raw_name, spec in raw.items():
        entry = f"stations.{raw_name}"
        name = _name(file, entry, raw_name)
        check_keys(file, entry, spec, _STATION, {"lab", "arms"})
        lab = _lab(file, f"{entry}.lab", spec["lab"], "heralding_station.yaml")
        check_keys(file, f"{entry}.arms", spec["arms"], set(ARMS), set())
        ports, lengths = [], []
        for arm in ARMS:
            where = f"{entry}.arms.{arm}"
            if arm not in spec["arms"]:
                raise ConfigError(file, where, f"station {name} has no arm '{arm}': its beam "
                                  "splitter has two inputs, each on its own switch port",
                                  f"add '{arm}: {{port: EGRESS_PORT, fibre_length_km: ...}}' "
                                  "under its arms")
            arm_spec = spec["arms"][arm]
            check_keys(file, where, arm_spec, _ARM, _ARM)
            ports.append(_port(file, f"{where}.port", arm_spec["port"], switch.egress,
                               "egress", owners))
            lengths.append(_number(file, f"{where}.fibre_length_km",
                                   arm_spec["fibre_length_km"], "km"))
        if round(lengths[0], 6) != round(lengths[1], 6):
            raise ConfigError(file, f"{entry}.arms", f"arms a ({lengths[0] * 1e3:g} m) and b "
                              f"({lengths[1] * 1e3:g} m) differ: unmatched arms widen the "
                              "heralding windows and cost fidelity, and the bridge takes a "
                              "station's two arms as one length",
                              "match the station's arm fibres (patch cords of one length)")
        addresses = [None if spec.get(key) is None
                     else checked_address(file, f"{entry}.{key}", spec[key])
                     for key in _STATION_ADDRESSES]
        stations[name] = StationConfig(lab, (ports[0], ports[1]), lengths[0], *addresses)
    return stations


def _parse_paths(file: str, raw: Any, qnus: Mapping[str, QnuConfig],
                 stations: Mapping[str, StationConfig]) -> dict[tuple[str, str], PathConfig]:
    entry = "calibration.paths"
    if not isinstance(raw, dict):
        raise ConfigError(file, entry, "expected a mapping QNU/STATION -> {age, arm_delay}",
                          "write 'qnu0/st0: {age: 300, arm_delay: 5.5e-7}' per path")
    paths = {}
    for key, spec in raw.items():
        where = f"{entry}.{key}"
        qnu, slash, station = str(key).partition("/")
        if not slash:
            raise ConfigError(file, where, f"{key!r} is not a path QNU/STATION",
                              "name the path as QNU/STATION, e.g. qnu0/st0")
        if qnu not in qnus:
            raise ConfigError(file, where, f"{qnu!r} is not a QNU of this bridge",
                              f"use one of: {', '.join(qnus)}")
        if station not in stations:
            raise ConfigError(file, where, f"{station!r} is not a station of this bridge",
                              f"use one of: {', '.join(stations)}")
        check_keys(file, where, spec, _PATH, _PATH)
        paths[(qnu, station)] = PathConfig(
            _number(file, f"{where}.age", spec["age"], "s"),
            _number(file, f"{where}.arm_delay", spec["arm_delay"], "s", zero_ok=False))
    for qnu in qnus:
        for station in stations:
            if (qnu, station) not in paths:
                raise ConfigError(file, f"{entry}.{qnu}/{station}", "the path has no "
                                  "calibration entry",
                                  f"add '{qnu}/{station}: {{age: S, arm_delay: S}}' (the age "
                                  "of its last arm-delay calibration at the start of a run; an "
                                  "age beyond calibration.lifetime is re-checked before use)")
    return paths


def _parse_link(file: str, data: dict[str, Any], longest_arm_km: float,
                switch: SwitchConfig) -> LinkParameters:
    raw = data.get("link_model") or {}
    check_keys(file, "link_model", raw, _LINK, set())
    values: dict[str, Any] = {}
    if "scheme" in raw:
        if raw["scheme"] not in SCHEMES:
            raise ConfigError(file, "link_model.scheme", f"unknown scheme {raw['scheme']!r}",
                              f"use one of: {', '.join(SCHEMES)}")
        values["scheme"] = raw["scheme"]
    for key in _LINK_FRACTIONS & set(raw):
        values[key] = checked_fraction(file, f"link_model.{key}", raw[key])
    for key, unit in _LINK_POSITIVE.items():
        if key in raw:
            values[key] = _number(file, f"link_model.{key}", raw[key], unit, zero_ok=False)
    if "transducer_added_noise" in raw:
        values["transducer_added_noise"] = _number(
            file, "link_model.transducer_added_noise", raw["transducer_added_noise"], "photons")
    link = LinkParameters(**values, switch_insertion_loss_db=switch.insertion_loss_db)
    # A QNU's memory holds one qubit: it emits again only once the last attempt's herald could
    # be back (as network_config checks for the single link).
    round_trip = 2.0 * longest_arm_km * FIBRE_DELAY_S_PER_KM
    if link.attempt_period < round_trip * (1.0 - 1e-9):
        raise ConfigError(file, "link_model.attempt_period", f"{link.attempt_period:g} s is "
                          f"shorter than the round trip over the longest arm "
                          f"({round_trip:.3g} s)", f"set attempt_period >= {round_trip:.3g} s")
    rounds = 2 if link.scheme == "two_click" else 1
    if link.detection_window >= link.attempt_period / rounds:
        raise ConfigError(file, "link_model.detection_window", f"{link.detection_window:g} s "
                          "does not fit in a round", "shorten it or lengthen attempt_period")
    return link


def _refuse_other_kinds(file: str, data: Any) -> None:
    """A network or lab config named where a bridge config belongs: say which it is."""
    keys = set(data) if isinstance(data, dict) else set()
    fix = "name a bridge config (top-level 'bridge:'), e.g. lab_configs/bridge_8.yaml"
    if "bridge" in keys:
        return
    if "network" in keys:
        raise ConfigError(file, "", "is a network config, not a bridge config (it is "
                          "qnetlab link's)", fix)
    if "instruments" in keys:
        raise ConfigError(file, "", "is a lab config, not a bridge config", fix)


def load_bridge_config(path: str | Path) -> BridgeConfig:
    """Read and validate a bridge config; `ConfigError` naming the entry on the first
    problem."""
    path = Path(path)
    file = str(path)
    try:
        data = YAML(typ="safe").load(path.read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(file, "", "no such file", "check the path; the shipped bridge "
                          "config is lab_configs/bridge_8.yaml") from None
    except YAMLError as exc:
        raise ConfigError(file, "", f"not valid YAML: {exc}", "fix the YAML syntax") from None
    _refuse_other_kinds(file, data)
    check_keys(file, "", data, _TOP, _TOP - {"link_model", "orchestrator", "world"})
    bridge = _section(file, data, "bridge", _BRIDGE, {"name", "run_dir"})
    if not isinstance(bridge["run_dir"], str) or not bridge["run_dir"]:
        raise ConfigError(file, "bridge.run_dir", "expected a directory path",
                          "write a path relative to this file, e.g. ../lab_data/runs/bridge_8")
    switch = _parse_switch(file, data)
    owners: dict[int, str] = {}
    qnus = _parse_qnus(file, data, switch, owners)
    stations = _parse_stations(file, data, switch, owners)
    clash = set(qnus) & set(stations)
    if clash:
        raise ConfigError(file, f"stations.{sorted(clash)[0]}", "a QNU has the same name",
                          "give every QNU and station its own name")
    for section, names in (("qnus", qnus), ("stations", stations)):
        reserved = next((n for n in names if n in RESERVED_NAMES), None)
        if reserved is not None:
            raise ConfigError(file, f"{section}.{reserved}", "the name is taken by a process "
                              f"of the bridge ({', '.join(RESERVED_NAMES)})",
                              "give it another name")
    calibration = _section(file, data, "calibration", _CALIBRATION, {"paths"})
    longest = max(qnus.values(), key=lambda q: q.fibre_length_km).fibre_length_km + \
        max(s.fibre_length_km for s in stations.values())
    return BridgeConfig(
        path=path, name=_name(file, "bridge.name", bridge["name"]),
        run_dir=(path.parent / bridge["run_dir"]).resolve(), switch=switch, qnus=qnus,
        stations=stations, paths=_parse_paths(file, calibration["paths"], qnus, stations),
        link=_parse_link(file, data, longest, switch),
        memory_cutoff=_number(file, "bridge.memory_cutoff", bridge.get("memory_cutoff", 0.1),
                              "s", zero_ok=False),
        calibration_lifetime=_number(file, "calibration.lifetime",
                                     calibration.get("lifetime", 600.0), "s", zero_ok=False),
        recheck_time=_number(file, "calibration.recheck_time",
                             calibration.get("recheck_time", 0.2), "s"),
        calibration_database=_database(file, calibration.get("database")),
        **_hosts(file, data, bridge, stations))


def _database(file: str, value: Any) -> Path | None:
    """``calibration.database``: a path relative to the config file, or left out."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.endswith(".db"):
        raise ConfigError(file, "calibration.database", f"{value!r} is not a database path",
                          "write a .db path relative to this file, e.g. "
                          "../lab_data/runs/bridge_8/bridge_calibration.db, or leave it out "
                          "(the default is that file under bridge.run_dir)")
    return (Path(file).parent / value).resolve()



def _hosts(file: str, data: dict[str, Any], bridge: dict[str, Any],
           stations: Mapping[str, StationConfig]) -> dict[str, Any]:
    """``bridge.key_dir``, ``orchestrator:`` and ``world:``, checked: the addresses all
    together or none, each a ``tcp://HOST:PORT`` of its own (module docstring)."""
    out: dict[str, Any] = {}
    key_dir = bridge.get("key_dir")
    if key_dir is not None:
        if not isinstance(key_dir, str) or not key_dir:
            raise ConfigError(file, "bridge.key_dir", "expected a directory path",
                              "write a path relative to this file, e.g. "
                              "../lab_data/keys/bridge_8")
        out["key_dir"] = (Path(file).parent / key_dir).resolve()
    given: dict[str, str] = {}
    for section, allowed in (("orchestrator", _ORCHESTRATOR), ("world", _WORLD)):
        if section in data:
            raw = _section(file, data, section, allowed, {"address"})
            given.update({f"{section}.{k}": checked_address(file, f"{section}.{k}", v)
                          for k, v in raw.items()})
    for name, station in stations.items():
        given.update({f"stations.{name}.{key}": getattr(station, key)
                      for key in _STATION_ADDRESSES if getattr(station, key) is not None})
    if not given:
        return out
    needed = ["orchestrator.address", "world.address",
              *(f"stations.{s}.{key}" for s in stations for key in _STATION_ADDRESSES)]
    missing = [entry for entry in needed if entry not in given]
    if missing or key_dir is None:
        where = missing[0] if missing else "bridge.key_dir"
        raise ConfigError(file, where, "missing: a bridge across hosts gives every process "
                          f"its addresses and the key directory (it has {next(iter(given))})",
                          f"add {where} (tcp://HOST:PORT on the host that runs it; key_dir: a "
                          "folder relative to this file), or leave every address out to run "
                          "all processes on this host")
    seen: dict[str, str] = {}
    for entry, address in given.items():
        if address in seen:
            raise ConfigError(file, entry, f"{address} is also {seen[address]}",
                              "give every socket its own port")
        seen[address] = entry
    out.update(orchestrator_address=given["orchestrator.address"],
               orchestrator_telemetry_address=given.get("orchestrator.telemetry_address"),
               world_address=given["world.address"])
    return out
