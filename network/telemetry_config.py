"""Which telemetry publishers a config names, and which keys they and the monitor need.

A lab config publishes from ``qnetlab.telemetry`` ({address, key_dir, name}); a network
config from each process's ``telemetry_address`` (station, orchestrator, each node: CURVE
with the process's own key in ``network.key_dir``) and from the labs it names whose
``qnetlab.telemetry`` uses the same key directory (a lab calibrated by ``bringup``). The
monitor's client key is `MONITOR` in the same key directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qnetlab.instruments.lab_config import LabConfig, load_config

from .network_config import NetworkConfig, config_kind, load_network_config

if TYPE_CHECKING:
    from .telemetry import TelemetryEndpoints

MONITOR = "monitor"
"""The key name of the monitor's CURVE client (``qnetlab keys CONFIG`` generates it)."""

_LAB_FIX = ("add 'telemetry: {address: tcp://127.0.0.1:PORT, key_dir: ../lab_data/keys/LAB, "
            "name: LAB}' under 'qnetlab:' and run `qnetlab keys CONFIG`")
_NETWORK_FIX = ("add 'telemetry_address: tcp://127.0.0.1:PORT' to station:, orchestrator: "
                "or a node, and run `qnetlab keys CONFIG`")


def network_lab_publishers(config: NetworkConfig) -> dict[str, LabConfig]:
    """Publisher name -> lab config, for the labs the network names (the station's and the
    nodes') that publish telemetry with the network's key directory (a lab with a key set of
    its own is watched through its own config). ConfigError for a lab that publishes under
    the name of a process of the network."""
    paths = [config.station.lab, *(node.station for node in config.nodes.values()
                                   if node.station is not None)]
    out: dict[str, LabConfig] = {}
    for path in paths:
        if not path.is_file():
            continue  # named where the lab is used (calibrate, link), not for its telemetry
        lab = load_config(path)
        if lab.telemetry is None:
            continue
        if lab.telemetry.key_dir.resolve() != Path(config.key_dir).resolve():
            continue  # its own key set: watched through its own config, not the network's
        name = lab.telemetry.name
        if name in config.key_names() or name in out:
            raise lab.error("qnetlab.telemetry.name", f"'{name}' is already the name of "
                            "another process of the network", "give the lab's publisher its "
                            "own name, e.g. <node>_lab")
        out[name] = lab
    return out


def config_endpoints(path: Path) -> TelemetryEndpoints:
    """`network.telemetry.telemetry_endpoints`."""
    from .telemetry import TelemetryEndpoints

    if config_kind(path) == "network":
        network = load_network_config(path)
        endpoints = dict(network.telemetry_addresses())
        for name, lab in network_lab_publishers(network).items():
            assert lab.telemetry is not None
            endpoints[name] = lab.telemetry.address
        if not endpoints:
            raise network.error("station/orchestrator/nodes", "no process publishes telemetry",
                                _NETWORK_FIX.replace("CONFIG", str(path)))
        return TelemetryEndpoints(endpoints, network.key_dir)
    lab = load_config(path)
    if lab.telemetry is None:
        raise lab.error("qnetlab.telemetry", "this lab publishes no telemetry",
                        _LAB_FIX.replace("CONFIG", str(path)))
    return TelemetryEndpoints({lab.telemetry.name: lab.telemetry.address},
                              lab.telemetry.key_dir)


def telemetry_key_names(path: Path) -> tuple[Path, list[str]]:
    """(key directory, every key name) that ``qnetlab keys`` generates for a lab config
    with telemetry: its publisher and the monitor. ConfigError when it has none."""
    lab = load_config(path)
    if lab.telemetry is None:
        raise lab.error("qnetlab.telemetry", "this lab has no key directory: only a lab "
                        "that publishes telemetry (or a network) has keys",
                        _LAB_FIX.replace("CONFIG", str(path)))
    return lab.telemetry.key_dir, [lab.telemetry.name, MONITOR]


def network_key_names(config: NetworkConfig) -> list[str]:
    """Every key of a network's key directory: its processes, the labs that publish with
    it, and the monitor."""
    return [*config.key_names(), *network_lab_publishers(config), MONITOR]
