"""The calibration graph of a whole network lab: both nodes' labs, the heralding station's
lab, and the link between them.

From a network config (lab_configs/two_node_link.yaml) whose nodes name their own labs
(``nodes.<name>.station``, each a station config with a ``qnetlab.calibration`` graph) and
whose station names its lab (``station.lab``, graph lab name "station"):

* each node's graph, on its station and database (scope = the node's name), plus its
  `LinkOperatingPoint` at the link pump power of ``calibration.operating_points``;
* the station's graph (scope "station": dark counts, detector efficiency, tagger delays), on
  its lab with the link dark (in the sim profile: no simulated link behind its twins);
* the link's calibrations (scope "link", its own database ``network.database``), measured
  through the station lab's time tagger with the link running (in the sim profile: the
  station lab with ``qnetlab.simulation.link`` = `NetworkConfig.link_simulation()`, the
  station's calibrated values applied): an arm delay per node, depending on the station
  calibrations whose values are applied to its instruments (`arm_dependencies`: the SNSPD
  biases, the tagger delays), and the heralding, which depends on both nodes' operating
  points and the station's detector calibrations.

The heralding reads the first node's values from its store and the second node's over the
network control plane (`network.parameters`: read-only, CURVE-authenticated, at the second
node's ``parameter_address``), as it would between two hosts; `NetworkCalibration` serves
them for the session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import LabConfig, load_config
from qnetlab.instruments.station import LabStation, load_station
from qnetlab.network.network_config import NetworkConfig, load_network_config

from .context import LabContext, Scope
from .graph import CalibrationGraph, CalibrationNode
from .graph_config import parse_calibration
from .link_nodes import NodeInputs, RemoteParameters, link_calibrations
from .link_values import LINK_SCOPE, STATION_SCOPE
from .nodes import calibration_nodes
from .operating_node import LinkOperatingPoint
from .startup import apply_stored_values, open_calibrated_station
from .store import ParameterStore

_SECTION_KEYS = {"operating_points"}


@dataclass
class NetworkCalibration:
    """A calibration session over a network lab (module docstring). Close it when done."""

    config: NetworkConfig | None
    """None for a session over one node's lab alone (`qnetlab calibrate NODE_LAB`)."""
    graph: CalibrationGraph
    ctx: LabContext
    servers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()
        self.ctx.close()

    def __enter__(self) -> NetworkCalibration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def network_calibration(path: str | Path, *, profile: str = "sim", quiet: bool = True,
                        clock: Callable[[], float] = time.time) -> NetworkCalibration:
    """Build the graph and the session of a network config (ConfigError naming the entry)."""
    config = load_network_config(path)
    points = _operating_points(config)
    scopes: dict[str, Scope] = {}
    nodes: list[CalibrationNode] = []
    for name, node in config.nodes.items():
        entry = f"nodes.{name}.station"
        if node.station is None:
            raise config.error(entry, f"node {name} names no lab of its own",
                               "add 'station: <its station config>.yaml' to calibrate it")
        lab_config = load_config(node.station)
        lab = parse_calibration(lab_config).lab
        if lab != name:
            raise config.error(entry, f"{node.station.name} calibrates lab {lab!r}, not "
                               f"{name!r}", f"set qnetlab.calibration.lab: {name} there")
        db = lab_config.database or node.station.with_suffix(".db")
        scopes[name] = Scope(name, Path(db), node.station, profile)
        lab_nodes = calibration_nodes(lab_config)
        nodes += lab_nodes
        models = [f"{name}.{n}" for n in ("transducer_efficiency", "added_noise")]
        missing = [m for m in models if m not in {n.name for n in lab_nodes}]
        if missing:
            raise config.error(entry, f"{node.station.name} has no {', '.join(missing)} node",
                               "the link needs the transducer's efficiency map and added "
                               "noise calibrated")
        nodes.append(LinkOperatingPoint(name, points[name], depends_on=tuple(models)))
    station_lab = load_config(config.station.lab)
    station_nodes = _station_nodes(config, station_lab)
    nodes += station_nodes
    scopes[STATION_SCOPE] = Scope(
        STATION_SCOPE, Path(station_lab.database or config.station.lab.with_suffix(".db")),
        config.station.lab, profile)
    link_db = config.database or config.run_dir / "link.db"
    # The link scope's station is the station lab again, now with the link running.
    scopes[LINK_SCOPE] = Scope(LINK_SCOPE, link_db, config.station.lab, profile)
    ctx = LabContext(scopes, quiet=quiet, clock=clock)
    ctx.opener = _opener(config, ctx)
    session = NetworkCalibration(config, CalibrationGraph(nodes), ctx)
    try:
        inputs = _inputs(config, session)
        station_names = {n.name for n in station_nodes}
        detectors = [n for n in station_names if n != f"{STATION_SCOPE}.tagger_delays"]
        nodes += link_calibrations(
            config, inputs, arm_depends_on=arm_dependencies(station_lab, station_nodes),
            depends_on=[*(f"{n}.link_operating_point" for n in config.link.nodes),
                        *sorted(detectors)])
        session.graph = CalibrationGraph(nodes, source=str(config.path))
    except BaseException:
        session.close()
        raise
    return session


