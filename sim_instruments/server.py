"""TCP socket servers for a simulated bench (``qnetlab sim serve CONFIG``).

Each simulated instrument listens on the host and port of its ``real`` address in the lab
config (any 127.0.0.0/8 host, e.g. ``TCPIP0::127.0.0.2::5025::SOCKET``), so the real drivers
reach it with pyvisa-py exactly as they would reach hardware. Input is bounded per connection
like an instrument's input buffer (`MAX_INPUT_BYTES`, `MAX_BLOCK_BYTES`: SCPI error -363). One
process serves the whole bench from a single selector loop; latency faults are scheduled, not
slept on. A control port (JSON lines of at most `MAX_CONTROL_BYTES`, 127.0.0.1 only) injects
faults and moves lab time: ``{"op": "inject", "instrument": "mw_source", "fault": "no_reply",
"count": 1}``, ``clear``, ``advance`` (``seconds``), ``heat_load`` (``watts``), ``ping``, ``stop``.

Transports and faults: docs/simulation.md#4-transports.
"""

from __future__ import annotations

import heapq
import ipaddress
import json
import logging
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from pyvisa import rname

from qnetlab.instruments.errors import ConfigError

from .bench import SimulatedBench
from .faults import Endpoint, MessageScanner, Overrun

log = logging.getLogger(__name__)

LOOPBACK_NET = ipaddress.ip_network("127.0.0.0/8")
"""Where the rehearsal lab's instruments may listen: Linux routes all of 127.0.0.0/8 to the
loopback interface, so each instrument can have its own address, as on a lab network."""


def socket_address(bench: SimulatedBench, instrument: str) -> tuple[str, int]:
    """The loopback (host, port) an instrument's `real` address names; ConfigError otherwise.

    Any host of 127.0.0.0/8 (or ``localhost``, or ``::1``) is served, so two instruments can
    each take their vendor's port (5025 for both Keysight instruments) on their own address.
    """
    config = bench.config
    address = config.instruments[instrument].addresses.get("real")
    entry = f"instruments.{instrument}.address.real"
    fix = ("give a loopback SOCKET address such as TCPIP0::127.0.0.1::5025::SOCKET (any "
           "127.x.y.z: TCPIP0::127.0.0.2::5025::SOCKET gives the instrument its own address)")
    if address is None:
        raise config.error(entry, "missing: the server listens on the real address's port", fix)
    try:
        parsed = rname.parse_resource_name(address)
    except rname.InvalidResourceName as exc:
        raise config.error(entry, f"not a VISA resource name: {exc}", fix) from None
    if not isinstance(parsed, rname.TCPIPSocket):
        raise config.error(entry, f"{address} is not a SOCKET address", fix)
    host = _loopback_host(parsed.host_address)
    if host is None:
        raise config.error(entry, f"{address}: host {parsed.host_address} is not a loopback "
                           "address, and `qnetlab sim serve` serves on this machine only", fix)
    return host, int(parsed.port)


def _loopback_host(host: str) -> str | None:
    """`host` as an address to bind, if it is on this machine's loopback interface."""
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip in LOOPBACK_NET or ip == ipaddress.IPv6Address("::1"):
        return str(ip)
    return None


MAX_UNSENT = 64 * 1024 * 1024
"""A client that leaves this many reply bytes unread is disconnected, so that it cannot hold
memory or, worse, the loop that serves every other instrument."""

RECV_BYTES = 64 * 1024
"""The most bytes read from one connection at a time."""

MAX_INPUT_BYTES = 1024 * 1024
"""The input buffer of an instrument connection (bytes): the most text of one program message
(everything outside its definite-length blocks) held while its terminator has not arrived.
The longest command a qnetlab driver sends is a few hundred bytes: 1 MiB refuses nothing
legal, and a client that never sends a terminator costs at most this much."""

MAX_BLOCK_BYTES = 64 * 1024 * 1024
"""The most bytes the definite-length blocks of one program message may declare: a waveform
of 16 M float32 samples for the AWG, far more than any sequence here uploads at once."""

MAX_CONTROL_BYTES = 64 * 1024
"""The most bytes of one control-port request (a JSON line of a few hundred bytes)."""

INPUT_BUFFER_OVERRUN = (-363, "Input buffer overrun")
"""SCPI-1999 vol. 2, chapter 21: the device-specific error of an overflowing input buffer."""


