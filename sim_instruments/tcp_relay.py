"""A TCP relay: listen on a host's address, forward each connection to the same port on
loopback.

The twins' servers (`server.BenchServer`, `zmq_server.ID1000Server`) listen on loopback only,
by design: `qnetlab sim serve` serves this machine. The bridge world across hosts
(`bridge_world.BridgeWorldPlan.relay`, docs/bridge.md#across-hosts) serves them on loopback
and relays its configured address to them, so the stations and the orchestrator reach the
twins over the network exactly as they reach instruments: SCPI sockets and the ID1000's
ZeroMQ links are byte streams over TCP, forwarded unchanged.

One thread per listening port and two per open connection (a handful: one station's driver
opens its tagger's SCPI, data-link and stream sockets, the orchestrator the switch's SCPI).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterable

__all__ = ["TcpRelay"]

CHUNK = 1 << 16
"""Bytes read at once (a tag stream's batch fits a few)."""


class TcpRelay:
    """Forward ``host:port`` to ``127.0.0.1:port`` for every port of `ports`. Binds in the
    constructor (an OSError there names the port); `start` serves; `close` stops and closes
    every socket."""

    def __init__(self, host: str, ports: Iterable[int]) -> None:
        self.host = host
        self.listeners: list[socket.socket] = []
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        try:
            for port in ports:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.listeners.append(sock)
                try:
                    sock.bind((host, port))
                except OSError as exc:
                    raise OSError(exc.errno, f"cannot relay {host}:{port} ({exc.strerror})"
                                  ) from None
                sock.listen(8)
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        for sock in self.listeners:
            self._spawn(self._accept, sock)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True,  # type: ignore[arg-type]
                                  name="tcp-relay")
        thread.start()
        self.threads.append(thread)

    def _accept(self, listener: socket.socket) -> None:
        port = listener.getsockname()[1]
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed: the relay stops
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5.0)
                upstream.settimeout(None)
            except OSError:  # nothing listens there (yet): the client sees a closed socket
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.open.update((client, upstream))
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy `source` to `sink` until either closes; then close both (the other
        direction's pump ends on the closed socket)."""
        try:
            while data := source.recv(CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                with self.lock:
                    self.open.discard(sock)

    def close(self) -> None:
        for sock in self.listeners:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self.lock:
            held = list(self.open)
        for sock in held:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self.threads:
            thread.join(5.0)
