"""Telemetry for the monitor: what the lab's processes publish, and how it is read back.

Processes that own instruments (a lab's ``characterize``, ``run``, ``calibrate``) or run the
network (station, node agents, orchestrator) publish on a ZeroMQ PUB socket named in their
config; ``qnetlab monitor`` subscribes and never opens an instrument, so it works beside a
running sequence and across hosts.

The wire: two frames per message, ``[topic, payload]``. The topic is ``"<source>/<kind>"``
(UTF-8; a SUB may filter by source or kind), the payload one version byte (`VERSION`) and
compact JSON. Telemetry is not timing-critical, so JSON keeps it readable. `decode` checks
every field (type, finite numbers, bounded lengths, known kind and version) and raises
`TelemetryError` naming what is wrong; `TelemetrySubscriber` counts such messages in
``malformed`` and drops them, it never crashes on what comes off the wire.

Security: with a key directory the publisher is a CURVE server with its own keypair (its
``name``, a key of the lab's key set, network/keys.py) behind a ZAP handler that admits only
the lab's public keys, so a subscriber without a key of the lab hears nothing. The monitor's
client key is ``monitor`` (``qnetlab keys CONFIG`` generates it). ``key_dir=None`` turns CURVE
off: for tests of the wire only.

The messages' units are SI, with unit strings as QCoDeS has them ("K", "W", "Hz", "dBm");
times are UNIX seconds. Details: docs/link.md#keys for the keys.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import zmq

from qnetlab.instruments.errors import ConfigError

from .keys import make_curve_client, make_curve_server, start_authenticator
from .telemetry_messages import (
    KINDS,
    MAX_COUNT,
    MAX_FRAME_BYTES,
    MAX_ITEMS,
    MAX_NAME,
    MAX_TEXT,
    PROGRESS_STATES,
    VALUE_KINDS,
    VERSION,
    CalibrationStates,
    LinkStatistics,
    NodeStatus,
    RequestEvent,
    SequenceProgress,
    SwitchConfiguration,
    TelemetryError,
    TelemetryMessage,
    ValueReading,
    check_name,
    decode,
    encode,
)

__all__ = [
    "KINDS",
    "MAX_COUNT",
    "MAX_FRAME_BYTES",
    "MAX_ITEMS",
    "MAX_NAME",
    "MAX_TEXT",
    "PROGRESS_STATES",
    "SEND_HWM",
    "VALUE_KINDS",
    "VERSION",
    "CalibrationStates",
    "LinkStatistics",
    "NodeStatus",
    "RequestEvent",
    "SequenceProgress",
    "SwitchConfiguration",
    "TelemetryEndpoints",
    "TelemetryError",
    "TelemetryMessage",
    "TelemetryPublisher",
    "TelemetrySubscriber",
    "ValueReading",
    "decode",
    "encode",
    "telemetry_endpoints",
]

SEND_HWM = 1000
"""Messages a publisher queues per subscriber before it drops (it never blocks)."""


# --- publisher and subscriber ------------------------------------------------------------

class TelemetryPublisher:
    """A bound PUB socket publishing telemetry as `name` (its source, and with `key_dir` the
    lab key it serves CURVE with). `publish` never blocks: a message that would wait (no
    subscriber keeps up) is dropped and counted in `dropped`. Thread-safe (one lock around
    the socket), so a sampler thread and the main thread may both publish.

    A bind that fails (the port in use, not this host's address) raises `ConfigError`
    naming `config_file`/`config_entry` (the config entry that named the address) and the
    fix."""

    def __init__(self, address: str, *, key_dir: Path | None, name: str,
                 config_file: str = "", config_entry: str = "telemetry") -> None:
        self.name = check_name("publisher name", name)
        self.dropped = 0
        """Messages dropped because the send queue was full."""
        self._lock = threading.Lock()
        self._context = zmq.Context()
        self._authenticator = None
        self._socket: zmq.Socket[bytes] | None = None
        try:
            if key_dir is not None:
                self._authenticator = start_authenticator(self._context, Path(key_dir))
            socket = self._context.socket(zmq.PUB)
            socket.linger = 0
            socket.sndhwm = SEND_HWM
            if key_dir is not None:
                make_curve_server(socket, Path(key_dir), name)
            self._socket = socket
            try:
                socket.bind(address)
            except zmq.ZMQError as exc:
                raise _bind_error(address, exc, config_file, config_entry) from None
            endpoint = socket.getsockopt(zmq.LAST_ENDPOINT)
            self.address = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)
            """The bound address (with the port the OS chose for ``tcp://HOST:*``)."""
        except BaseException:
            self.close()
            raise

    def publish(self, message: TelemetryMessage) -> None:
        """Queue `message` for every subscriber; never blocks. TelemetryError if it is not a
        telemetry message. After `close`, does nothing."""
        frames = encode(message)
        with self._lock:
            if self._socket is None:
                return
            try:
                self._socket.send_multipart(frames, flags=zmq.NOBLOCK)
            except zmq.Again:
                self.dropped += 1

    def close(self, linger_s: float = 0.0) -> None:
        """Unbind and stop the ZAP handler; idempotent. `linger_s`: how long what is still
        queued may take to reach the subscribers (a process's last statistics)."""
        with self._lock:
            if self._socket is not None:
                self._socket.close(int(linger_s * 1000))
                self._socket = None
            if self._authenticator is not None:
                self._authenticator.stop()
                self._authenticator = None
            if not self._context.closed:
                self._context.term()

    def __enter__(self) -> TelemetryPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bind_error(address: str, exc: zmq.ZMQError, file: str, entry: str) -> ConfigError:
    port = address.rpartition(":")[2]
    where = file or "telemetry"
    if exc.errno == zmq.EADDRINUSE:
        return ConfigError(where, entry, f"{address} is in use by another process (port "
                           f"{port}), so telemetry cannot be published there",
                           f"stop what listens there (`ss -ltnp 'sport = :{port}'` shows it: "
                           f"another run on this lab?), or give {entry} a free port")
    return ConfigError(where, entry, f"cannot bind {address} ({exc})",
                       "write tcp://<an address of this host>:PORT, e.g. "
                       "tcp://127.0.0.1:29110")


class TelemetrySubscriber:
    """A SUB socket per endpoint (source name -> address), each a CURVE client as
    `client_name` trusting only the server key of that source's name (``<key_dir>/public/
    <source>.key``). `receive` returns what arrived, decoded; anything malformed, or claiming
    another source than the endpoint it came from, is dropped and counted in `malformed`
    (the last reason in `last_error`)."""

    def __init__(self, endpoints: Mapping[str, str], *, key_dir: Path | None,
                 client_name: str = "monitor") -> None:
        self.endpoints = dict(endpoints)
        self.malformed = 0
        self.last_error = ""
        self._context = zmq.Context()
        self._sockets: dict[zmq.Socket[bytes], str] = {}
        self._poller = zmq.Poller()
        self._pending: list[TelemetryMessage] = []
        """Received but not yet returned (what `wait_for` read past its match)."""
        try:
            for source, address in self.endpoints.items():
                socket = self._context.socket(zmq.SUB)
                self._sockets[socket] = source
                socket.linger = 0
                socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES + 2 * MAX_NAME)
                socket.rcvhwm = 10 * SEND_HWM
                # Retry a publisher that is not up yet every 20 ms (libzmq: 100 ms), so a
                # monitor started first hears a short run from its start.
                socket.reconnect_ivl = 20
                if key_dir is not None:
                    make_curve_client(socket, Path(key_dir), client_name, source)
                socket.setsockopt(zmq.SUBSCRIBE, b"")
                socket.connect(address)
                self._poller.register(socket, zmq.POLLIN)
        except BaseException:
            self.close()
            raise

    def receive(self, timeout_s: float) -> list[TelemetryMessage]:
        """Wait up to `timeout_s` for telemetry, then take everything queued; the decoded
        messages in arrival order per endpoint ([] when nothing came)."""
        messages, self._pending = self._pending, []
        ready = dict(self._poller.poll(0 if messages else max(0, int(timeout_s * 1000))))
        while ready:
            for socket in ready:
                self._drain(socket, messages)
            ready = dict(self._poller.poll(0))
            if len(messages) > 100 * SEND_HWM:  # a flood: let the caller draw meanwhile
                break
        return messages

    def _drain(self, socket: zmq.Socket[bytes], out: list[TelemetryMessage]) -> None:
        for _ in range(SEND_HWM):
            try:
                frames = socket.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                message = decode(frames)
                if message.source != self._sockets[socket]:
                    raise TelemetryError(f"telemetry source: {message.source!r} came from "
                                         f"the endpoint of {self._sockets[socket]!r}")
            except TelemetryError as exc:
                self.malformed += 1
                self.last_error = str(exc)
                continue
            out.append(message)

    def wait_for(self, predicate: Callable[[TelemetryMessage], bool], timeout_s: float
                 ) -> TelemetryMessage:
        """The first message for which `predicate` holds, waiting up to `timeout_s`; those
        before it are dropped, those after it kept for the next `receive`. TimeoutError
        naming the endpoints when none came (for tests and tools)."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            messages = self.receive(max(left, 0.0))
            for index, message in enumerate(messages):
                if predicate(message):
                    self._pending = messages[index + 1:]
                    return message
            if left <= 0:
                raise TimeoutError(f"no matching telemetry from {self.endpoints} within "
                                   f"{timeout_s:g} s ({self.malformed} malformed dropped"
                                   f"{': ' + self.last_error if self.last_error else ''})")

    def close(self) -> None:
        for socket in self._sockets:
            socket.close(0)
        self._sockets.clear()
        if not self._context.closed:
            self._context.term()

    def __enter__(self) -> TelemetrySubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class TelemetryEndpoints:
    """Where a config's processes publish (source name -> address) and the key directory
    of their CURVE keys (None: CURVE off)."""

    endpoints: dict[str, str]
    key_dir: Path | None


def telemetry_endpoints(config_path: str | Path) -> TelemetryEndpoints:
    """The telemetry publishers of a lab config (``qnetlab.telemetry``: {its name: its
    address}) or of a network config (the station's, each node agent's, the orchestrator's,
    and those of the labs it names that publish). ConfigError naming the entry when the
    config names none."""
    from .telemetry_config import config_endpoints

    return config_endpoints(Path(config_path))
