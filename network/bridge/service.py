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
station processes reading their taggers (`station_fabric`); node agents are not processes yet.

Every client message is hostile until `wire.decode_request` has checked it; a malformed one
is counted under the field it got wrong and answered with ERR MALFORMED naming that field,
and the service keeps serving. A client is the owner of the key that authenticated its
connection (`network.keys.key_owner`), never what it calls itself. Every decision goes, with
its reason, to ``<run_dir>/<name>_decisions.jsonl`` and to the client whose request it
concerns. Protocol and physics: docs/bridge.md#the-orchestrator-process.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import zmq

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import PROFILES

from ..keys import key_owner, make_curve_server, start_authenticator
from ..messages import ErrCode
from .bridge_config import BridgeConfig
from .bridge_telemetry import TimelineTelemetry, open_timeline
from .des import SchedulingCore
from .fabric import Herald, PairFabric
from .path_calibration import PathCalibrations
from .records import Decision, Request
from .scheduler import Scheduler, SchedulerSettings
from .station_fabric import StationFabric, StationFabricSettings
from .switch_loop import SwitchPathError, orchestrator_fabric
from .topology import BridgeTopology, PathLink
from .wire import (
    SOCKET_MAXMSGSIZE,
    Accepted,
    BridgeWireError,
    Cancel,
    Cancelled,
    ClientMessage,
    DecisionEntry,
    Delivered,
    Err,
    RequestPairs,
    RequestTransfer,
    ServerMessage,
    Transferred,
    bloch_vector,
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


def teleported_fidelity(pair_fidelity: float, state: tuple[float, float, float]) -> float:
    """Fidelity of a state teleported over a Werner pair of fidelity F (docs/bridge.md):
    the output is the input depolarised with p = (4F - 1)/3, so a pure state arrives with
    (2F + 1)/3, and a mixed one of Bloch length r with (1 + p r^2)/2 +
    sqrt((1 - r^2)(1 - p^2 r^2))/2 (the qubit Uhlmann fidelity)."""
    p = (4.0 * pair_fidelity - 1.0) / 3.0
    r2 = min(1.0, math.fsum(v * v for v in state))
    mixed = math.sqrt(max(0.0, (1.0 - r2) * (1.0 - p * p * r2)))
    return min(1.0, max(0.0, (1.0 + p * r2) / 2.0 + mixed / 2.0))


@dataclass
class _Open:
    """A request the engine holds for a client."""

    client: str
    request_id: str
    """The client's id (the scheduler's is ``client/request_id``)."""
    message: RequestPairs | RequestTransfer
    submitted: float
    held: list[tuple[float, float, PathLink]] = field(default_factory=list)
    """Pairs held: (heralded, expires, link), s on the bridge clock."""


class BridgeEngine:
    """The orchestrator without sockets: client messages and time in, replies out
    (`outbox`: (client, message)). Time is passed in (s on the bridge clock, never
    decreasing): `advance(now)` carries out what fell due (heralds, expiries, the
    scheduler's wake-ups) in time order, so a late turn changes no outcome."""

    def __init__(self, topology: BridgeTopology, scheduler: SchedulingCore, fabric: PairFabric,
                 seed: int = 0, log: Callable[[dict[str, Any]], None] | None = None,
                 max_open_per_client: int = 256,
                 calibrations: PathCalibrations | None = None) -> None:
        """`calibrations`: each path's stored arm delay and time (the scheduler's RECHECKs
        are recorded there, an assigned path's stored values logged); None: none kept."""
        self.topology, self.scheduler, self.fabric = topology, scheduler, fabric
        self.calibrations = calibrations
        self.rng = np.random.default_rng([seed, 1])  # the bits: not the fabric's stream
        self.log = log or (lambda record: None)
        self.max_open = max_open_per_client
        self.open: dict[str, _Open] = {}
        self.per_client: Counter[str] = Counter()
        self.expiries: list[tuple[float, str]] = []
        self.outbox: list[tuple[str, ServerMessage]] = []
        self.counters: Counter[str] = Counter()
        self.now = 0.0
        self._failed: list[tuple[str, SwitchPathError]] = []
        """Requests whose path the fabric could not set up in the current call."""
        self._recheck_due: dict[str, list[Decision]] = {}
        """Request -> the RECHECKs of its stale paths, done when its ASSIGN's switching is."""

    # -- client messages ------------------------------------------------------------------
    def handle(self, client: str, message: ClientMessage, now: float) -> None:
        """A checked message from `client` (its key's owner) at `now`."""
        self.advance(now)
        if isinstance(message, Cancel):
            self._cancel(client, message.request_id, now)
        else:
            self._submit(client, message, now)

    def _submit(self, client: str, message: RequestPairs | RequestTransfer, now: float) -> None:
        rid = message.request_id
        key = f"{client}/{rid}"
        if key in self.open:
            self._reply(client, Err(rid, "UNSUPPORTED", f"request id {rid} is already open: "
                                    "ids must be unique among your open requests"))
            return
        if self.per_client[client] >= self.max_open:
            self._reply(client, Err(rid, "NO_RESOURCES", f"{self.max_open} requests already "
                                    "open: wait for some to finish"))
            return
        deadline = None if message.deadline_s is None else now + message.deadline_s
        if isinstance(message, RequestTransfer):
            request = Request(key, message.source, message.target, 1, message.min_fidelity,
                              deadline, transfer=True)
        else:
            request = Request(key, message.qnu_a, message.qnu_b, message.pairs,
                              message.min_fidelity, deadline)
        self.open[key] = _Open(client, rid, message, now)
        self.per_client[client] += 1
        self.counters["requests"] += 1
        self._call(now, self.scheduler.submit, request)

    def _cancel(self, client: str, rid: str, now: float) -> None:
        key = f"{client}/{rid}"
        if key not in self.open:
            self._reply(client, Err(rid, "UNKNOWN_REQUEST", f"request {rid} is not open (done, "
                                    "refused, cancelled or never made): nothing to cancel"))
            return
        self._call(now, self.scheduler.cancel, key)

    def stop_all(self, now: float, why: str) -> None:
        """Refuse every open request (the orchestrator is stopping), so no client waits."""
        for key, entry in list(self.open.items()):
            self.log({"time": now, "action": "ERR", "request": key, "client": entry.client,
                      "code": "NO_RESOURCES", "reason": why})
            self._reply(entry.client, Err(entry.request_id, "NO_RESOURCES", clip(why)))
            self._forget(key)

    # -- time -----------------------------------------------------------------------------
    def next_time(self) -> float | None:
        """s (bridge clock) when `advance` next has something to do."""
        times = [t for t in (self.fabric.next_time(), self.scheduler.next_wakeup(),
                             self.expiries[0][0] if self.expiries else None) if t is not None]
        return min(times) if times else None

    def advance(self, now: float) -> None:
        """Carry out, in time order, everything due at or before `now`."""
        for _ in range(1_000_000):  # bounded: a scheduler bug must not hang the process
            herald = self.fabric.next_time()
            expiry = self.expiries[0][0] if self.expiries else None
            wake = self.scheduler.next_wakeup()
            due = min((t for t in (herald, expiry, wake) if t is not None), default=None)
            if due is None or due > now:
                break
            at = max(due, self.now)  # never backwards (a wake-up set for the past)
            if expiry is not None and expiry <= due:
                self._expire(at)
            elif herald is not None and herald <= due:
                popped = self.fabric.pop(now)
                if popped is not None:
                    self._herald(popped, max(popped.time, self.now))
            else:
                self._call(at, self.scheduler.tick)
        self.now = max(self.now, now)

    def _herald(self, herald: Herald, at: float) -> None:
        entry = self.open.get(herald.request)
        if entry is None:
            return
        usable = herald.link.usable_age(entry.message.min_fidelity, self.topology.memory_cutoff)
        if usable <= 0.0:  # this path cannot reach the minimum even fresh
            self.counters["pairs_below_minimum"] += 1
            return
        entry.held.append((at, at + usable, herald.link))
        heapq.heappush(self.expiries, (at + usable, herald.request))
        self.counters["heralds"] += 1
        self._call(at, self.scheduler.pairs_held, herald.request, len(entry.held))

    def _expire(self, at: float) -> None:
        _, key = heapq.heappop(self.expiries)
        entry = self.open.get(key)
        if entry is None:
            return
        kept = [pair for pair in entry.held if pair[1] > at]
        if len(kept) == len(entry.held):
            return
        self.counters["pairs_expired"] += len(entry.held) - len(kept)
        entry.held = kept
        self._call(at, self.scheduler.pairs_held, key, len(kept))

    # -- decisions ------------------------------------------------------------------------
    def _call(self, now: float, method: Callable[..., list[Decision]], *args: object) -> None:
        self.now = max(self.now, now)
        decisions = method(*args, now)
        finished: list[str] = []
        self._failed = []
        for decision in decisions:
            entry = self.open.get(decision.request or "")
            record = decision.as_record()
            if entry is not None:
                record["client"] = entry.client
            self.log(record)
            self.counters[f"decision_{decision.action.lower()}"] += 1
            if entry is None:
                continue
            self._reply(entry.client, _entry(entry.request_id, decision))
            finished += self._apply(decision, entry, now)
        for key in finished:
            self._forget(key)
        failed, self._failed = self._failed, []
        for key, exc in failed:  # the fabric could not set the path up: ERR, bench cleared
            self.counters["switch_failures"] += 1
            self._call(now, self._fail, key, exc)

    def _fail(self, key: str, exc: SwitchPathError, now: float) -> list[Decision]:
        """ERR for a request whose path the fabric could not set up (the scheduler's own
        `fail` when it has one; else a cancel, whose CANCEL is turned into that ERR)."""
        fail = getattr(self.scheduler, "fail", None)
        reason = f"the switch could not set the path up: {exc}"
        if fail is not None:
            decisions: list[Decision] = fail(key, ErrCode[exc.code], reason, now)
            return decisions
        return [replace(d, action="ERR", reason=reason, code=exc.code)
                if d.action == "CANCEL" else d for d in self.scheduler.cancel(key, now)]

    def _apply(self, d: Decision, entry: _Open, now: float) -> list[str]:
        """Carry out `d` (about `entry`); the requests it finished."""
        if d.action == "ASSIGN":
            assert d.station is not None and d.ready_at is not None
            a, b = _qnus(entry.message)
            try:
                self.fabric.assign(d.station, d.request or "", a, b, d.ready_at)
            except SwitchPathError as exc:
                self.log({"time": now, "event": "switch_failed", "for_request": d.request,
                          "client": entry.client, "station": d.station, "reason": str(exc)})
                self._failed.append((d.request or "", exc))
            else:
                self._rechecks(d.request or "", now)
                self._path_values(d, a, b, now)
            self._recheck_due.pop(d.request or "", None)
        elif d.action == "RECHECK" and d.station:
            # done once the switch has made the path (the ASSIGN that follows)
            self._recheck_due.setdefault(d.request or "", []).append(d)
        elif d.action in ("SUSPEND", "RELEASE") and d.station is not None:
            self.fabric.release(d.station)
        elif d.action == "ACK":
            self._reply(entry.client, Accepted(entry.request_id,
                                               d.values.get("expected_time", 0.0)))
        elif d.action == "OK":
            self._deliver(entry, d.station or "", now)
            return [d.request or ""]
        elif d.action == "ERR":
            self.counters["pairs_wasted"] += len(entry.held)
            self._reply(entry.client, Err(entry.request_id, d.code or "UNSUPPORTED",
                                          clip(d.reason)))
            return [d.request or ""]
        elif d.action == "CANCEL":
            self.counters["pairs_wasted"] += len(entry.held)
            self._reply(entry.client, Cancelled(entry.request_id))
            return [d.request or ""]
        return []

    def _rechecks(self, request: str, now: float) -> None:
        """Record the re-checks of `request`'s stale paths, now that they are switched in."""
        for d in self._recheck_due.get(request, []):
            assert d.station is not None
            done = d.ready_at if d.ready_at is not None else now
            for qnu in d.qnus:
                self.counters["rechecks"] += 1
                record = None if self.calibrations is None else \
                    self.calibrations.recheck(qnu, d.station, done)
                self.log({"time": now, "event": "recheck", "for_request": request, "qnu": qnu,
                          "station": d.station, "done_at": done, "measured": False,
                          "cost": d.values.get("recheck_time", 0.0),
                          "recorded": record is not None,
                          "arm_delay": None if record is None else record.arm_delay})

    def _path_values(self, d: Decision, a: str, b: str, now: float) -> None:
        """Log the stored values of the paths switched in (the station's windows would be
        set from them; the simulated link does not model arm delays)."""
        if self.calibrations is None or d.station is None:
            return
        records = [self.calibrations.record(q, d.station) for q in (a, b)]
        self.log({"time": now, "event": "path_values", "for_request": d.request,
                  "station": d.station,
                  "arm_delay": {r.qnu: r.arm_delay for r in records},
                  "age": {r.qnu: self.calibrations.run_start + now - r.checked
                          for r in records}})

    def _deliver(self, entry: _Open, station: str, now: float) -> None:
        fidelities = [link.fidelity_at(now - heralded) for heralded, _, link in entry.held]
        latency = now - entry.submitted
        self.counters["delivered"] += 1
        m = entry.message
        if isinstance(m, RequestTransfer):
            pair = fidelities[0]
            m1, m2 = (int(b) for b in self.rng.integers(0, 2, size=2))
            self._reply(entry.client, Transferred(
                entry.request_id, station, teleported_fidelity(pair, bloch_vector(m.state)),
                pair, (m1, m2), self.topology.classical_delay(m.source, m.target), latency))
        else:
            self._reply(entry.client, Delivered(entry.request_id, station,
                                                tuple(fidelities[:m.pairs]), latency))

    def _forget(self, key: str) -> None:
        entry = self.open.pop(key, None)
        if entry is not None:
            self.per_client[entry.client] -= 1

    def _reply(self, client: str, message: ServerMessage) -> None:
        self.outbox.append((client, message))


def _qnus(m: RequestPairs | RequestTransfer) -> tuple[str, str]:
    return (m.source, m.target) if isinstance(m, RequestTransfer) else (m.qnu_a, m.qnu_b)


def _entry(request_id: str, d: Decision) -> DecisionEntry:
    """A decision as the client sees it: its own request id, numbers that JSON carries."""
    values = {k: v for k, v in d.values.items() if math.isfinite(v)}
    return DecisionEntry(request_id, d.time, d.action, clip(d.reason), d.station,
                         tuple(d.qnus[:2]), d.ready_at, d.code, values)


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
                 engine: BridgeEngine, log: _DecisionLog) -> None:
        self.settings, self.router, self.engine, self.log = settings, router, engine, log
        self.begun = time.monotonic()
        self.routes: dict[str, bytes] = {}
        """Key owner -> routing id of the connection last heard from it."""
        self.malformed: Counter[str] = Counter()
        """Malformed frames by the field they got wrong."""
        self.strangers: Counter[str] = Counter()

    def bridge_now(self) -> float:
        return (time.monotonic() - self.begun) * self.settings.time_scale

    def receive(self, frames: Sequence[zmq.Frame]) -> None:
        owner = key_owner(frames[-1])
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
    service = _Service(settings, router, engine, log)
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
