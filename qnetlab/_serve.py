"""`qnetlab sim serve CONFIG`: the simulated twins of one lab, or of a whole network, served
on the loopback ports of their ``real`` addresses until stopped.

A lab config (top-level ``instruments:``) is served as one bench. A network config (top-level
``network:``, e.g. lab_configs/two_node_link.yaml) is served as every lab it names, in this one
process: each node's lab (``nodes.<name>.station``) and the heralding station's lab
(``station.lab``) with the network's link simulation (`NetworkConfig.link_simulation`) as its
``qnetlab.simulation.link``, so the station's ID1000 twin streams the tags of the simulated
link. Each lab keeps its own simulated world (as separate benches would); the link's world is
the station lab's. ``qnetlab bringup NETWORK --profile real`` then runs against it over real
transports: the hardware-in-the-loop rehearsal of the network.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from qnetlab.network.network_config import config_kind


def network_labs(path: str | Path) -> dict[str, Any]:
    """Lab name -> `LabConfig` of every lab a network config names: each node's, then the
    heralding station's with the link simulation injected. ConfigError naming the entry."""
    from qnetlab.instruments.lab_config import load_config
    from qnetlab.network.network_config import load_network_config

    config = load_network_config(path)
    labs: dict[str, Any] = {}
    for name, node in config.nodes.items():
        if node.station is None:
            raise config.error(f"nodes.{name}.station", f"node {name} names no lab of its own",
                               "add 'station: <its lab config>.yaml': sim serve serves "
                               "every lab of the network")
        labs[name] = load_config(node.station)
    station_lab = getattr(config.station, "lab", None)
    if station_lab is None:
        raise config.error("station.lab", "the heralding station names no lab of its own",
                           "add 'lab: heralding_station.yaml' (its SNSPDs and time tagger) "
                           "under station:")
    # The twin writes no ground truth here: a rehearsal reports what a real bench knows.
    labs[config.station.name] = load_config(station_lab).with_simulation(
        link=config.link_simulation())
    return labs


@dataclass
class _Served:
    """One lab being served: its bench, its SCPI server, its ZeroMQ twins."""

    lab: str
    bench: Any
    server: Any = None
    zmq: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()  # idempotent: serve_forever closes when it returns
        for twin in self.zmq.values():
            twin.close()


def serve(path: str, *, control_port: int | None, clock: str,
          max_seconds: float | None) -> int:
    """Serve the lab or network at `path` until a stop signal, Ctrl-C, a control port's
    ``stop`` or `max_seconds`. With a network, `control_port` is the first lab's and the
    next labs take the following ports (printed with their lab)."""
    from qnetlab.instruments.lab_config import load_config
    from qnetlab.sim_instruments.bench import build_bench

    from ._format import table
    from .cli import EXIT_OK, _signals_call

    labs = ({"": load_config(path)} if config_kind(path) == "lab" else network_labs(path))
    served = [_Served(lab, build_bench(config, clock=clock)) for lab, config in labs.items()]
    _refuse_shared_addresses(served)
    stopped_by: list[str] = []

    def stop_all() -> None:
        for item in served:
            if item.server is not None:
                item.server.stop()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Each loop notices within one select timeout and closes its sockets itself.
        stopped_by.append(signal.Signals(signum).name)
        stop_all()

    threads: list[threading.Thread] = []
    try:
        _start(served, control_port, max_seconds)
        print(table(_rows(served), (["lab"] if len(served) > 1 else [])
                    + ["instrument", "simulated model", "address"]))
        for item in served:
            if item.server.control_port is not None:
                of = f" ({item.lab})" if item.lab else ""
                print(f"control port{of}: 127.0.0.1:{item.server.control_port}")
        print("serving; Ctrl-C to stop", flush=True)
        with _signals_call(on_signal):
            # The first lab's loop runs here (signals reach only the main thread); every
            # other lab's in a thread of its own. Whichever loop ends first (a control
            # port's stop, max_seconds) ends them all.
            for item in served[1:]:
                thread = threading.Thread(target=_serve_then_stop_all,
                                          args=(item.server, max_seconds, stop_all),
                                          name=f"sim-serve-{item.lab}", daemon=True)
                threads.append(thread)
                thread.start()
            served[0].server.serve_forever(max_seconds=max_seconds)
            stop_all()
    except KeyboardInterrupt:  # Ctrl-C, or a stop signal before serving began
        stopped_by.append("Ctrl-C")
    finally:
        stop_all()
        for thread in threads:
            thread.join(5.0)  # each loop wakes within its 0.5 s select timeout
        for item in served:
            item.close()
    if stopped_by:
        print(f"qnetlab: sim serve stopped ({stopped_by[0]}); every port closed",
              file=sys.stderr)
    return EXIT_OK


