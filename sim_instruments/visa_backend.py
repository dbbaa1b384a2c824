"""An in-process PyVISA backend that talks to a simulated bench.

A simulated world is registered first, from an already-parsed lab config:
``register_world(config)`` builds its bench once and returns a `RegisteredWorld` whose
``visalib`` (``"<token>@qnetlab"``) instruments are opened with; the backend looks the bench
up by that token (no config path in the library name, no second YAML parse). PyVISA imports
the top-level module `pyvisa_qnetlab` (which re-exports this one) for ``@qnetlab``, so
`instruments.station.load_station` reaches the registry by the backend's name
(``pyvisa.highlevel.get_wrapper_class("qnetlab").register_world``), never by importing this
package. Every registration gets a fresh world (no state leaks between tests or notebook
re-runs) unless it names a session seen before; all instruments of one station share
theirs, and the world's clock is the station's lab clock (`RegisteredWorld.clock`).
Resources are ``TCPIP0::<instrument name>::<twin model>::INSTR``.

Unlike pyvisa-sim, replies are returned whole, not byte by byte, and a fault that withholds
a reply raises a VISA timeout at once (the bench runs on virtual time).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pyvisa import constants, highlevel, rname
from pyvisa.constants import ResourceAttribute, StatusCode
from pyvisa.util import LibraryPath

from qnetlab.instruments.lab_config import LabConfig

from .bench import SimulatedBench, build_bench
from .faults import Endpoint, split_messages
from .physics.world import LabWorld

BACKEND = "qnetlab"
"""The PyVISA backend name: ``visalib="<token>@qnetlab"``."""


class WorldClock:
    """The lab clock (`instruments.lab_clock.LabClock`) of a simulated world: its time, and
    waits that advance it (instantly on the default virtual clock)."""

    def __init__(self, world: LabWorld) -> None:
        self.world = world

    def now(self) -> float:
        return self.world.now()

    def sleep(self, seconds: float) -> None:
        self.world.advance(seconds)


@dataclass(frozen=True)
class RegisteredWorld:
    """A simulated bench registered with the backend under `token`."""

    token: str
    bench: SimulatedBench

    @property
    def visalib(self) -> str:
        """The VISA library name instruments open this world with."""
        return f"{self.token}@{BACKEND}"

    @property
    def clock(self) -> WorldClock:
        """The world's clock, for the station (ramps, waits, the interlock guard)."""
        return WorldClock(self.bench.world)


_WORLDS: dict[str, SimulatedBench] = {}
_WORLDS_LOCK = threading.Lock()


def register_world(config: LabConfig, session: str | None = None) -> RegisteredWorld:
    """Build the simulated bench of an already-parsed lab config and register it; returns
    its token, VISA library name and clock.

    `session`: None gives a fresh world under a new token; a session string gives the world
    registered before under the same config file and session (built on first use), so a
    station can be closed and opened again on the same physics. Raises `ConfigError` for a
    simulated lab the config cannot build (unknown twin, preset, wiring).
    """
    if session is None:
        token = uuid.uuid4().hex
    else:
        if not session or "@" in session:
            raise ValueError(f"session {session!r}: give a non-empty string without '@' "
                             "(it becomes part of the simulated VISA library's name)")
        where = hashlib.sha1(str(config.path.resolve()).encode()).hexdigest()[:12]
        token = f"session-{session}-{where}"
    with _WORLDS_LOCK:
        bench = _WORLDS.get(token)
        if bench is None:
            bench = _WORLDS[token] = build_bench(config)
    return RegisteredWorld(token, bench)


def registered_world(token: str) -> RegisteredWorld:
    """The world registered under `token`; ValueError naming the fix if there is none."""
    with _WORLDS_LOCK:
        bench = _WORLDS.get(token)
    if bench is None:
        raise ValueError(
            f"no simulated world is registered as {token!r}: register one first, e.g. "
            "`world = pyvisa_qnetlab.register_world(load_config('lab.yaml'))`, then open "
            "instruments with visalib=world.visalib (load_station does this for the sim "
            "profile)")
    return RegisteredWorld(token, bench)


class _Session:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.pending = bytearray()
        self.ready_at = 0.0
        """time.monotonic() when a delayed (latency fault) reply becomes readable."""
        self.connected = True
        self.attrs: dict[Any, Any] = {
            ResourceAttribute.timeout_value: 2000,
            ResourceAttribute.termchar: ord("\n"),
            ResourceAttribute.termchar_enabled: False,
            ResourceAttribute.send_end_enabled: True,
            ResourceAttribute.suppress_end_enabled: False,
        }