@dataclass
class _Connection:
    sock: socket.socket
    endpoint: Endpoint | None  # None: the control port
    scanner: MessageScanner
    outbox: bytearray = field(default_factory=bytearray)
    closed: bool = False


class BenchServer:
    """Serves every instrument of a bench on the loopback address and port of its `real`
    address (`socket_address`); the control port listens on `host`."""

    def __init__(self, bench: SimulatedBench, control_port: int | None = None,
                 host: str = "127.0.0.1") -> None:
        self.bench = bench
        self.host = host
        self.selector = selectors.DefaultSelector()
        self.ports: dict[str, int] = {}
        self.hosts: dict[str, str] = {}
        self._pending: list[tuple[float, int, _Connection, bytes]] = []
        self._seq = 0
        self._running = False
        try:
            addresses = self._addresses()
            for name, endpoint in bench.endpoints.items():
                host_, port = addresses[name]
                self.ports[name] = self._listen(host_, port, endpoint, name)
                self.hosts[name] = host_
            self.control_port = self._listen(host, control_port, None, "control") if (
                control_port is not None) else None
        except BaseException:
            self.close()  # the ports already bound
            raise

    def _addresses(self) -> dict[str, tuple[str, int]]:
        """Each instrument's (host, port), checked for two instruments on one address."""
        addresses: dict[str, tuple[str, int]] = {}
        for name in self.bench.endpoints:
            address = socket_address(self.bench, name)
            other = next((o for o, a in addresses.items() if a == address), None)
            if other is not None:
                raise self.bench.config.error(
                    f"instruments.{name}.address.real",
                    f"{address[0]}:{address[1]} is also {other}'s address",
                    "give each instrument its own port, or a loopback host of its own "
                    f"(127.0.0.2, 127.0.0.3, ...: TCPIP0::127.0.0.N::{address[1]}::SOCKET)")
            addresses[name] = address
        return addresses

    def resource(self, instrument: str) -> str:
        """The VISA resource name a driver opens to reach `instrument` on this server."""
        host = self.hosts[instrument]
        return f"TCPIP0::{host}::{self.ports[instrument]}::SOCKET"

    def _listen(self, host: str, port: int, endpoint: Endpoint | None, name: str) -> int:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(str(self.bench.config.path), f"instruments.{name}",
                              f"cannot listen on {host}:{port} ({exc.strerror})",
                              "stop whatever holds the port (another `qnetlab sim serve`?) "
                              "or change the port in the config") from None
        sock.listen(8)
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, ("listen", endpoint))
        return int(sock.getsockname()[1])

    # -- loop -----------------------------------------------------------------------------------
    def serve_forever(self, max_seconds: float | None = None) -> None:
        """Serve until `stop()` (or a control-port stop), or for at most `max_seconds`."""
        self._running = True
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        while self._running:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            timeout = 0.5
            if self._pending:
                timeout = max(0.0, min(timeout, self._pending[0][0] - now))
            for key, events in self.selector.select(timeout):
                kind, payload = key.data
                if kind == "listen":
                    self._accept(key.fileobj, payload)  # type: ignore[arg-type]
                    continue
                if events & selectors.EVENT_WRITE:
                    self._write(payload)
                if events & selectors.EVENT_READ and not payload.closed:
                    self._read(payload)
            self._flush_due()
        self.close()

    def stop(self) -> None:
        self._running = False

    def close(self) -> None:
        if self.selector.get_map() is None:  # closed already (serve_forever closes)
            return
        for key in list(self.selector.get_map().values()):
            self.selector.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()

    def _accept(self, listener: socket.socket, endpoint: Endpoint | None) -> None:
        sock, _ = listener.accept()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if endpoint is None:  # JSON lines: a '#' or a quote is just text
            scanner = MessageScanner(b"\n", max_text=MAX_CONTROL_BYTES, blocks=False)
        else:
            scanner = MessageScanner(endpoint.terminator, max_text=MAX_INPUT_BYTES,
                                     max_block=MAX_BLOCK_BYTES)
        self.selector.register(sock, selectors.EVENT_READ,
                               ("conn", _Connection(sock, endpoint, scanner)))

    def _drop(self, conn: _Connection) -> None:
        if not conn.closed:
            conn.closed = True
            self.selector.unregister(conn.sock)
            conn.sock.close()

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (ConnectionResetError, BlockingIOError):
            data = b""
        if not data:
            self._drop(conn)
            return
        for message in conn.scanner.feed(data):
            if isinstance(message, Overrun):
                self._overrun(conn, message)
                continue
            if conn.endpoint is None:
                self._send(conn, self._control(message) + b"\n")
                continue
            if not message.strip():
                continue
            result = conn.endpoint.exchange(message)
            if result.drop:
                self._drop(conn)
                return
            if result.reply is None:
                continue
            if result.delay:
                self._seq += 1
                heapq.heappush(self._pending, (time.monotonic() + result.delay, self._seq,
                                               conn, result.reply))
            else:
                self._send(conn, result.reply)
            if conn.closed:
                return

    def _overrun(self, conn: _Connection, overrun: Overrun) -> None:
        """A message longer than the input buffer: discarded, and reported as an instrument
        reports it.

        The connection is kept and the overlong message discarded, parsing going on after
        its terminator, as LXI instruments typically do: an IEEE 488.2 instrument reports a
        message it cannot take through its error queue and status byte rather than by
        hanging up, and keeping the socket lets the client read the error
        (``SYSTem:ERRor?``) on the connection that caused it. Memory stays bounded either
        way: the rest of the message is discarded as it arrives (`MessageScanner`).
        """
        if conn.endpoint is None:
            reply = {"ok": False, "error": f"request longer than {MAX_CONTROL_BYTES} bytes: "
                     "discarded; send one JSON object a line"}
            self._send(conn, json.dumps(reply).encode() + b"\n")
            return
        log.warning("%s: input buffer overrun (%d bytes without a terminator): message "
                    "discarded", conn.endpoint.device.name, overrun.held)
        with conn.endpoint.lock:
            conn.endpoint.device.push_error(*INPUT_BUFFER_OVERRUN)

    def _flush_due(self) -> None:
        now = time.monotonic()
        while self._pending and self._pending[0][0] <= now:
            _, _, conn, data = heapq.heappop(self._pending)
            if not conn.closed:
                self._send(conn, data)

    def _send(self, conn: _Connection, data: bytes) -> None:
        """Queue a reply; what the socket does not take now goes when it can (never block)."""
        conn.outbox.extend(data)
        if len(conn.outbox) > MAX_UNSENT:
            log.warning("dropping a client that left %d bytes unread", len(conn.outbox))
            self._drop(conn)
            return
        self._write(conn)

    def _write(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.outbox)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(conn)
            return
        del conn.outbox[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbox else 0)
        self.selector.modify(conn.sock, events, ("conn", conn))

    # -- control port -----------------------------------------------------------------------------
    def _control(self, message: bytes) -> bytes:
        try:
            request: dict[str, Any] = json.loads(message)
            reply = self._control_op(request)
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return json.dumps(reply).encode()

    def _control_op(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "ports": self.ports}
        if op == "inject":
            self.bench.faults(request["instrument"]).inject(
                request["fault"], count=request.get("count", 1),
                seconds=request.get("seconds", 0.0))
            return {"ok": True}
        if op == "clear":
            for endpoint in self.bench.endpoints.values():
                endpoint.faults.clear()
            return {"ok": True}
        if op == "advance":
            self.bench.world.advance(float(request["seconds"]))
            return {"ok": True, "time": self.bench.world.now()}
        if op == "heat_load":
            self.bench.world.set_extra_heat_load(float(request["watts"]))
            return {"ok": True}
        if op == "stop":
            self.stop()
            return {"ok": True}
        raise ValueError(f"unknown op {op!r}; use ping, inject, clear, advance, heat_load "
                         "or stop")


class ControlClient:
    """Talk to a running bench server's control port."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._file = self._sock.makefile("rwb")

    def request(self, **request: Any) -> dict[str, Any]:
        self._file.write(json.dumps(request).encode() + b"\n")
        self._file.flush()
        reply: dict[str, Any] = json.loads(self._file.readline())
        if not reply.get("ok"):
            raise RuntimeError(f"bench server refused {request}: {reply.get('error')}")
        return reply

    def inject(self, instrument: str, fault: str, count: int | None = 1,
               seconds: float = 0.0) -> None:
        self.request(op="inject", instrument=instrument, fault=fault, count=count,
                     seconds=seconds)

    def close(self) -> None:
        self._file.close()
        self._sock.close()
