"""The ``qnetlab.calibration`` section of a station config: a lab's calibration graph.

Parses each node's ``sequence``, ``depends_on``, ``timeout``, ``options``/``check_options``,
``inputs``/``check_inputs``, ``settings``, ``commit``, ``spec`` and ``apply`` into `NodeConfig`.
Parsing is strict: every problem raises `ConfigError` naming the file, the entry and the fix;
cycles and unknown qualified dependencies are `CalibrationGraph`'s checks.

Semantics of every key, with an example: docs/calibration_graph.md#3-the-graph-config
(full graph of a network node: lab_configs/node_a_lab.yaml).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import LabConfig, check_keys

from ..registry import sequence_class

_SECTION = "qnetlab.calibration"
_TOP_KEYS = {"lab", "nodes"}
_NODE_KEYS = {"sequence", "depends_on", "timeout", "description", "options", "check_options",
              "inputs", "check_inputs", "settings", "commit", "spec", "apply"}
_COMMIT_KEYS = {"unit", "from", "field"}
_TOLERANCE_KEYS = {"relative", "absolute", "sigmas"}


@dataclass(frozen=True)
class Committed:
    """One value a node commits: `name` (its parameter name in the store) and `unit`, taken
    from the analysis' proposal or fitted value `source` (its `field`: value or stderr)."""

    name: str
    unit: str
    source: str
    field: str = "value"


@dataclass(frozen=True)
class Tolerance:
    """How far a quick check's value may lie from the stored one (module docstring)."""

    relative: float | None = None
    absolute: float | None = None
    """In the value's unit."""
    sigmas: float | None = None
    """Standard errors of the quick check's value."""

    def judge(self, measured: float, stderr: float, stored: float) -> tuple[bool, str]:
        """(in spec, why): in spec when the change is within any of the tolerances."""
        change = measured - stored
        allowed: list[str] = []
        ok = False
        if self.relative is not None:
            ok |= abs(change) <= self.relative * abs(stored)
            allowed.append(f"{self.relative:.3g} relative")
        if self.absolute is not None:
            ok |= abs(change) <= self.absolute
            allowed.append(f"{self.absolute:.3g} absolute")
        if self.sigmas is not None:
            ok |= math.isfinite(stderr) and abs(change) <= self.sigmas * stderr
            allowed.append(f"{self.sigmas:g} standard errors")
        return ok, f"change {change:.4g} ({' or '.join(allowed)} allowed)"


@dataclass(frozen=True)
class NodeConfig:
    """One calibration node of a lab, as declared (module docstring)."""

    entry: str
    """The node's key under ``nodes`` (e.g. 'dark_counts')."""
    lab: str
    sequence: str
    timeout: float
    """s"""
    depends_on: tuple[str, ...] = ()
    """Qualified names ('node_a.dark_counts')."""
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    check_options: dict[str, Any] = field(default_factory=dict)
    """Over `options`, for the quick check."""
    inputs: dict[str, str] = field(default_factory=dict)
    """Option -> stored parameter, for both calibrate and check."""
    check_inputs: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    """Station parameter ('instrument.parameter') -> value set for each run, restored after."""
    commit: tuple[Committed, ...] = ()
    spec: dict[str, Tolerance] = field(default_factory=dict)
    apply: dict[str, str] = field(default_factory=dict)
    """Committed value -> station parameter it is set on."""
    source: str = ""
    """The config file, for messages."""

    @property
    def name(self) -> str:
        return f"{self.lab}.{self.entry}"

    def units(self) -> dict[str, str]:
        return {c.name: c.unit for c in self.commit}


@dataclass(frozen=True)
class CalibrationConfig:
    lab: str
    nodes: dict[str, NodeConfig]
    """Qualified name -> node, in the order written."""


def parse_calibration(config: LabConfig) -> CalibrationConfig:
    """Read and validate ``qnetlab.calibration`` of `config` (ConfigError on a problem).
    A config without the section has an empty graph."""
    file = str(config.path)
    raw = config.calibration
    if not raw:
        return CalibrationConfig(config.path.stem, {})
    _keys(file, _SECTION, raw, _TOP_KEYS, {"nodes"})
    lab = raw.get("lab", config.path.stem)
    if not isinstance(lab, str) or not lab or "." in lab:
        raise ConfigError(file, f"{_SECTION}.lab", f"{lab!r} is not a lab name",
                          "write a short name without dots, e.g. 'lab: node_a'")
    nodes_raw = raw["nodes"]
    if not isinstance(nodes_raw, dict) or not nodes_raw:
        raise ConfigError(file, f"{_SECTION}.nodes", "no calibration nodes listed",
                          "list each node as 'NAME: {sequence: ..., timeout: ..., commit: ...}'")
    entries = [str(k) for k in nodes_raw]
    nodes = {}
    for key, spec in nodes_raw.items():
        node = _parse_node(file, lab, str(key), spec, entries, config)
        nodes[node.name] = node
    for node in nodes.values():
        _check_inputs(file, node, nodes)
    return CalibrationConfig(lab, nodes)


