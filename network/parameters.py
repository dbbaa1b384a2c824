"""A node's calibrated values, published read-only to the other labs of the network.

A link calibration on one node needs the other node's calibrated values (its transducer's
efficiency and added noise, ...). Each node runs a `ParameterServer` beside its parameter
store; the other reads it with `fetch_parameters`. The server only ever reads the store.

Wire format (one frame each way, over a CURVE-authenticated ROUTER socket, like every socket
of the lab: a client without a lab key never completes the handshake and gets nothing)::

    request   VERSION byte + b"GET"
    reply     VERSION byte + compact JSON {"node": NAME, "values": {parameter: value, ...}}
    error     VERSION byte + compact JSON {"error": "what was wrong"}

Anything but GET (a write attempt, garbage, another version) gets the error reply; nothing
in the store changes. Values are SI floats, as the store holds them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import zmq

from qnetlab.instruments.errors import InstrumentCommunicationError

from .keys import make_curve_client, make_curve_server, start_authenticator

VERSION = 1
GET = b"GET"
_POLL_MS = 50
"""How often the server looks at its stop flag, ms."""
_MAX_REQUEST_BYTES = 4096
"""The server's `zmq.MAXMSGSIZE`: a request is 4 bytes, CURVE's handshake a few hundred."""
_MAX_REPLY_BYTES = 1 << 20
"""The client's `zmq.MAXMSGSIZE`: a node's values as JSON are a few kB."""


class ParameterServiceError(InstrumentCommunicationError):
    """A parameter request failed: no answer in time, or the server refused it."""


class _StoredValue(Protocol):
    @property
    def value(self) -> float: ...


class _Store(Protocol):
    def current_values(self) -> Mapping[str, _StoredValue]: ...


StoreReader = Callable[[], Mapping[str, float]]


def _reader(source: _Store | StoreReader) -> StoreReader:
    if hasattr(source, "current_values"):
        store: Any = source
        return lambda: {name: float(v.value) for name, v in store.current_values().items()}
    if callable(source):
        return source
    raise TypeError("ParameterServer needs a ParameterStore or a function returning "
                    "{parameter: value}")


def _reply(payload: Mapping[str, Any]) -> bytes:
    return bytes([VERSION]) + json.dumps(payload, separators=(",", ":")).encode()


class ParameterServer:
    """Answers GET with `name`'s current values (module docstring), in a thread.

    `store_reader` is the node's `ParameterStore` (its latest valid values are served) or a
    function returning {parameter: value}. `address` is ``tcp://HOST:PORT`` (port ``*``: any
    free one; the bound address is `address` after `start`). `lifetime` (s) stops the server
    by itself if no one calls `stop`.
    """

    def __init__(self, store_reader: _Store | StoreReader, address: str, key_dir: Path,
                 name: str, *, lifetime: float | None = None) -> None:
        self._read = _reader(store_reader)
        self.address = address
        self.name = name
        self.served = 0
        """GET requests answered."""
        self.refused = 0
        """Requests answered with an error."""
        self._key_dir = Path(key_dir)
        self._lifetime = lifetime
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name=f"parameters-{name}",
                                        daemon=True)

    def start(self) -> ParameterServer:
        """Bind and start answering; returns once bound (raises what binding raised)."""
        self._thread.start()
        self._ready.wait(10.0)
        if self._failure is not None:
            raise self._failure
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def __enter__(self) -> ParameterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        context = zmq.Context()
        authenticator = None
        socket = None
        try:
            authenticator = start_authenticator(context, self._key_dir)
            socket = context.socket(zmq.ROUTER)
            socket.linger = 0
            socket.setsockopt(zmq.MAXMSGSIZE, _MAX_REQUEST_BYTES)
            make_curve_server(socket, self._key_dir, self.name)
            socket.bind(self.address)
            endpoint = socket.getsockopt(zmq.LAST_ENDPOINT)
            self.address = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)
        except BaseException as exc:  # handed to `start`, which raises it in the caller
            self._failure = exc
        self._ready.set()
        try:
            deadline = None if self._lifetime is None else time.monotonic() + self._lifetime
            while socket is not None and self._failure is None and not self._stop.is_set():
                if deadline is not None and time.monotonic() > deadline:
                    break
                if socket.poll(_POLL_MS):
                    frames = socket.recv_multipart()
                    # identity (+ REQ's empty delimiter) go back unchanged before the reply
                    socket.send_multipart([*frames[:-1], self._answer(frames[-1])])
        finally:
            if socket is not None:
                socket.close(0)
            if authenticator is not None:
                authenticator.stop()
            context.term()

    def _answer(self, request: bytes) -> bytes:
        if request[:1] != bytes([VERSION]):
            self.refused += 1
            return _reply({"error": f"unsupported protocol version (expected {VERSION})"})
        if request[1:] != GET:
            self.refused += 1
            return _reply({"error": "read-only parameter service: only GET is answered"})
        try:
            values = {name: float(v) for name, v in self._read().items()}
        except Exception as exc:  # the store unreadable: say so, keep serving
            self.refused += 1
            return _reply({"error": f"could not read the parameter store: {exc}"})
        self.served += 1
        return _reply({"node": self.name, "values": values})


def request(address: str, key_dir: Path, client_name: str, server_name: str,
            payload: bytes, timeout: float) -> dict[str, Any]:
    """Send one raw request and return the decoded reply (for tests and tools)."""
    socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REQ)
    socket.linger = 0
    socket.setsockopt(zmq.MAXMSGSIZE, _MAX_REPLY_BYTES)
    try:
        make_curve_client(socket, Path(key_dir), client_name, server_name)
        socket.connect(address)
        no_answer = ParameterServiceError(
            f"no answer from the parameter service of {server_name!r} at {address} within "
            f"{timeout:g} s. Fix: check that it runs there and that {client_name!r}'s "
            "public key is in its lab key directory")
        # A REQ socket's send waits for a connection: one whose CURVE handshake the server
        # refused never comes, so the send is bounded by the timeout too.
        socket.sndtimeo = max(1, int(timeout * 1000))
        try:
            socket.send(payload)
        except zmq.Again:
            raise no_answer from None
        if not socket.poll(int(timeout * 1000)):
            raise no_answer
        reply = socket.recv()
    finally:
        socket.close(0)
    if reply[:1] != bytes([VERSION]):
        raise ParameterServiceError(f"parameter service at {address} answered in an "
                                    "unknown protocol version")
    try:
        decoded = json.loads(reply[1:])
    except ValueError:
        raise ParameterServiceError(f"parameter service at {address} sent a reply that is "
                                    "not JSON") from None
    if not isinstance(decoded, dict):
        raise ParameterServiceError(f"parameter service at {address} sent {decoded!r}")
    return decoded


def fetch_parameters(address: str, key_dir: Path, client_name: str, server_name: str,
                     timeout: float = 2.0) -> dict[str, float]:
    """The current values (SI) of the node served at `address`, read over CURVE as
    `client_name` (whose keypair is in `key_dir`), trusting only `server_name`'s key."""
    reply = request(address, key_dir, client_name, server_name, bytes([VERSION]) + GET,
                    timeout)
    if "error" in reply:
        raise ParameterServiceError(f"parameter service at {address} refused: "
                                    f"{reply['error']}")
    values = reply.get("values")
    if not isinstance(values, dict):
        raise ParameterServiceError(f"parameter service at {address} sent no values")
    try:
        return {str(k): float(v) for k, v in values.items()}
    except (TypeError, ValueError):
        raise ParameterServiceError(f"parameter service at {address} sent a value that is "
                                    "not a number") from None
