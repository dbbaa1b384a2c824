"""The bridge orchestrator as a process: applications ask it for pairs and state transfers
over a CURVE ROUTER, and it schedules them with the `Scheduler` on a pluggable fabric.

`run_bridge_orchestrator(settings, stop)` (a `ProcessGroup` target) binds a ROUTER (CURVE
server, `settings.name`'s keypair) for the clients (`client.BridgeClient`), and runs
`BridgeEngine`: the scheduling core unchanged (events in, decisions out) against a
`fabric.PairFabric` that heralds pairs on the paths it assigns: `fabric.SimulatedLinkFabric`,
SIMULATED link physics (herald times drawn from each path's link-model rate on the bridge's
clock: wall-clock time x `time_scale`), with the bridge config's optical switch in the loop
when the settings name its lab (`switch_loop.SwitchedFabric`: every assigned path is made
through the `OpticalSwitch` role and read back; a switch that refuses or does not answer is
an ERR NO_RESOURCES for the request, with its arms cleared). With a calibration store
(`settings.calibration_db`) the paths' calibration times are read from it and the re-checks
recorded in it (`path_calibration`). With `settings.stations` the pairs come from heralding-
station processes reading their taggers (`station_fabric`), and with the QNUs' node agents
(`qnu_nodes`, on this ROUTER: a QNU's key is a node's, not a client's) both QNUs hold a pair
before it counts; ``<name>_nodes.json`` lists the QNUs whose nodes have all been heard (written
as it grows).

Every client message is hostile until `wire.decode_request` has checked it; a malformed one
is counted under the field it got wrong and answered with ERR MALFORMED naming that field,
and the service keeps serving. A client is the owner of the key that authenticated its
connection (`network.keys.key_owner`), never what it calls itself. Every decision goes, with
its reason, to ``<run_dir>/<name>_decisions.jsonl`` and to the client whose request it
concerns. Protocol and physics: docs/bridge.md#the-orchestrator-process.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import zmq

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import PROFILES

from ..keys import key_owner, make_curve_server, start_authenticator
from .bridge_config import BridgeConfig
from .bridge_telemetry import TimelineTelemetry, open_timeline
from .engine import BridgeEngine
from .fabric import PairFabric
from .path_calibration import PathCalibrations
from .qnu_nodes import QnuNodes
from .scheduler import Scheduler, SchedulerSettings
from .station_fabric import StationFabric, StationFabricSettings
from .switch_loop import orchestrator_fabric
from .topology import BridgeTopology
from .wire import (
    SOCKET_MAXMSGSIZE,
    BridgeWireError,
    Err,
    clip,
    decode_request,
    encode,
)

if TYPE_CHECKING:  # QCoDeS only where a switch is opened (a process without one never pays)
    from qnetlab.instruments.station import LabStation

_WILDCARD_HOSTS = {"*", "0.0.0.0", "::", "[::]", ""}
_POLL_MS = 50
"""Longest wait between looks at the stop flag and the clock, ms."""
_LOGGED_MALFORMED = 100
"""Malformed frames logged one by one; beyond, only counted (a flood must not fill the
disk)."""


@dataclass(frozen=True)
class BridgeServiceSettings:
    """The orchestrator process's settings (units: s)."""

    key_dir: Path
    """The lab's CURVE keys (`network.keys`): `name`'s keypair, the clients' public keys."""
    run_dir: Path
    """Where ``<name>_ready.json``, ``<name>_decisions.jsonl`` and ``<name>_summary.json``
    go."""
    topology: BridgeTopology
    name: str = "bridge_orchestrator"
    """The process's key name."""
    address: str = "tcp://127.0.0.1:*"
    """``tcp://HOST:PORT`` to bind: a named interface (loopback by default; port ``*``: any
    free one, written to the ready file). All interfaces (``*``, 0.0.0.0) are refused."""
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    time_scale: float = 1.0
    """Bridge seconds per wall-clock second: the simulated physics runs this much faster
    (tests use 10-20). Every time on the wire is in bridge seconds."""
    seed: int = 0
    """Seeds the simulated fabric's herald draws and the teleportations' bits."""
    max_seconds: float | None = None
    """Stop by itself after this many wall-clock s (None: only on the stop flag)."""
    clients: tuple[str, ...] | None = None
    """Key owners served (None: every key in the key directory's public folder)."""
    max_open_per_client: int = 256
    """Open requests one client may have; more are refused (ERR NO_RESOURCES)."""
    switch_lab: Path | None = None
    """The switch's lab config (the bridge config's ``switch.lab``): the orchestrator opens
    its `switch_instrument` for `profile` and sets every assigned path up through it
    (`switch_loop.SwitchedFabric`). None: no switch, the link model alone."""
    switch_instrument: str = "optical_switch"
    profile: str = "sim"
    """The switch lab's profile: ``sim`` (its twin over the in-process VISA backend) or
    ``real`` (its address: the switch, or `qnetlab sim serve`)."""
    calibration_db: Path | None = None
    """The store of each path's arm delay and its time (`path_calibration`): the topology's
    calibration times are read from it at the start, re-checks recorded in it. None: the
    topology's own times, nothing recorded."""
    path_seeds: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    """(QNU, station) -> (age s, arm delay s): seeds of the paths the store has no record of
    (the bridge config's ``calibration.paths``)."""
    seed_source: str = "the bridge config"
    telemetry_address: str | None = None
    """``tcp://HOST:PORT`` to publish the timeline on for `qnetlab monitor` (switch
    configurations and requests: `bridge_telemetry`); None: no telemetry."""
    stations: StationFabricSettings | None = None
    """The heralding-station processes whose heralds are the pairs (`StationFabric`, behind
    the switch loop); None: the simulated link model's. Needs `time_scale` 1."""

    @classmethod
    def from_config(cls, config: BridgeConfig, key_dir: Path, *, profile: str = "sim",
                    **settings: Any) -> BridgeServiceSettings:
        """Settings for the bridge a config describes: its topology, run folder, switch (its
        lab and instrument, opened for `profile`) and path calibration store (seeded from
        its ``calibration.paths``); `settings` override any of them."""
        values: dict[str, Any] = {
            "run_dir": config.run_dir, "switch_lab": config.switch.lab,
            "switch_instrument": config.switch.instrument, "profile": profile,
            "calibration_db": config.calibration_db, "path_seeds": config.path_seeds(),
            "seed_source": config.path.name, **settings}
        return cls(key_dir, values.pop("run_dir"), config.topology(), **values)

    def __post_init__(self) -> None:
        where = f"bridge orchestrator {self.name!r} settings"
        match = re.fullmatch(r"tcp://(.*):(\d+|\*)", self.address)
        if match is None:
            raise ConfigError(where, "address", f"{self.address!r} is not tcp://HOST:PORT",
                              "e.g. tcp://127.0.0.1:5600 (port * picks a free one)")
        if match.group(1) in _WILDCARD_HOSTS:
            raise ConfigError(where, "address", f"{self.address!r} binds every interface",
                              "name the one interface the clients reach it on (loopback, "
                              "127.0.0.1, on one host)")
        if not (math.isfinite(self.time_scale) and self.time_scale > 0.0):
            raise ConfigError(where, "time_scale", f"{self.time_scale!r} must be > 0",
                              "1 runs the simulated physics in real time")
        if self.max_seconds is not None and not (math.isfinite(self.max_seconds)
                                                 and self.max_seconds > 0.0):
            raise ConfigError(where, "max_seconds", f"{self.max_seconds!r} must be > 0 s",
                              "or None to run until stopped")
        if self.profile not in PROFILES:
            raise ConfigError(where, "profile", f"unknown profile {self.profile!r}",
                              f"use one of: {', '.join(PROFILES)}")
        if self.stations is not None and self.time_scale != 1.0:
            raise ConfigError(where, "time_scale", f"{self.time_scale!r} with station "
                              "processes, which herald in real time", "use time_scale 1")
        if self.max_open_per_client < 1:
            raise ConfigError(where, "max_open_per_client",
                              f"{self.max_open_per_client} must be >= 1")