class QnetlabVisaLibrary(highlevel.VisaLibraryBase):
    """The in-process transport to simulated instruments."""

    bench: SimulatedBench
    register_world = staticmethod(register_world)
    """The registry, reachable through PyVISA by the backend's name (module docstring)."""

    # The rest of the simulated lab is reached the same way, so that `instruments` and
    # `sequences` select it by configuration (the ``sim`` profile) and never import it.
    @staticmethod
    def serve_twin(visalib: str, instrument: str, twin: str) -> Any:
        """Start `instrument`'s ZeroMQ twin on the bench of `visalib` (`zmq_twins`)."""
        from .zmq_twins import serve_twin

        return serve_twin(visalib, instrument, twin)

    @staticmethod
    def get_library_paths() -> tuple[LibraryPath, ...]:
        return (LibraryPath("unset"),)

    @staticmethod
    def get_debug_info() -> dict[str, str]:
        return {"backend": "qnetlab simulated bench"}

    def _init(self) -> None:
        # The library path is the token of a registered world (module docstring).
        self.bench = registered_world(str(self.library_path)).bench
        self.sessions: dict[int, Any] = {}
        self._next_session = 1000

    def _register(self, obj: Any) -> int:
        self._next_session += 1
        self.sessions[self._next_session] = obj
        return self._next_session

    def open_default_resource_manager(self) -> tuple[Any, StatusCode]:
        return self._register(self), StatusCode.success

    def list_resources(self, session: Any, query: str = "?*::INSTR") -> tuple[str, ...]:
        names = tuple(
            f"TCPIP0::{name}::{inst.addresses['sim']}::INSTR"
            for name, inst in self.bench.config.instruments.items()
            if "sim" in inst.addresses
        )
        return tuple(rname.filter(names, query))

    def open(
        self, session: Any, resource_name: str,
        access_mode: constants.AccessModes = constants.AccessModes.no_lock,
        open_timeout: int = constants.VI_TMO_IMMEDIATE,
    ) -> tuple[Any, StatusCode]:
        try:
            parsed = rname.parse_resource_name(resource_name)
        except rname.InvalidResourceName:
            return 0, StatusCode.error_invalid_resource_name
        host = getattr(parsed, "host_address", None)
        endpoint = self.bench.endpoints.get(host) if host else None
        if endpoint is None:
            return 0, StatusCode.error_resource_not_found
        sess = _Session(endpoint)
        sess.attrs[ResourceAttribute.resource_name] = resource_name
        return self._register(sess), StatusCode.success

    def close(self, session: Any) -> StatusCode:
        return StatusCode.success if self.sessions.pop(session, None) is not None else (
            StatusCode.error_invalid_object)

    def _session(self, session: Any) -> _Session | None:
        sess = self.sessions.get(session)
        return sess if isinstance(sess, _Session) else None

    def write(self, session: Any, data: bytes) -> tuple[int, StatusCode]:
        sess = self._session(session)
        if sess is None:
            return 0, self.handle_return_value(session, StatusCode.error_invalid_object)
        if not sess.connected:
            return 0, self.handle_return_value(session, StatusCode.error_connection_lost)
        messages, used = split_messages(bytes(data), sess.endpoint.terminator)
        if used < len(data):  # the last message may come without a terminator (write_raw)
            messages.append(bytes(data[used:]))
        for message in messages:
            if not message.strip():
                continue
            result = sess.endpoint.exchange(message)
            if result.drop:
                sess.connected = False
                sess.pending.clear()
                return 0, self.handle_return_value(session, StatusCode.error_connection_lost)
            if result.reply is not None:
                if result.delay:
                    sess.ready_at = time.monotonic() + result.delay
                sess.pending.extend(result.reply)
        return len(data), StatusCode.success

    def read(self, session: Any, count: int) -> tuple[bytes, StatusCode]:
        sess = self._session(session)
        if sess is None:
            return b"", self.handle_return_value(session, StatusCode.error_invalid_object)
        if not sess.connected:
            return b"", self.handle_return_value(session, StatusCode.error_connection_lost)
        if not sess.pending:
            # Nothing will ever arrive: on virtual time the timeout has already elapsed.
            return b"", self.handle_return_value(session, StatusCode.error_timeout)
        wait = sess.ready_at - time.monotonic()
        if wait > 0:
            # A latency fault delays the reply in real time, as a slow instrument would.
            timeout = sess.attrs[ResourceAttribute.timeout_value] / 1000.0
            if wait > timeout:
                time.sleep(timeout)
                return b"", self.handle_return_value(session, StatusCode.error_timeout)
            time.sleep(wait)
        term = sess.endpoint.terminator
        end = sess.pending.find(term)
        # A terminator may be several bytes (CR LF on Lake Shore): take all of it, or the
        # rest would start the next reply.
        if end >= 0 and end + len(term) <= count:
            out = bytes(sess.pending[: end + len(term)])
            del sess.pending[: end + len(term)]
            return out, StatusCode.success_termination_character_read
        out = bytes(sess.pending[:count])
        del sess.pending[:count]
        status = StatusCode.success_max_count_read if sess.pending or len(out) == count else (
            StatusCode.success)
        return out, status

    def clear(self, session: Any) -> StatusCode:
        sess = self._session(session)
        if sess is None:
            return StatusCode.error_invalid_object
        sess.pending.clear()
        return StatusCode.success

    def flush(self, session: Any, mask: constants.BufferOperation) -> StatusCode:
        return self.clear(session)

    def get_attribute(self, session: Any, attribute: Any) -> tuple[Any, StatusCode]:
        sess = self._session(session)
        if sess is None:
            return None, StatusCode.error_invalid_object
        return sess.attrs.get(attribute), StatusCode.success

    def set_attribute(self, session: Any, attribute: Any, attribute_state: Any) -> StatusCode:
        sess = self._session(session)
        if sess is None:
            return StatusCode.error_invalid_object
        sess.attrs[attribute] = attribute_state
        return StatusCode.success

    def disable_event(self, session: Any, event_type: Any, mechanism: Any) -> StatusCode:
        return StatusCode.success

    def discard_events(self, session: Any, event_type: Any, mechanism: Any) -> StatusCode:
        return StatusCode.success


WRAPPER_CLASS = QnetlabVisaLibrary


def bench_of(instrument: Any) -> SimulatedBench:
    """The simulated bench behind a QCoDeS VISA instrument opened with this backend."""
    visalib = instrument.visa_handle.visalib
    if not isinstance(visalib, QnetlabVisaLibrary):
        raise TypeError(f"{instrument.name} is not connected through the qnetlab simulator")
    return visalib.bench