def _serve_then_stop_all(server: Any, max_seconds: float | None, stop_all: Any) -> None:
    try:
        server.serve_forever(max_seconds=max_seconds)
    finally:
        stop_all()


def _start(served: list[_Served], control_port: int | None,
           max_seconds: float | None) -> None:
    """Bind every lab's servers (a bind error raises here, naming the lab's file)."""
    from qnetlab.sim_instruments.server import BenchServer

    for i, item in enumerate(served):
        item.server = BenchServer(item.bench, control_port=None if control_port is None
                                  else control_port + i)
        item.zmq = serve_zmq_twins(item.bench, max_seconds)


def _rows(served: list[_Served]) -> list[list[str]]:
    rows = []
    for item in served:
        config = item.bench.config
        lab = [item.lab] if len(served) > 1 else []
        rows += [[*lab, name, config.instruments[name].addresses["sim"],
                  item.server.resource(name)] for name in item.server.ports]
        rows += [[*lab, name, config.instruments[name].addresses["sim"],
                  f"{twin.scpi_address} (data {twin.data_address})"]
                 for name, twin in item.zmq.items()]
    return rows


def _addresses(bench: Any) -> dict[tuple[str, int], str]:
    """(host, port) -> config entry of every socket a bench's servers bind."""
    from qnetlab.sim_instruments.server import socket_address

    found = {socket_address(bench, name): f"instruments.{name}.address.real"
             for name in bench.endpoints}
    for name in bench.zmq_devices:
        inst = bench.config.instruments[name]
        for entry, address in ((f"instruments.{name}.address.real", inst.addresses.get("real")),
                               (f"instruments.{name}.init.data_address",
                                inst.init.get("data_address"))):
            found[("127.0.0.1", tcp_port(bench.config, entry, address))] = entry
    return found


def _refuse_shared_addresses(served: list[_Served]) -> None:
    """ConfigError naming both labs' entries when two labs of a network would bind one
    address (within one lab, `BenchServer` names the clash itself)."""
    seen: dict[tuple[str, int], tuple[str, str]] = {}
    for item in served:
        for address, entry in _addresses(item.bench).items():
            other = seen.get(address)
            if other is not None and other[0] != str(item.bench.config.path):
                raise item.bench.config.error(
                    entry, f"{address[0]}:{address[1]} is also {other[1]} of {other[0]}",
                    "give every lab of the network its own ports")
            seen[address] = (str(item.bench.config.path), entry)


def serve_zmq_twins(bench: Any, max_seconds: float | None) -> dict[str, Any]:
    """Serve each ZeroMQ twin (the ID1000) on the ports of its real addresses: the SCPI
    socket of ``address.real`` and the data link of ``init.data_address``. Returns
    instrument name -> running server."""
    from qnetlab.sim_instruments.zmq_server import ID1000Server

    served: dict[str, Any] = {}
    try:
        for name, device in bench.zmq_devices.items():
            inst = bench.config.instruments[name]
            scpi_port = tcp_port(bench.config, f"instruments.{name}.address.real",
                                 inst.addresses.get("real"))
            data_port = tcp_port(bench.config, f"instruments.{name}.init.data_address",
                                 inst.init.get("data_address"))
            served[name] = ID1000Server(device, scpi_port=scpi_port, data_port=data_port,
                                        max_lifetime_s=max_seconds or 7 * 24 * 3600.0)
            served[name].start()
    except BaseException:
        for server in served.values():
            server.close()
        raise
    return served


def tcp_port(config: Any, entry: str, address: object) -> int:
    """The port of a loopback ``tcp://127.0.0.1:PORT`` address; ConfigError otherwise."""
    match = re.fullmatch(r"tcp://(127\.0\.0\.1|localhost):(\d+)", str(address))
    if match is None:
        raise config.error(entry, f"{address!r} is not a loopback ZeroMQ address",
                           "sim serve serves on this machine: write tcp://127.0.0.1:PORT")
    return int(match.group(2))
