"""ZeroMQ servers for the emulated ID Quantique ID1000 Time Controller.

Three kinds of socket, as on a real installation:

* the Time Controller's SCPI port, REP on 5555 (text request, text reply);
* the data-link service (IDQ's ``DataLinkTargetService``, REP on 6060, JSON replies) with
  ``start-stream --channel <n> --address <tc ip> --stream-port <p>`` (reply ``{"id": ...}``),
  ``status --id <id>``, ``stop --id <id>`` (reply ``{"status": {...}}``) and ``list``; an
  unknown or failed command replies ``{"error": {"description": ...}}`` (the shape IDQ's
  example ``dlt_exec`` reads);
* per stream, a PAIR socket bound on the stream port that carries one message per chunk of
  timestamps, and an empty message at the end of a recording (IDQ's example stream client
  stops on it).

Not confirmed against IDQ's documentation: the wire format of a stream message. Here it is
little-endian uint64 timestamps in 1 ps units counted from the start of the recording; the
exact ``status`` fields beyond those IDQ's example reads (``acquisitions_count``,
``inactivity``, ``timestamps_count``, ``error``/``errors``); and the type of an id (a string).

Everything binds to 127.0.0.1 unless told otherwise; a server stops after ``max_lifetime_s``
by itself and on `close`. Receives block with a timeout (never busy-poll: its p99
latency is milliseconds on 2 cores, docs/link.md#6-the-control-plane).
PAIR sends block when the peer is slow (PAIR never drops at the high-water mark, unlike
PUB/SUB) and give up after ``send_timeout_s``, which the stream's status then reports.

Run in a thread with ``ID1000Server(emulator).start()`` (tests) or in its own process with
``python -m qnetlab.sim_instruments.zmq_server`` (a server thread inside the client's process halves
its query rate, docs/simulation.md#4-transports).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import json
import math
import queue
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from .devices.idq_id1000 import Chunk, IDQuantiqueID1000Emulator

_POLL_S = 0.05
STREAM_SWITCH_INTERVAL_S = 2e-4
"""s: the longest a recording's threads may hold the interpreter lock from each other."""
"""How often a blocked receive wakes to check for close (s)."""

LOOKAHEAD_S = 0.25
"""s of recording drawn ahead of the real-time sends (only drawn: each chunk still leaves once
its recording time has passed). It must outlast the longest single draw: a simulated link
draws `link_clicks.BLOCK_ATTEMPTS` attempts at once, about 30 ms of CPU, and with less ahead
the chunks waiting behind that draw leave late, which the tagger's reader sees as tags
arriving after their block and drops (a few per cent of heralds lost, the rest aged by the
stall)."""

MAX_REQUEST_BYTES = 4096
"""The largest request either REP socket takes (bytes), as its ``zmq.MAXMSGSIZE``: ZeroMQ
disconnects a peer that sends more, before the message is buffered whole. The longest legal
messages are a few dozen bytes (``DELAy4:INPOrt:LINK INPU4``, ``start-stream --channel 4
--address <ip> --stream-port <port>``); the bound leaves room for ';'-joined SCPI commands."""

MAX_STREAM_INBOUND_BYTES = 256
"""A stream's PAIR socket only sends, so nothing legal arrives on it but ZMTP's handshake
commands, which pass the same limit (0 would refuse the peer's READY command and no stream
would ever connect; 256 bytes holds it with room to spare)."""


@dataclass
class _Stream:
    id: str
    channel: int
    port: int
    queue: queue.Queue[bytes | None] = field(default_factory=queue.Queue)
    thread: threading.Thread | None = None
    bound: threading.Event = field(default_factory=threading.Event)
    bind_error: str = ""
    stopped: bool = False
    acquisitions_count: int = 0
    timestamps_count: int = 0
    errors: list[str] = field(default_factory=list)
    last_activity: float = field(default_factory=time.monotonic)

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id, "channel": self.channel, "stream_port": self.port,
            "acquisitions_count": self.acquisitions_count,
            "timestamps_count": self.timestamps_count,
            "inactivity": time.monotonic() - self.last_activity,
            "error": self.errors[-1] if self.errors else None,
            "errors": [{"description": e} for e in self.errors],
        }


REBIND_S = 2.0
"""s a stream's bind retries a port that is still in use: the stream stopped on it has closed
its socket, but ZeroMQ's I/O thread releases the listening port after the close returns
(a loaded machine found the next recording's bind failing: "Address already in use")."""