def _station_nodes(config: NetworkConfig, lab: LabConfig) -> list[CalibrationNode]:
    """The station lab's calibration nodes (its graph's lab must be "station")."""
    entry = "station.lab"
    name = parse_calibration(lab).lab
    if name != STATION_SCOPE:
        raise config.error(entry, f"{config.station.lab.name} calibrates lab {name!r}, not "
                           f"{STATION_SCOPE!r}", f"set qnetlab.calibration.lab: "
                           f"{STATION_SCOPE} there")
    if config.station.tagger not in lab.instruments:
        raise config.error("station.tagger", f"{config.station.lab.name} has no instrument "
                           f"{config.station.tagger!r}", f"use one of: "
                           f"{', '.join(lab.instruments)}")
    return list(calibration_nodes(lab))


def arm_dependencies(lab: LabConfig, station_nodes: list[CalibrationNode]) -> list[str]:
    """The station calibrations the arm delays depend on: every one whose values are applied
    to the station (the SNSPD biases, the tagger's input delays). The link scope's station is
    opened with them applied; before they exist the detectors are unbiased and see nothing,
    and a changed bias or input delay moves the arrival peaks. Without this dependency only
    the graph's insertion order (`maintain_all`) ran them first: `qnetlab calibrate CONFIG
    link.heralding` from a clean lab_data found no clicks."""
    applied = {name for name, node in parse_calibration(lab).nodes.items() if node.apply}
    timing = f"{STATION_SCOPE}.tagger_delays"
    return sorted(n.name for n in station_nodes if n.name in applied or n.name == timing)


def _opener(config: NetworkConfig, ctx: LabContext
            ) -> Callable[[Scope, ParameterStore, str], LabStation]:
    """Opens a scope's station: the link scope's is the station lab with the link running
    (sim profile: its simulated world behind the twins) and the station's calibrated values
    applied; every other scope's, its lab with its own values (`open_calibrated_station`)."""

    def open_(spec: Scope, store: ParameterStore, session: str) -> LabStation:
        assert spec.config is not None  # LabContext.station checks it
        if spec.name != LINK_SCOPE:
            return open_calibrated_station(spec.config, spec.profile, store,
                                           sim_session=session)
        lab = load_config(spec.config)
        if spec.profile == "sim":
            lab = lab.with_simulation(link=config.link_simulation())
        station = load_station(lab, spec.profile, sim_session=session)
        try:
            apply_stored_values(station, lab, ctx.store(STATION_SCOPE))
        except BaseException:
            station.close()
            raise
        return station

    return open_


def _operating_points(config: NetworkConfig) -> dict[str, float]:
    section = config.calibration
    for key in section:
        if key not in _SECTION_KEYS:
            raise config.error(f"calibration.{key}", f"unknown key '{key}'",
                               f"allowed: {', '.join(sorted(_SECTION_KEYS))}")
    points = section.get("operating_points") or {}
    out = {}
    for name in config.nodes:
        value = points.get(name) if isinstance(points, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise config.error(f"calibration.operating_points.{name}",
                               f"expected the link pump power of {name} in W, got {value!r}",
                               f"write e.g. 'operating_points: {{{name}: 5.0e-3}}'")
        out[name] = float(value)
    return out


def _inputs(config: NetworkConfig, session: NetworkCalibration
            ) -> tuple[NodeInputs, NodeInputs]:
    """The first node's values from its store; the second's over the network."""
    from qnetlab.network.parameters import ParameterServer

    local, remote = config.link.nodes
    address = config.nodes[remote].parameter_address
    if address is None:
        raise ConfigError(str(config.path), f"nodes.{remote}.parameter_address",
                          "no address to publish its calibrated values on",
                          "add 'parameter_address: tcp://127.0.0.1:PORT'")
    server = ParameterServer(session.ctx.store(remote), address, config.key_dir,
                             remote).start()
    session.servers.append(server)
    return (NodeInputs(local),
            NodeInputs(remote, remote=RemoteParameters(server.address, config.key_dir,
                                                       local, remote)))