# -- the process --------------------------------------------------------------------------

class _DecisionLog:
    """``<run_dir>/<name>_decisions.jsonl``: one JSON object a line, flushed each turn (a
    killed process keeps what it decided)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: TextIO = path.open("a", encoding="utf-8")
        self.timeline: TimelineTelemetry | None = None
        """Publishes what the records change on the timeline (`bridge_telemetry`)."""

    def __call__(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record, default=str) + "\n")
        if self.timeline is not None:
            self.timeline.observe(record)

    def flush(self) -> None:
        self.file.flush()
        if self.timeline is not None:
            self.timeline.tick()

    def close(self) -> None:
        self.file.close()
        if self.timeline is not None:
            self.timeline.close()


class _Service:
    """The sockets around a `BridgeEngine`."""

    def __init__(self, settings: BridgeServiceSettings, router: zmq.Socket,
                 engine: BridgeEngine, log: _DecisionLog, nodes: QnuNodes | None = None
                 ) -> None:
        self.settings, self.router, self.engine, self.log = settings, router, engine, log
        self.nodes = nodes
        """The QNUs' node agents, whose frames come on this ROUTER too (None: none)."""
        if nodes is not None:
            nodes.send = self._to_node
        self.qnus_heard: list[str] = []
        self.begun = time.monotonic()
        self.routes: dict[str, bytes] = {}
        """Key owner -> routing id of the connection last heard from it."""
        self.malformed: Counter[str] = Counter()
        """Malformed frames by the field they got wrong."""
        self.strangers: Counter[str] = Counter()

    def bridge_now(self) -> float:
        return (time.monotonic() - self.begun) * self.settings.time_scale

    def _to_node(self, route: bytes, frame: bytes) -> None:
        self.router.send_multipart([route, frame])

    def receive(self, frames: Sequence[zmq.Frame]) -> None:
        owner = key_owner(frames[-1])
        if self.nodes is not None and owner in self.nodes.qnus:
            self.nodes.receive(owner, frames)
            heard = self.nodes.qnus_heard()
            if heard != self.qnus_heard:  # a launcher waits for the QNUs its work needs
                self.qnus_heard = heard
                _write_json(self.settings.run_dir / f"{self.settings.name}_nodes.json",
                            {"qnus_heard": heard, "bridge_time": self.bridge_now()})
            return
        allowed = self.settings.clients
        if owner is None or (allowed is not None and owner not in allowed):
            if not self.strangers[str(owner)]:
                self.log({"time": self.bridge_now(), "event": "not_a_client",
                          "key_owner": owner})
            self.strangers[str(owner)] += 1
            return
        self.routes[owner] = frames[0].bytes
        if len(frames) != 2:
            self.refuse(owner, BridgeWireError("frames", f"{len(frames) - 1} frames, expected "
                                               "1 (one message per frame)"))
            return
        try:
            message = decode_request(frames[1].buffer)
        except BridgeWireError as exc:
            self.refuse(owner, exc)
            return
        self.engine.handle(owner, message, self.bridge_now())

    def refuse(self, owner: str, exc: BridgeWireError) -> None:
        self.malformed[exc.field] += 1
        if sum(self.malformed.values()) <= _LOGGED_MALFORMED:
            self.log({"time": self.bridge_now(), "event": "malformed", "client": owner,
                      "field": exc.field, "reason": clip(str(exc))})
        self.engine.outbox.append((owner, Err(exc.request_id, "MALFORMED", clip(str(exc)),
                                              exc.field)))

    def flush(self) -> None:
        for client, message in self.engine.outbox:
            route = self.routes.get(client)
            if route is not None:
                self.router.send_multipart([route, encode(message)])
        self.engine.outbox.clear()
        self.log.flush()

    def wait_ms(self, now: float) -> int:
        due = self.engine.next_time()
        if due is None:
            return _POLL_MS
        wall = (due - now) / self.settings.time_scale
        return min(_POLL_MS, max(0, math.ceil(wall * 1e3)))

    def summary(self, stopped: str) -> dict[str, Any]:
        return {"name": self.settings.name, "fabric": self.engine.fabric.name,
                "simulated": self.engine.fabric.simulated,
                "time_scale": self.settings.time_scale, "bridge_time": self.bridge_now(),
                "switch": _switch_name(self.settings),
                "stopped": stopped, "counters": dict(self.engine.counters),
                "rechecks": self.engine.recheck_summary(),
                "malformed": dict(self.malformed), "not_a_client": dict(self.strangers)}