def _bind_when_released(sock: zmq.Socket, address: str) -> None:
    """Bind `sock` to `address`, retrying for up to `REBIND_S` while the port is in use;
    the last ZMQError if it never comes free (another program holds it)."""
    deadline = time.monotonic() + REBIND_S
    while True:
        try:
            sock.bind(address)
            return
        except zmq.ZMQError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class ID1000Server:
    """The SCPI and data-link servers of one emulated ID1000, each in its own thread.

    Ports 0 pick free ports (see `scpi_address`, `data_address`). ``realtime`` paces a
    recording at its true duration (a stream a consumer must keep up with); without it chunks
    go out as fast as they are made.
    """

    def __init__(self, device: IDQuantiqueID1000Emulator, *, host: str = "127.0.0.1",
                 scpi_port: int = 5555, data_port: int = 6060, max_lifetime_s: float = 600.0,
                 realtime: bool = True, send_timeout_s: float = 2.0) -> None:
        self.device = device
        self.host = host
        self.realtime = realtime
        self.send_timeout_s = send_timeout_s
        self.max_lifetime_s = max_lifetime_s
        self._ports = (scpi_port, data_port)
        self._context = zmq.Context()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._streams: dict[str, _Stream] = {}
        self._port_threads: dict[int, threading.Thread] = {}
        """Stream port -> the thread that last served it (and closes its socket)."""
        self._streams_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._recorder: threading.Thread | None = None
        self._deadline = 0.0
        self.scpi_port = 0
        self.data_port = 0

    # -- life -----------------------------------------------------------------------------------
    @property
    def scpi_address(self) -> str:
        return f"tcp://{self.host}:{self.scpi_port}"

    @property
    def data_address(self) -> str:
        return f"tcp://{self.host}:{self.data_port}"

    def _bind_rep(self, port: int) -> tuple[zmq.Socket[Any], int]:
        sock = self._context.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        sock.setsockopt(zmq.RCVTIMEO, round(_POLL_S * 1e3))
        if port == 0:
            port = sock.bind_to_random_port(f"tcp://{self.host}")
        else:
            sock.bind(f"tcp://{self.host}:{port}")
        return sock, port

    def start(self) -> ID1000Server:
        """Bind the SCPI and data-link sockets (in the caller, so a bind error raises here)
        and start serving."""
        self._deadline = time.monotonic() + self.max_lifetime_s
        scpi, self.scpi_port = self._bind_rep(self._ports[0])
        data, self.data_port = self._bind_rep(self._ports[1])
        for target, sock in ((self._serve_scpi, scpi), (self._serve_data, data)):
            # The socket is handed over before the thread starts and used only by it.
            thread = threading.Thread(target=target, args=(sock,), daemon=True,
                                      name=f"id1000-{target.__name__}")
            self._threads.append(thread)
            thread.start()
        return self

    def _alive(self) -> bool:
        if time.monotonic() > self._deadline:
            self._closing.set()
        return not self._closing.is_set()

    def close(self) -> None:
        """Stop every thread and close every socket."""
        self._closing.set()
        self.device.stop_requested = True
        with self._streams_lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream.queue.put(None)
        threads = [*self._threads, *(s.thread for s in streams if s.thread)]
        if self._recorder is not None:
            threads.append(self._recorder)
        for thread in threads:
            thread.join(timeout=self.send_timeout_s + 1.0)
        # Every thread closes its own sockets. Never destroy() here: closing a socket that
        # another thread is still in (a stream stopped but still sending, a thread the host
        # starved) aborts the whole process inside libzmq. term() is the thread-safe end: a
        # blocking call left in another thread returns ETERM, that thread closes its socket,
        # and term() returns. In the background, so a thread stuck outside ZeroMQ holds no one.
        closer = threading.Thread(target=self._context.term, daemon=True, name="id1000-close")
        closer.start()
        closer.join(timeout=self.send_timeout_s + 1.0)

    def wait(self) -> None:
        """Block until the server stops (its lifetime ends or `close` is called)."""
        while self._alive():
            self._closing.wait(_POLL_S * 4)

    def __enter__(self) -> ID1000Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- SCPI -----------------------------------------------------------------------------------
    def _serve_scpi(self, sock: zmq.Socket[Any]) -> None:
        try:
            while self._alive():
                try:
                    request = sock.recv()
                except zmq.Again:
                    continue
                reply = self.device.reply(request.decode("utf-8", errors="replace"))
                sock.send_string(reply)
                with self.device.lock:
                    play = self.device.play_requested
                    self.device.play_requested = False
                if play:
                    self._start_recording()
        except zmq.ContextTerminated:
            pass  # close() ended a blocking call: the server is closing
        finally:
            sock.close(0)

    def _start_recording(self) -> None:
        # The pacing thread must hand each chunk over on time while the producer computes the
        # next ones in the same interpreter: with Python's default switch interval (5 ms) a
        # chunk could wait that long for the lock at every hand-over (cf. the station's
        # network.heralding_station.SWITCH_INTERVAL_S). Only ever lowered.
        sys.setswitchinterval(min(sys.getswitchinterval(), STREAM_SWITCH_INTERVAL_S))
        self._recorder = threading.Thread(target=self._record, daemon=True,
                                          name="id1000-recorder")
        self._recorder.start()

    def _record(self) -> None:
        """Pace the recording's chunks in real time and hand them to the streams; a producer
        thread draws them up to `LOOKAHEAD_S` ahead, so drawing a batch of chunks at once
        (the emulator does) never makes a chunk leave late."""
        t0 = time.monotonic()
        with self._streams_lock:
            streams = [s for s in self._streams.values() if not s.stopped]
        size = max(2, math.ceil(LOOKAHEAD_S / max(self.device.chunk_s, 1e-6)))
        ready: queue.Queue[Chunk | None] = queue.Queue(maxsize=size)
        done = threading.Event()
        producer = threading.Thread(target=self._produce, args=(ready, done), daemon=True,
                                    name="id1000-producer")
        producer.start()
        try:
            while True:
                try:
                    chunk = ready.get(timeout=_POLL_S)
                except queue.Empty:
                    if self._closing.is_set():
                        break
                    continue
                if chunk is None:
                    break
                if self.realtime:
                    # A chunk leaves once the recording time it covers has passed.
                    ahead = t0 + chunk.stop_ps * 1e-12 - time.monotonic()
                    if ahead > 0 and self._closing.wait(ahead):
                        break
                if self._closing.is_set():
                    break
                for stream in streams:
                    tags = chunk.tags.get(stream.channel)
                    # An empty message ends a stream, so a chunk without tags sends nothing.
                    if tags is not None and tags.size and not stream.stopped:
                        stream.queue.put(tags.astype("<u8").tobytes())
        finally:
            done.set()
            producer.join(timeout=self.send_timeout_s + 1.0)
        for stream in streams:
            if not stream.stopped:
                stream.queue.put(b"")  # end of the recording
                stream.acquisitions_count += 1

    def _produce(self, ready: queue.Queue[Chunk | None], done: threading.Event) -> None:
        """Draw the recording's chunks into `ready` (None at the end) until `done`."""

        def put(item: Chunk | None) -> bool:
            while not (done.is_set() or self._closing.is_set()):
                try:
                    ready.put(item, timeout=_POLL_S)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            # closing(): a recording cut short still ends now (its source writes what it has)
            with contextlib.closing(self.device.recording()) as chunks:
                for chunk in chunks:
                    if not put(chunk):
                        break
        finally:
            put(None)

    # -- data-link service ------------------------------------------------------------------------
    def _serve_data(self, sock: zmq.Socket[Any]) -> None:
        try:
            while self._alive():
                try:
                    request = sock.recv()
                except zmq.Again:
                    continue
                try:
                    answer = self._data_command(request.decode("utf-8", errors="replace"))
                except (ValueError, KeyError) as exc:
                    answer = {"error": {"description": str(exc)}}
                sock.send_string(json.dumps(answer))
        except zmq.ContextTerminated:
            pass  # close() ended a blocking call: the server is closing
        finally:
            sock.close(0)

    def _data_command(self, text: str) -> Any:
        words = shlex.split(text)
        if not words:
            raise ValueError("empty command")
        verb, options = words[0], _options(words[1:])
        if verb == "list":
            with self._streams_lock:
                return [s.id for s in self._streams.values() if not s.stopped]
        if verb == "start-stream":
            channel = int(options["channel"])
            port = int(options["stream-port"])
            if not 1 <= channel <= 4:
                raise ValueError(f"channel {channel} not in 1..4")
            return {"id": self._open_stream(channel, port).id}
        if verb in ("status", "stop"):
            with self._streams_lock:
                stream = self._streams.get(options["id"])
            if stream is None:
                raise ValueError(f"no acquisition with id {options['id']!r}")
            if verb == "status":
                return stream.status()
            stream.stopped = True
            stream.queue.put(None)
            with self._streams_lock:
                self._streams.pop(stream.id, None)
            # Its port is free once the reply comes (the stream's thread has closed its
            # socket), so a recording started at once can bind it again; a thread still
            # waiting in a send to no reader is not waited for beyond a second.
            if stream.thread is not None:
                stream.thread.join(timeout=min(1.0, self.send_timeout_s))
            return {"status": stream.status()}
        raise ValueError(f"unknown command {verb!r}")

    def _open_stream(self, channel: int, port: int) -> _Stream:
        # A stream stopped on this port may still be closing its socket (`stop` waits only
        # a second for it, and a loaded machine can take longer): the port is free once its
        # thread has ended, which takes at most its send timeout.
        previous = self._port_threads.get(port)
        if previous is not None and previous.is_alive():
            previous.join(timeout=self.send_timeout_s + 1.0)
        stream = _Stream(str(next(self._ids)), channel, port)
        stream.thread = threading.Thread(target=self._send_stream, args=(stream,), daemon=True,
                                         name=f"id1000-stream-{stream.id}")
        self._port_threads[port] = stream.thread
        stream.thread.start()
        stream.bound.wait(5.0)
        if stream.bind_error:
            raise ValueError(f"cannot open stream port {port}: {stream.bind_error}")
        with self._streams_lock:
            self._streams[stream.id] = stream
        return stream

    def _send_stream(self, stream: _Stream) -> None:
        # The PAIR socket is created, used and closed in this thread only.
        try:
            sock = self._context.socket(zmq.PAIR)
        except zmq.ZMQError as exc:  # the server closed meanwhile
            stream.bind_error = str(exc)
            stream.bound.set()
            return
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_STREAM_INBOUND_BYTES)
        sock.setsockopt(zmq.LINGER, round(self.send_timeout_s * 1e3))
        sock.setsockopt(zmq.SNDTIMEO, round(self.send_timeout_s * 1e3))
        try:
            _bind_when_released(sock, f"tcp://{self.host}:{stream.port}")
        except zmq.ZMQError as exc:
            stream.bind_error = str(exc)
            sock.close(0)
            stream.bound.set()
            return
        stream.bound.set()
        try:
            while self._alive() and not stream.stopped:
                try:
                    message = stream.queue.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if message is None:
                    break
                try:
                    sock.send(message)
                except zmq.Again:
                    stream.errors.append(
                        f"no reader on port {stream.port} took the data within "
                        f"{self.send_timeout_s} s; timestamps lost")
                    continue
                stream.timestamps_count += len(message) // 8
                stream.last_activity = time.monotonic()
        except zmq.ContextTerminated:
            pass  # close() ended a blocking call: the server is closing
        finally:
            sock.close(0)


