"""Serving the ZeroMQ twins of a station on the same simulated bench as its VISA twins.

`instruments.station.load_station` reaches this module only for a driver that is not a VISA
instrument, in the ``sim`` profile, and only through this function (a lazy import keyed by
the twin name in the config): `instruments` never imports `sim_instruments` otherwise.

The bench is the world the station registered with the in-process VISA backend, named by
its ``<token>@qnetlab`` library: opening that library here returns the very bench the VISA
twins talk to (PyVISA keeps one library object per name; the backend finds the registered
world by its token). The
ZeroMQ twin's emulator lives on that bench (`SimulatedBench.zmq_devices`); this module puts
its servers on 127.0.0.1 on free ports and tells the driver where they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyvisa import highlevel

from .bench import SimulatedBench
from .devices.idq_id1000 import N_INPUTS, IDQuantiqueID1000Emulator
from .ports import free_port_run
from .visa_backend import QnetlabVisaLibrary
from .zmq_server import ID1000Server

SERVER_LIFETIME_S = 7 * 24 * 3600.0
"""The servers stop with the station; this only bounds a server whose station was never
closed (a notebook left open for a week keeps working)."""


@dataclass
class ServedTwin:
    """A running ZeroMQ twin: what to give the driver, and how to stop it."""

    address: str
    driver_kwargs: dict[str, Any]
    close: Callable[[], None]
    extra: dict[str, Any] = field(default_factory=dict)


def bench_for(visalib: str) -> SimulatedBench:
    """The bench of an in-process VISA library specification (``<token>@qnetlab``)."""
    lib = highlevel.open_visa_library(visalib)
    if not isinstance(lib, QnetlabVisaLibrary):
        raise TypeError(f"{visalib!r} is not a qnetlab simulated bench")
    return lib.bench


def _serve_id1000(device: Any) -> ServedTwin:
    if not isinstance(device, IDQuantiqueID1000Emulator):
        raise TypeError(f"expected an ID1000 emulator, got {type(device).__name__}")
    server = ID1000Server(device, scpi_port=0, data_port=0,
                          max_lifetime_s=SERVER_LIFETIME_S).start()
    kwargs = {"data_address": server.data_address,
              # The driver's default stream ports (4242-4245) are fixed: two stations (or
              # test workers) at once would collide, so each load gets its own run.
              "stream_port_base": free_port_run(N_INPUTS)}
    return ServedTwin(server.scpi_address, kwargs, server.close, {"server": server})


_SERVERS: dict[str, Callable[[Any], ServedTwin]] = {"idq_id1000": _serve_id1000}


def serve_twin(visalib: str, instrument: str, twin: str) -> ServedTwin:
    """Start the servers of `instrument`'s ZeroMQ twin on the bench of `visalib`.

    KeyError (naming the twins served) if `twin` is not a ZeroMQ twin."""
    serve = _SERVERS.get(twin)
    if serve is None:
        raise KeyError(f"no ZeroMQ twin called {twin!r}; use one of: {', '.join(_SERVERS)}")
    bench = bench_for(visalib)
    return serve(bench.zmq_devices[instrument])