# -- one node -----------------------------------------------------------------------------------
def _parse_node(file: str, lab: str, key: str, data: Any, entries: list[str],
                config: LabConfig) -> NodeConfig:
    entry = f"{_SECTION}.nodes.{key}"
    if "." in key or not key:
        raise ConfigError(file, entry, f"node name {key!r} contains a dot",
                          "name it with letters, digits and underscores; the lab name is "
                          "prefixed for you")
    _keys(file, entry, data, _NODE_KEYS, {"sequence", "timeout", "commit"})
    name = data["sequence"]
    try:
        cls = sequence_class(str(name))
    except ValueError as exc:
        raise ConfigError(file, f"{entry}.sequence", str(exc),
                          "name a sequence from `qnetlab run --help`") from None
    timeout = _positive(file, f"{entry}.timeout", data["timeout"], "s")
    depends = data.get("depends_on") or []
    if isinstance(depends, str):
        depends = [depends]
    if not isinstance(depends, list):
        raise ConfigError(file, f"{entry}.depends_on", "expected a list of node names",
                          "write e.g. 'depends_on: [dark_counts]'")
    qualified = []
    for dep in depends:
        dep = str(dep)
        if "." in dep:
            qualified.append(dep)  # another scope's node: the graph checks it exists
            continue
        if dep not in entries:
            close = difflib.get_close_matches(dep, entries, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(file, f"{entry}.depends_on", f"unknown node {dep!r}",
                              f"{hint}use one of: {', '.join(entries)}")
        if dep == key:
            raise ConfigError(file, f"{entry}.depends_on", f"{key!r} depends on itself",
                              "remove it from its own depends_on")
        qualified.append(f"{lab}.{dep}")
    fields = _option_fields(cls.options_class)
    options = _options(file, f"{entry}.options", data.get("options"), fields)
    check = _options(file, f"{entry}.check_options", data.get("check_options"), fields)
    for what, opts in (("options", options), ("check_options", {**options, **check})):
        try:
            cls.options_class(**opts)
        except (TypeError, ValueError) as exc:
            raise ConfigError(file, f"{entry}.{what}", f"{cls.name} refused them ({exc})",
                              "check the values against the sequence's options") from None
    inputs = _names(file, f"{entry}.inputs", data.get("inputs"), fields, "option")
    check_inputs = _names(file, f"{entry}.check_inputs", data.get("check_inputs"), fields,
                          "option")
    commit = _commit(file, f"{entry}.commit", data["commit"])
    committed = [c.name for c in commit]
    spec = _spec(file, f"{entry}.spec", data.get("spec"), committed)
    targets = _targets(config)
    apply = _names(file, f"{entry}.apply", data.get("apply"), set(committed), "committed value")
    for value, target in apply.items():
        _target(file, f"{entry}.apply.{value}", target, targets)
    settings_raw = data.get("settings") or {}
    if not isinstance(settings_raw, dict):
        raise ConfigError(file, f"{entry}.settings", "expected a mapping",
                          "write 'instrument.parameter: value' pairs")
    settings = {}
    for target, value in settings_raw.items():
        _target(file, f"{entry}.settings.{target}", str(target), targets)
        settings[str(target)] = value
    description = data.get("description") or (cls.__doc__ or "").strip().split("\n")[0]
    return NodeConfig(key, lab, cls.name, timeout, tuple(qualified), str(description),
                      options, check, inputs, check_inputs, settings, tuple(commit), spec,
                      apply, file)


def _check_inputs(file: str, node: NodeConfig, nodes: dict[str, NodeConfig]) -> None:
    """Every input must be committed by `node` itself or by a node it depends on."""
    providers = {node.name, *_ancestors(node.name, nodes)}
    committed = {c.name: n.name for n in nodes.values() for c in n.commit}
    for kind, inputs in (("inputs", node.inputs), ("check_inputs", node.check_inputs)):
        for option, parameter in inputs.items():
            where = f"{_SECTION}.nodes.{node.entry}.{kind}.{option}"
            owner = committed.get(parameter)
            if owner is None:
                close = difflib.get_close_matches(parameter, committed, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ConfigError(file, where, f"no node of this lab commits {parameter!r}",
                                  f"{hint}name a value under some node's 'commit'")
            if owner not in providers:
                raise ConfigError(file, where, f"{parameter!r} comes from {owner}, which "
                                  f"{node.name} does not depend on",
                                  f"add '{owner.split('.', 1)[1]}' to its depends_on")


def _ancestors(name: str, nodes: dict[str, NodeConfig]) -> set[str]:
    found: set[str] = set()
    stack = [name]
    while stack:  # the visited set also stops at a cycle, which the graph reports
        for dep in nodes[stack.pop()].depends_on:
            if dep in nodes and dep not in found:  # another scope's node: not ours to walk
                found.add(dep)
                stack.append(dep)
    return found


# -- pieces ---------------------------------------------------------------------------------
_keys = check_keys


def _positive(file: str, entry: str, value: Any, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(file, entry, f"expected a positive number, got {value!r}",
                          f"write it in {unit}")
    return float(value)


def _option_fields(options_class: type) -> set[str]:
    return {f.name for f in dataclasses.fields(options_class)}


def _options(file: str, entry: str, data: Any, fields: set[str]) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(file, entry, "expected a mapping of options",
                          "write 'option: value' pairs in SI units")
    out = {}
    for key, value in data.items():
        _known(file, f"{entry}.{key}", str(key), fields, "option")
        out[str(key)] = tuple(value) if isinstance(value, list) else value
    return out


def _known(file: str, entry: str, key: str, known: set[str], what: str) -> None:
    if key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(file, entry, f"unknown {what} {key!r}",
                          f"{hint}use one of: {', '.join(sorted(known))}")


def _names(file: str, entry: str, data: Any, known: set[str], what: str) -> dict[str, str]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(file, entry, "expected a mapping",
                          f"write '{what}: name' pairs")
    out = {}
    for key, value in data.items():
        _known(file, f"{entry}.{key}", str(key), known, what)
        if not isinstance(value, str) or not value:
            raise ConfigError(file, f"{entry}.{key}", f"expected a name, got {value!r}",
                              "write the name as plain text")
        out[str(key)] = value
    return out


def _commit(file: str, entry: str, data: Any) -> list[Committed]:
    if not isinstance(data, dict) or not data:
        raise ConfigError(file, entry, "expected a non-empty mapping of committed values",
                          "write 'name: unit' (e.g. 'bias_current_ch1: A'), or "
                          "'name: {unit: A, from: recommended_bias, field: value}'")
    out = []
    for name, spec in data.items():
        where = f"{entry}.{name}"
        if isinstance(spec, str) or spec is None:
            out.append(Committed(str(name), spec or "", str(name)))
            continue
        _keys(file, where, spec, _COMMIT_KEYS, {"unit"})
        column = spec.get("field", "value")
        if column not in ("value", "stderr"):
            raise ConfigError(file, f"{where}.field", f"unknown field {column!r}",
                              "use 'value' or 'stderr'")
        out.append(Committed(str(name), str(spec["unit"]), str(spec.get("from", name)),
                             column))
    return out


def _spec(file: str, entry: str, data: Any, committed: list[str]) -> dict[str, Tolerance]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(file, entry, "expected a mapping",
                          "write 'value_name: {relative: 0.1, sigmas: 5}' per compared value")
    out = {}
    for name, tol in data.items():
        where = f"{entry}.{name}"
        _known(file, where, str(name), set(committed), "committed value")
        _keys(file, where, tol, _TOLERANCE_KEYS, set())
        if not tol:
            raise ConfigError(file, where, "no tolerance given",
                              "give relative, absolute and/or sigmas")
        values = {k: _positive(file, f"{where}.{k}", v, "the value's unit (relative: a "
                               "fraction; sigmas: standard errors)") for k, v in tol.items()}
        out[str(name)] = Tolerance(**values)
    return out


def _targets(config: LabConfig) -> set[str]:
    names = set(config.instruments)
    if config.transducer_setup:
        names.add("transducer")  # the TransducerSetup component (`instruments.station`)
    return names


def _target(file: str, entry: str, target: Any, instruments: set[str]) -> None:
    parts = target.split(".") if isinstance(target, str) else []
    if len(parts) < 2 or not all(parts):
        raise ConfigError(file, entry, f"{target!r} is not a station parameter",
                          "write instrument.parameter or instrument.channel.parameter, e.g. "
                          "snspd.ch1.bias_current")
    if parts[0] not in instruments:
        raise ConfigError(file, entry, f"{parts[0]!r} is not an instrument of this station",
                          f"use one of: {', '.join(sorted(instruments))}")

