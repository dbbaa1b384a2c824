"""Reading and validating a lab's station YAML.

The file keeps QCoDeS's station layout (``instruments: NAME: {type, address, init,
parameters}``) and adds a ``qnetlab:`` section. QCoDeS only warns on schema violations; we
refuse them, naming the file, the entry and the fix, because a typo in a safety limit must
never pass silently.

Example::

    qnetlab:
      simulation: {seed: 1, transducer: bulk_eo_cw}
      interlocks:
        - name: pump_off_when_fridge_warm
          guards: [pump_laser.power, pump_laser.output]
          sensor: fridge.temperature
          max: 0.05
      transducer_setup: {pump_laser: pump_laser, mw_source: mw_source, vna: vna,
                         power_meter: power_meter, fridge: fridge}
    instruments:
      mw_source:
        type: qnetlab.drivers.keysight.KeysightN5183B
        address: {sim: keysight_n5183b, real: "TCPIP0::192.168.1.20::5025::SOCKET"}
        parameters:
          power: {limits: [-20, 10], ramp_rate: 5}   # dBm, dBm/s
"""

from __future__ import annotations

import difflib
import io
import os
import re
from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyvisa import rname
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from .calibrated_constant import parse_constant
from .errors import ConfigError

PROFILES = ("sim", "real")

_TOP_KEYS = {"instruments", "qnetlab"}
_QNETLAB_KEYS = {"simulation", "interlocks", "transducer_setup", "database", "wiring",
                 "calibration", "telemetry"}
_TELEMETRY_KEYS = {"address", "key_dir", "name"}
_TCP = re.compile(r"^tcp://(?P<host>[A-Za-z0-9.\-]+):(?P<port>\d{1,5})$")
_INSTRUMENT_KEYS = {"type", "address", "init", "parameters", "enable_forced_reconnect"}
_PARAMETER_KEYS = {"limits", "ramp_rate", "initial_value", "label"}
_INTERLOCK_KEYS = {"name", "guards", "sensor", "max"}
_SETUP_ROLES = {"pump_laser", "mw_source", "vna", "power_meter", "fridge"}
_SETUP_CONSTANTS = {"optical_resonance_wavelength", "mw_line_attenuation",
                    "optical_output_loss", "detection_efficiency", "fridge_cooling_coefficient"}
"""Calibration constants of the setup in the TransducerSetup parameter's unit: a plain number
(exact) or ``{value: V, error: E}`` (`CalibratedConstant`, E its one-sigma uncertainty)."""
_SETUP_OPTIONS = {"pump_lock", "pump_lock_center", "pump_lock_span"}
"""The pump's offset lock (an RF source whose frequency sets the detuning, TransducerSetup)."""
_SETUP_KEYS = _SETUP_ROLES | _SETUP_CONSTANTS | _SETUP_OPTIONS | {"detector"}


@dataclass(frozen=True)
class ParameterConfig:
    limits: tuple[float, float] | None = None
    ramp_rate: float | None = None
    """Largest change per second, in the parameter's unit per second."""
    initial_value: Any = None


@dataclass(frozen=True)
class InstrumentConfig:
    name: str
    type: str
    addresses: dict[str, str]
    """Per profile: 'real' is a VISA resource name, 'sim' the simulated twin's model."""
    init: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, ParameterConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class InterlockConfig:
    name: str
    guards: tuple[str, ...]
    """'instrument.parameter' names that may not be set to a non-zero value while tripped."""
    sensor: str
    maximum: float


@dataclass(frozen=True)
class Wire:
    """What drives one time-tagger input: a detector channel (``snspd.ch1``: SIM900 slot 1)
    or an AWG marker (``awg.ch1.marker2``)."""

    instrument: str
    channel: int
    marker: int | None = None

    def __str__(self) -> str:
        tail = f".marker{self.marker}" if self.marker is not None else ""
        return f"{self.instrument}.ch{self.channel}{tail}"