def _options(words: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    key = ""
    for word in words:
        if word.startswith("--"):
            key = word[2:]
            out[key] = ""
        elif key:
            out[key] = word
    return out


def decode_stream_message(message: bytes) -> np.ndarray:
    """Timestamps (int64 ps) of one stream message (little-endian uint64, see above)."""
    return np.frombuffer(message, dtype="<u8").astype(np.int64)


def main(argv: list[str] | None = None) -> None:
    """Serve an emulated ID1000 in this process until its lifetime ends."""
    from .physics.presets import get_preset
    from .physics.world import LabWorld

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--scpi-port", type=int, default=5555)
    parser.add_argument("--data-port", type=int, default=6060)
    parser.add_argument("--lifetime", type=float, default=600.0, help="s before stopping")
    parser.add_argument("--rates", default="1e4,1e4,1e4,1e4",
                        help="Poisson click rate per input, counts/s")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    from .devices.idq_id1000 import PoissonClicks

    rates = {n: float(r) for n, r in enumerate(args.rates.split(","), start=1)}
    world = LabWorld(get_preset("bulk_eo_cw").model, seed=args.seed)
    device = IDQuantiqueID1000Emulator(world, "id1000", source=PoissonClicks(rates))
    server = ID1000Server(device, host=args.host, scpi_port=args.scpi_port,
                          data_port=args.data_port, max_lifetime_s=args.lifetime)
    with server, contextlib.suppress(KeyboardInterrupt):
        print(f"ID1000 emulator: SCPI {server.scpi_address}, data {server.data_address}",
              flush=True)
        server.wait()


if __name__ == "__main__":
    main()