def _switch_name(settings: BridgeServiceSettings) -> str | None:
    """What the ready and summary files call the switch (None: no switch in the loop)."""
    if settings.switch_lab is None:
        return None
    return f"{settings.switch_instrument} of {settings.switch_lab.name} ({settings.profile})"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `path` whole or not at all (a reader polling for it never sees half)."""
    staging = path.with_name(f".{path.name}.new")
    staging.write_text(json.dumps(data))
    os.replace(staging, path)


def _stopped_before_start(settings: BridgeServiceSettings, log: _DecisionLog,
                          why: str) -> None:
    """The log and the summary say why the orchestrator never served."""
    log({"event": "not_started", "reason": why})
    log.close()
    _write_json(settings.run_dir / f"{settings.name}_summary.json",
                {"name": settings.name, "stopped": why})


def _start_or_say_why(settings: BridgeServiceSettings, log: _DecisionLog,
                      clock: Callable[[], float], made: list[StationFabric]
                      ) -> tuple[BridgeTopology, PairFabric, LabStation | None]:
    """The fabric; a station fabric made is put in `made` (to poll and close)."""
    stations = settings.stations

    def station_links(topology: BridgeTopology) -> PairFabric:
        assert stations is not None
        made.append(StationFabric(topology, stations, clock, log))
        return made[-1]

    try:
        return orchestrator_fabric(settings, log, clock,
                                   station_links if stations is not None else None)
    except Exception as exc:
        for fabric in made:
            fabric.close()
        what = "the switch" + (" or the station fabric" if stations is not None else "")
        _stopped_before_start(settings, log, f"{what} could not be opened: {exc}")
        raise


def _path_calibrations(settings: BridgeServiceSettings, log: _DecisionLog
                       ) -> PathCalibrations | None:
    """The paths' records (seeding those the store lacks from the config), or None."""
    if settings.calibration_db is None:
        return None
    calibrations = PathCalibrations(settings.calibration_db, settings.path_seeds,
                                    source=settings.seed_source,
                                    recheck_time=settings.topology.recheck_time)
    seeded = calibrations.seed()
    log({"event": "path_calibrations", "database": str(settings.calibration_db),
         "seeded": [f"{q}/{s}" for q, s in seeded]})
    return calibrations


