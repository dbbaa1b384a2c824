"""TCP socket servers for a simulated bench (``qnetlab sim serve CONFIG``).

Each simulated instrument listens on the port of its ``real`` address in the lab config
(``TCPIP0::127.0.0.1::PORT::SOCKET``), as an LXI instrument serves SCPI on port 5025, so the
real drivers reach it with pyvisa-py exactly as they would reach hardware. One process
serves the whole bench on one world, from a single selector loop: no threads contend for the
GIL, and replies that a latency fault delays are scheduled rather than slept on.

A control port (JSON lines, 127.0.0.1 only) lets tests inject faults and move virtual time:
``{"op": "inject", "instrument": "mw_source", "fault": "no_reply", "count": 1}``,
``{"op": "clear"}``, ``{"op": "advance", "seconds": 10}``, ``{"op": "heat_load", "watts":
1e-4}`` (an extra heat load on the mixing chamber), ``{"op": "ping"}``, ``{"op": "stop"}``.
"""

from __future__ import annotations

import heapq
import json
import logging
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from pyvisa import rname

from instruments.errors import ConfigError

from .bench import SimulatedBench
from .faults import Endpoint, split_messages

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def socket_port(bench: SimulatedBench, instrument: str) -> int:
    """The loopback port an instrument's `real` address names; ConfigError otherwise."""
    config = bench.config
    address = config.instruments[instrument].addresses.get("real")
    entry = f"instruments.{instrument}.address.real"
    fix = "give a loopback SOCKET address such as TCPIP0::127.0.0.1::5025::SOCKET"
    if address is None:
        raise config.error(entry, "missing: the server listens on the real address's port", fix)
    try:
        parsed = rname.parse_resource_name(address)
    except rname.InvalidResourceName as exc:
        raise config.error(entry, f"not a VISA resource name: {exc}", fix) from None
    if not isinstance(parsed, rname.TCPIPSocket) or parsed.host_address not in LOOPBACK:
        raise config.error(entry, f"{address} is not a SOCKET address on this machine", fix)
    return int(parsed.port)


MAX_UNSENT = 64 * 1024 * 1024
"""A client that leaves this many reply bytes unread is disconnected, so that it cannot hold
memory or, worse, the loop that serves every other instrument."""


@dataclass
class _Connection:
    sock: socket.socket
    endpoint: Endpoint | None  # None: the control port
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    closed: bool = False


class BenchServer:
    """Serves every instrument of a bench on its own loopback port."""

    def __init__(self, bench: SimulatedBench, control_port: int | None = None,
                 host: str = "127.0.0.1") -> None:
        self.bench = bench
        self.host = host
        self.selector = selectors.DefaultSelector()
        self.ports: dict[str, int] = {}
        self._pending: list[tuple[float, int, _Connection, bytes]] = []
        self._seq = 0
        self._running = False
        for name, endpoint in bench.endpoints.items():
            port = socket_port(bench, name)
            self._listen(port, endpoint, name)
            self.ports[name] = port
        self.control_port = self._listen(control_port, None, "control") if (
            control_port is not None) else None

    def _listen(self, port: int, endpoint: Endpoint | None, name: str) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(str(self.bench.config.path), f"instruments.{name}",
                              f"cannot listen on {self.host}:{port} ({exc.strerror})",
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
        for key in list(self.selector.get_map().values()):
            self.selector.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()

    def _accept(self, listener: socket.socket, endpoint: Endpoint | None) -> None:
        sock, _ = listener.accept()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.selector.register(sock, selectors.EVENT_READ, ("conn", _Connection(sock, endpoint)))

    def _drop(self, conn: _Connection) -> None:
        if not conn.closed:
            conn.closed = True
            self.selector.unregister(conn.sock)
            conn.sock.close()

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except (ConnectionResetError, BlockingIOError):
            data = b""
        if not data:
            self._drop(conn)
            return
        conn.inbox.extend(data)
        term = conn.endpoint.terminator if conn.endpoint else b"\n"
        messages, used = split_messages(conn.inbox, term)
        del conn.inbox[:used]
        for message in messages:
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