@dataclass(frozen=True)
class TelemetryConfig:
    """Where the lab's process publishes telemetry for ``qnetlab monitor``
    (``qnetlab.telemetry``; network.telemetry)."""

    address: str
    """PUB socket, ``tcp://HOST:PORT``."""
    key_dir: Path
    """The lab's CURVE keys (``qnetlab keys CONFIG`` makes the publisher's and "monitor")."""
    name: str
    """The publisher's key name and the telemetry's source (default: the config file's
    stem, e.g. transducer_bench)."""


_WIRE = re.compile(r"^(?P<inst>[A-Za-z_]\w*)\.ch(?P<ch>\d+)(?:\.marker(?P<m>\d+))?$")


@dataclass(frozen=True)
class LabConfig:
    path: Path
    instruments: dict[str, InstrumentConfig]
    simulation: dict[str, Any] = field(default_factory=dict)
    interlocks: tuple[InterlockConfig, ...] = ()
    transducer_setup: dict[str, Any] | None = None
    """Role -> instrument name; optionally the photon-counting `detector` channel
    ('snspd.ch1') and calibration constants (`TransducerSetup` parameters, their units)."""
    database: Path | None = None
    wiring: dict[str, dict[int, Wire]] = field(default_factory=dict)
    """Cables into time taggers: tagger name -> input number -> what drives that input."""
    calibration: dict[str, Any] = field(default_factory=dict)
    """The raw ``qnetlab.calibration`` mapping (the lab's calibration graph); validated by
    `sequences.calibration.graph_config`, since instruments do not know the sequences."""

    telemetry: TelemetryConfig | None = None
    """Where this lab's process publishes telemetry (None: it publishes none)."""

    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The YAML mapping this config was parsed from; the `with_*` methods change a copy of
    it and parse that again, so a changed config is validated like a loaded one."""

    def error(self, entry: str, problem: str, fix: str = "") -> ConfigError:
        return ConfigError(str(self.path), entry, problem, fix)

    @property
    def port_count(self) -> int:
        """How many TCP ports the real addresses take (what `with_ports` assigns)."""
        return len(_real_port_entries(self.document))

    def with_ports(self, first_port: int, host: str | None = None) -> LabConfig:
        """The same lab with its real TCP addresses on ports first_port, first_port + 1, ...
        in file order (`port_count` of them), each keeping its host unless `host` is given
        (tests and rehearsals on free loopback ports; cf. `NetworkConfig.with_ports`)."""
        document = deepcopy(self.document)
        for port, (mapping, key) in enumerate(_real_port_entries(document), first_port):
            mapping[key] = _with_port(mapping[key], port, host)
        return parse_config(self.path, document)

    def with_simulation(self, **entries: Any) -> LabConfig:
        """The same lab with ``qnetlab.simulation`` entries set (replacing those of the
        same name), e.g. ``with_simulation(transducer="silicon_cw")``."""
        document = deepcopy(self.document)
        qnetlab = document.setdefault("qnetlab", {}) or {}
        document["qnetlab"] = qnetlab
        qnetlab["simulation"] = {**(qnetlab.get("simulation") or {}), **entries}
        return parse_config(self.path, document)

    def with_transducer_setup(self, **values: Any) -> LabConfig:
        """The same lab with ``qnetlab.transducer_setup`` values changed (calibration
        constants in the `TransducerSetup` parameters' units, or roles)."""
        if self.transducer_setup is None:
            raise self.error("qnetlab.transducer_setup", "this lab has no transducer setup",
                             "add a 'transducer_setup:' section before changing it")
        document = deepcopy(self.document)
        document["qnetlab"]["transducer_setup"].update(values)
        return parse_config(self.path, document)

    def to_yaml(self, path: str | Path) -> LabConfig:
        """Write this config to `path` as YAML (comments are not kept; relative paths such
        as ``database`` now resolve from `path`'s folder) and return it loaded from
        there."""
        path = Path(path)
        stream = io.StringIO()
        yaml = YAML(typ="safe")
        yaml.default_flow_style = False
        # Keep the file's order (instruments, ports); ruamel annotates this flag as None.
        yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
        yaml.dump(self.document, stream)
        path.write_text(stream.getvalue())
        return load_config(path)


_PORTED = (re.compile(r"^(TCPIP\d*::[^:]+::)\d+(::SOCKET)$", re.IGNORECASE),
           re.compile(r"^(tcp://[^/]+:)\d+()$"))
"""Addresses with a TCP port: a VISA socket resource (``TCPIP0::HOST::PORT::SOCKET``) and a
ZeroMQ TCP address (``tcp://HOST:PORT``); groups 1 and 2 are what surrounds the port."""
_PORTED_HOST = re.compile(r"^(TCPIP\d*::|tcp://)[^:/]+(::|:)$", re.IGNORECASE)
"""The host inside group 1 of `_PORTED` (what comes before the port)."""


def _with_port(address: str, port: int, host: str | None = None) -> str:
    for pattern in _PORTED:
        match = pattern.match(address)
        if match:
            head = match[1] if host is None else _PORTED_HOST.sub(f"\\g<1>{host}\\g<2>", match[1])
            return f"{head}{port}{match[2]}"
    return address


def _has_port(value: Any) -> bool:
    return isinstance(value, str) and any(p.match(value) for p in _PORTED)


def _real_port_entries(document: Mapping[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(mapping, key) of every real TCP address with a port in a config's YAML `document`,
    in file order: each instrument's real address and the ``tcp://`` addresses among its
    ``init`` values (the ID1000's data link)."""
    entries: list[tuple[dict[str, Any], str]] = []
    for spec in (document.get("instruments") or {}).values():
        address = spec.get("address")
        holder, key = (spec, "address") if isinstance(address, str) else (address, "real")
        if isinstance(holder, dict) and _has_port(holder.get(key)):
            entries.append((holder, key))
        init = spec.get("init") or {}
        entries += [(init, name) for name, value in init.items()
                    if _has_port(value) and value.startswith("tcp://")]
    # Last, so that adding telemetry to a lab moves no instrument's port.
    telemetry = (document.get("qnetlab") or {}).get("telemetry")
    if isinstance(telemetry, dict) and _has_port(telemetry.get("address")):
        entries.append((telemetry, "address"))
    return entries


def check_keys(file: str, entry: str, data: Any, allowed: set[str], required: set[str]) -> None:
    """Refuse a non-mapping, an unknown key (suggesting the closest allowed one) or a missing
    required key of config entry `entry`, naming the file, the entry and the fix."""
    if not isinstance(data, dict):
        raise ConfigError(file, entry, f"expected a mapping, got {type(data).__name__}",
                          f"write it as 'key: value' lines ({', '.join(sorted(allowed))})")
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean '{close[0]}'?" if close else ""
            raise ConfigError(file, f"{entry}.{key}" if entry else str(key),
                              f"unknown key '{key}'",
                              f"{hint} allowed here: {', '.join(sorted(allowed))}".strip())
    for key in sorted(required - set(data)):
        raise ConfigError(file, entry, f"missing required key '{key}'", f"add '{key}:'")


def _number(file: str, entry: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(file, entry, f"expected a number, got {value!r}",
                          "write a plain number in the parameter's SI unit")
    return float(value)


def _parse_parameter(file: str, entry: str, data: Any) -> ParameterConfig:
    check_keys(file, entry, data, _PARAMETER_KEYS, set())
    limits = None
    if "limits" in data:
        raw = data["limits"]
        if not isinstance(raw, list) or len(raw) != 2:
            raise ConfigError(file, f"{entry}.limits", f"expected [low, high], got {raw!r}",
                              "write the soft limits as a two-element list")
        low, high = (_number(file, f"{entry}.limits", v) for v in raw)
        if low > high:
            raise ConfigError(file, f"{entry}.limits", f"low limit {low:g} above high {high:g}",
                              "swap the two values")
        limits = (low, high)
    ramp = None
    if "ramp_rate" in data:
        ramp = _number(file, f"{entry}.ramp_rate", data["ramp_rate"])
        if ramp <= 0:
            raise ConfigError(file, f"{entry}.ramp_rate", f"must be positive, got {ramp:g}",
                              "give the largest change per second, or remove the key")
    return ParameterConfig(limits, ramp, data.get("initial_value"))


def _parse_instrument(file: str, name: str, data: Any) -> InstrumentConfig:
    entry = f"instruments.{name}"
    check_keys(file, entry, data, _INSTRUMENT_KEYS, {"type", "address"})
    if not isinstance(data["type"], str) or "." not in data["type"]:
        raise ConfigError(file, f"{entry}.type", f"expected 'package.module.Class', got "
                          f"{data['type']!r}", "name the driver class, e.g. "
                          "qnetlab.drivers.keysight.KeysightN5183B")
    address = data["address"]
    if isinstance(address, str):
        addresses = {"real": address}
    else:
        check_keys(file, f"{entry}.address", address, set(PROFILES), set())
        addresses = {k: str(v) for k, v in address.items()}
    if "real" in addresses:
        _check_visa_address(file, f"{entry}.address.real", addresses["real"])
    init = data.get("init") or {}
    if not isinstance(init, dict):
        raise ConfigError(file, f"{entry}.init", "expected a mapping of keyword arguments",
                          "write the driver's keyword arguments as 'name: value' lines")
    params_raw = data.get("parameters") or {}
    if not isinstance(params_raw, dict):
        raise ConfigError(file, f"{entry}.parameters", "expected a mapping",
                          "write one 'parameter_name: {limits: [lo, hi]}' line per parameter")
    parameters = {
        str(p): _parse_parameter(file, f"{entry}.parameters.{p}", spec)
        for p, spec in params_raw.items()
    }
    return InstrumentConfig(name, data["type"], addresses, dict(init), parameters)


_VISA_INTERFACE = re.compile(r"^(TCPIP|GPIB|ASRL|USB|VXI|PXI|VICP)\d*(::|$)", re.IGNORECASE)
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_VISA_FIX = ("write the VISA resource name with '::' between its parts: "
             "TCPIP0::HOST::PORT::SOCKET (a raw socket, e.g. port 5025) or TCPIP0::HOST::INSTR "
             "(VXI-11), GPIB0::ADDRESS::INSTR, ASRL/dev/ttyUSB0::INSTR")


def _visa_address_problem(address: str) -> str | None:
    """What is wrong with a VISA resource name, or None. Checked here because pyvisa-py
    accepts some malformed names (``TCPIP0::host:5025:SOCKET`` parses as a VXI-11 host
    called ``host:5025:SOCKET``) and then fails deep inside a socket call."""
    try:
        parsed = rname.parse_resource_name(address)
    except rname.InvalidResourceName as exc:
        return f"{address!r} is not a VISA resource name ({exc})"
    host = getattr(parsed, "host_address", None)
    if host is not None and not _HOST.match(host):
        return f"{address!r}: {host!r} is not a host name or IPv4 address"
    port = getattr(parsed, "port", None)
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        return f"{address!r}: port {port!r} is not a TCP port (1 to 65535)"
    return None


def _check_visa_address(file: str, entry: str, address: str) -> None:
    """Refuse a malformed VISA address at load. Addresses of other transports (``tcp://``
    for ZeroMQ) and VISA aliases (no interface prefix, no '::') are left to the driver."""
    if "://" in address or not (_VISA_INTERFACE.match(address) or "::" in address):
        return
    problem = _visa_address_problem(address)
    if problem is None:
        return
    # The usual slip: single colons where VISA wants double ones.
    repaired = re.sub(r"(?<!:):(?!:)", "::", address)
    if repaired != address and _visa_address_problem(repaired) is None:
        raise ConfigError(file, entry, problem,
                          f"write '{repaired}' (VISA separates the parts with '::')")
    raise ConfigError(file, entry, problem, _VISA_FIX)


def _parse_telemetry(path: Path, data: Any) -> TelemetryConfig:
    file, entry = str(path), "qnetlab.telemetry"
    check_keys(file, entry, data, _TELEMETRY_KEYS, {"address", "key_dir"})
    address = data["address"]
    match = _TCP.match(address) if isinstance(address, str) else None
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ConfigError(file, f"{entry}.address", f"{address!r} is not a tcp address",
                          "write tcp://HOST:PORT, e.g. tcp://127.0.0.1:29120 (the host's "
                          "address the monitor connects to)")
    key_dir = data["key_dir"]
    if not isinstance(key_dir, str) or not key_dir:
        raise ConfigError(file, f"{entry}.key_dir", "expected a directory path",
                          "write a path relative to this file, e.g. ../lab_data/keys/LAB "
                          "(`qnetlab keys CONFIG` fills it)")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", name):
        raise ConfigError(file, f"{entry}.name", f"{name!r} is not a usable publisher name",
                          "use letters, digits, '_' or '-', starting with a letter (it "
                          "names the CURVE key files)")
    return TelemetryConfig(address, Path(os.path.normpath(path.parent / key_dir)), name)


def _parse_interlock(file: str, entry: str, data: Any) -> InterlockConfig:
    check_keys(file, entry, data, _INTERLOCK_KEYS, _INTERLOCK_KEYS)
    guards = data["guards"]
    if isinstance(guards, str):
        guards = [guards]
    for ref in [*guards, data["sensor"]]:
        if not isinstance(ref, str) or ref.count(".") != 1:
            raise ConfigError(file, entry, f"expected 'instrument.parameter', got {ref!r}",
                              "name the parameter as instrument_name.parameter_name")
    return InterlockConfig(str(data["name"]), tuple(guards), data["sensor"],
                           _number(file, f"{entry}.max", data["max"]))


def _parse_wiring(file: str, data: Any, instruments: dict[str, InstrumentConfig]
                  ) -> dict[str, dict[int, Wire]]:
    # The cabling is physical, so it lives beside the instruments (not under `simulation`):
    # the loader feeds detector count rates from it in every profile, the simulated bench
    # routes its clicks and marker edges along it.
    entry = "qnetlab.wiring"
    fix = ("write 'tagger_name: {input_number: detector.ch<slot> | awg.ch<n>.marker<m>}', "
           "e.g. 'tagger: {1: snspd.ch1, 4: awg.ch1.marker1}'")
    if not isinstance(data, dict):
        raise ConfigError(file, entry, "expected a mapping", fix)
    out: dict[str, dict[int, Wire]] = {}
    for tagger, inputs in data.items():
        if tagger not in instruments:
            raise ConfigError(file, f"{entry}.{tagger}", f"'{tagger}' is not an instrument "
                              "of this station", f"use one of: {', '.join(instruments)}")
        if not isinstance(inputs, dict) or not inputs:
            raise ConfigError(file, f"{entry}.{tagger}", "expected a mapping of inputs", fix)
        wires: dict[int, Wire] = {}
        for number, source in inputs.items():
            where = f"{entry}.{tagger}.{number}"
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ConfigError(file, where, f"input {number!r} is not a whole number >= 1",
                                  "key each cable by the tagger's front-panel input number")
            match = _WIRE.match(source) if isinstance(source, str) else None
            if match is None:
                raise ConfigError(file, where, f"cannot read {source!r}", fix)
            inst = match["inst"]
            if inst not in instruments or inst == tagger:
                raise ConfigError(file, where, f"'{inst}' is not another instrument of this "
                                  "station", f"use one of: {', '.join(instruments)}")
            marker = int(match["m"]) if match["m"] is not None else None
            wire = Wire(inst, int(match["ch"]), marker)
            if wire in wires.values():
                raise ConfigError(file, where, f"{wire} is already cabled to another input",
                                  "a source drives one input here; split it in the source's "
                                  "own config if it really fans out")
            wires[number] = wire
        out[str(tagger)] = wires
    return out


def load_config(path: str | Path) -> LabConfig:
    """Read and validate a lab config; raise `ConfigError` on the first problem."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(file, "", "no such file",
                          "check the path; the shipped configs are in lab_configs/") from None
    except IsADirectoryError:
        raise ConfigError(file, "", "is a directory, not a lab config",
                          "name the YAML file itself, e.g. lab_configs/transducer_bench.yaml"
                          ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(file, "", f"cannot be read ({exc})",
                          "check the file's permissions and that it is a UTF-8 YAML file"
                          ) from None
    try:
        data = YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise ConfigError(file, "", f"not valid YAML: {exc}", "fix the YAML syntax") from None
    return parse_config(path, data)


def parse_config(path: Path, data: Any) -> LabConfig:
    """Validate a lab config's parsed YAML `data` (errors name `path`)."""
    file = str(path)
    document = deepcopy(data)
    check_keys(file, "", data, _TOP_KEYS, {"instruments"})
    if not isinstance(data["instruments"], dict) or not data["instruments"]:
        raise ConfigError(file, "instruments", "no instruments listed",
                          "list at least one instrument under 'instruments:'")
    instruments = {
        str(name): _parse_instrument(file, str(name), spec)
        for name, spec in data["instruments"].items()
    }
    q = data.get("qnetlab") or {}
    check_keys(file, "qnetlab", q, _QNETLAB_KEYS, set())
    interlocks_raw = q.get("interlocks") or []
    if not isinstance(interlocks_raw, list):
        raise ConfigError(file, "qnetlab.interlocks", "expected a list",
                          "write each interlock as a '- name: ...' item")
    interlocks = tuple(
        _parse_interlock(file, f"qnetlab.interlocks[{i}]", item)
        for i, item in enumerate(interlocks_raw)
    )
    for lock in interlocks:
        for ref in [*lock.guards, lock.sensor]:
            if ref.split(".")[0] not in instruments:
                raise ConfigError(file, f"qnetlab.interlocks ({lock.name})",
                                  f"'{ref}' names no instrument of this station",
                                  f"use one of: {', '.join(instruments)}")
    setup = q.get("transducer_setup")
    if setup is not None:
        check_keys(file, "qnetlab.transducer_setup", setup, _SETUP_KEYS, _SETUP_ROLES)
        setup = dict(setup)
        for key in sorted(_SETUP_CONSTANTS & set(setup)):
            setup[key] = parse_constant(file, f"qnetlab.transducer_setup.{key}", setup[key])
        detector = setup.get("detector")
        if detector is not None and (
                not isinstance(detector, str) or detector.split(".")[0] not in instruments
                or not re.fullmatch(r"[^.]+\.ch\d+", detector)):
            raise ConfigError(file, "qnetlab.transducer_setup.detector",
                              f"{detector!r} is not a detector channel of this station",
                              "write <detector instrument>.ch<channel>, e.g. snspd.ch1")
        pump_lock = setup.get("pump_lock")
        if pump_lock is not None and (not isinstance(pump_lock, str)
                                      or pump_lock not in instruments):
            raise ConfigError(file, "qnetlab.transducer_setup.pump_lock",
                              f"'{pump_lock}' is not an instrument of this station",
                              "name the RF source of the pump's offset lock, or leave "
                              "pump_lock out (the laser tunes alone)")
        for role in _SETUP_ROLES:
            inst = setup[role]
            if not isinstance(inst, str) or inst not in instruments:
                raise ConfigError(file, f"qnetlab.transducer_setup.{role}",
                                  f"'{inst}' is not an instrument of this station",
                                  f"use one of: {', '.join(instruments)}")
    simulation = q.get("simulation") or {}
    if not isinstance(simulation, dict):
        raise ConfigError(file, "qnetlab.simulation", "expected a mapping",
                          "write e.g. 'simulation: {seed: 1, transducer: bulk_eo_cw}'")
    database = q.get("database")
    wiring = _parse_wiring(file, q["wiring"], instruments) if "wiring" in q else {}
    calibration = q.get("calibration") or {}
    if not isinstance(calibration, dict):
        raise ConfigError(file, "qnetlab.calibration", "expected a mapping",
                          "write 'calibration: {nodes: {NAME: {sequence: ..., ...}}}'")
    return LabConfig(
        path=path,
        instruments=instruments,
        simulation=dict(simulation),
        interlocks=interlocks,
        transducer_setup=dict(setup) if setup else None,
        database=Path(os.path.normpath(path.parent / database)) if database else None,
        wiring=wiring,
        calibration=dict(calibration),
        telemetry=_parse_telemetry(path, q["telemetry"]) if "telemetry" in q else None,
        document=document,
    )