def run_bridge_orchestrator(settings: BridgeServiceSettings, stop: Any) -> None:
    """Serve clients until `stop` is set or `settings.max_seconds` have passed; then refuse
    what is still open (ERR NO_RESOURCES), write the summary and return. With a switch
    (`settings.switch_lab`) every path is set up through it; if it cannot be opened, the
    summary says why and the error is raised."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log = _DecisionLog(settings.run_dir / f"{settings.name}_decisions.jsonl")
    service: _Service | None = None

    def bridge_now() -> float:
        return service.bridge_now() if service is not None else 0.0

    made: list[StationFabric] = []
    topology, fabric, switch_station = _start_or_say_why(settings, log, bridge_now, made)
    calibrations = None
    try:
        calibrations = _path_calibrations(settings, log)
        if calibrations is not None:
            topology = calibrations.anchored(topology)
    except Exception as exc:
        if switch_station is not None:
            switch_station.close()
        for station_fabric in made:
            station_fabric.close()
        _stopped_before_start(settings, log, f"the path calibrations could not be read: {exc}")
        raise
    context = zmq.Context()
    authenticator = start_authenticator(context, settings.key_dir)
    router = context.socket(zmq.ROUTER)
    engine = BridgeEngine(topology, Scheduler(topology, settings.scheduler), fabric,
                          settings.seed, log, settings.max_open_per_client, calibrations)
    service = _Service(settings, router, engine, log,
                       next((f.nodes for f in made if f.nodes is not None), None))
    stopped = "stop flag"
    try:
        log.timeline = open_timeline(settings.telemetry_address, settings.key_dir,
                                     settings.name, topology.stations, log)
        make_curve_server(router, settings.key_dir, settings.name)
        router.setsockopt(zmq.MAXMSGSIZE, SOCKET_MAXMSGSIZE)
        router.linger = 1000  # the last replies must reach the clients
        router.router_mandatory = False
        router.bind(settings.address)
        bound = router.getsockopt(zmq.LAST_ENDPOINT)
        address = bound.decode() if isinstance(bound, bytes) else str(bound)
        _write_json(settings.run_dir / f"{settings.name}_ready.json",
                    {"address": address, "fabric": engine.fabric.name,
                     "simulated": engine.fabric.simulated, "time_scale": settings.time_scale,
                     "switch": _switch_name(settings),
                     "telemetry": log.timeline.address if log.timeline else None,
                     "key_dir": str(settings.key_dir)})
        poller = zmq.Poller()  # a herald from a station wakes the loop as a client does
        for socket in (router, *(s for f in made for s in f.sockets())):
            poller.register(socket, zmq.POLLIN)
        service.begun = time.monotonic()
        while not stop:
            if settings.max_seconds is not None and \
                    time.monotonic() - service.begun > settings.max_seconds:
                stopped = f"max_seconds ({settings.max_seconds:g} s)"
                break
            now = service.bridge_now()
            engine.advance(now)
            service.flush()
            if router in dict(poller.poll(service.wait_ms(now))):
                while True:
                    try:
                        frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    service.receive(frames)
                service.flush()
    except Exception as exc:  # the clients and the summary hear why, then it is raised
        stopped = f"an error: {type(exc).__name__}: {exc}"
        raise
    finally:
        engine.stop_all(max(engine.now, service.bridge_now()),
                        f"the orchestrator stopped ({stopped}) before serving the request")
        service.flush()
        router.close()
        authenticator.stop()
        context.term()
        if switch_station is not None:
            switch_station.close()  # the paths stay made (the switch holds them)
        summary = service.summary(stopped)
        for station_fabric in made:
            summary["stations"] = station_fabric.summary()
            station_fabric.close()
        log.close()
        _write_json(settings.run_dir / f"{settings.name}_summary.json", summary)
