"""The calibration graph of a whole network lab: both nodes' labs and the link between them.

From a network config (lab_configs/two_node_link.yaml) whose nodes name their own labs
(``nodes.<name>.station``, each a station config with a ``qnetlab.calibration`` graph):

* each node's graph, on its station and database (scope = the node's name), plus its
  `LinkOperatingPoint` at the link pump power of ``calibration.operating_points``;
* the link's calibrations (scope "link", its own database ``network.database``): an arm delay
  per node and the heralding, which depends on both nodes' operating points.

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
from qnetlab.instruments.lab_config import load_config
from qnetlab.network.network_config import NetworkConfig, load_network_config

from .context import LabContext, Scope
from .graph import CalibrationGraph, CalibrationNode
from .graph_config import parse_calibration
from .link_nodes import LINK_SCOPE, NodeInputs, RemoteParameters, link_calibrations
from .nodes import calibration_nodes
from .operating_node import LinkOperatingPoint

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
    link_db = config.database or config.run_dir / "link.db"
    scopes[LINK_SCOPE] = Scope(LINK_SCOPE, link_db)
    ctx = LabContext(scopes, quiet=quiet, clock=clock)
    session = NetworkCalibration(config, CalibrationGraph(nodes), ctx)
    try:
        inputs = _inputs(config, session)
        nodes += link_calibrations(
            config, inputs, profile=profile,
            depends_on=[f"{n}.link_operating_point" for n in config.link.nodes])
        session.graph = CalibrationGraph(nodes, source=str(config.path))
    except BaseException:
        session.close()
        raise
    return session


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
