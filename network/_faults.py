"""What a lab process tells its launcher when it cannot do its job: a failed handshake with a
peer, an address it could not bind, a bad key.

A child process reports through its run directory, as it reports everything else (pair
logs, events, summaries): `report_fault` writes ``<run_dir>/<process>_fault.json`` (written
whole, then renamed into place, so the launcher never reads half a report), and the launcher
polls `read_faults` while it waits for the run (`network.lab.supervise`). A file also
outlives the process, so a fault is still there to read after a crash.

`HandshakeWatch` watches a client socket's CURVE handshakes with a zmq socket monitor, in a
thread of its own (the process's loop is never touched: a herald's latency path stays as it
is). libzmq retries a failed handshake forever and says nothing to the application, so without
it a process holding a wrong key just waits. What a client sees (libzmq 4.3):

- ``EVENT_HANDSHAKE_FAILED_AUTH``: the server's ZAP handler refused this process's key: the
  server's copy of ``public/<this process>.key`` is not this process's key;
- ``EVENT_HANDSHAKE_FAILED_PROTOCOL``: the server's reply could not be decrypted;
- ``EVENT_HANDSHAKE_FAILED_NO_DETAIL``: the server dropped the connection in the middle of
  the handshake, which is what a server does with a HELLO encrypted to another key: this
  process's ``public/<server>.key`` is not the server's. A server that is merely restarting
  can cause it once, so it counts only after `NO_DETAIL_LIMIT` in a row with no success.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

NO_DETAIL_LIMIT = 3
"""Handshakes dropped by the server without a reason, in a row, before it is a key fault.
libzmq reconnects every ~0.1-0.2 s (reconnect_ivl), so this takes well under a second."""

_WATCHED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_SUCCEEDED)

FAULT_SUFFIX = "_fault.json"


def report_fault(run_dir: Path, process: str, kind: str, message: str, **detail: Any) -> None:
    """Tell the launcher that `process` cannot go on: ``<run_dir>/<process>_fault.json``.
    `kind`: ``auth`` (a peer's handshake failed), ``bind`` (an address in use or not this
    host's), ``config`` (a key or setting the process refused), ``crash`` (anything else).
    The first fault of a process is kept: it is the cause, later ones are consequences."""
    run_dir = Path(run_dir)
    path = run_dir / f"{process}{FAULT_SUFFIX}"
    if path.exists():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = run_dir / f".{process}{FAULT_SUFFIX}.{os.getpid()}"
    staging.write_text(json.dumps({"process": process, "kind": kind, "message": message,
                                   "pid": os.getpid(), **detail}))
    os.replace(staging, path)


def read_faults(run_dir: Path) -> list[dict[str, Any]]:
    """Every fault the run's processes reported, in process-name order. A file that cannot
    be read as a JSON object (a hostile or damaged one) is reported as such, never raised."""
    faults = []
    for path in sorted(Path(run_dir).glob(f"*{FAULT_SUFFIX}")):
        process = path.name[:-len(FAULT_SUFFIX)]
        try:
            fault = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            fault = {"kind": "crash", "message": f"unreadable fault report {path}: {exc}"}
        if not isinstance(fault, dict):
            fault = {"kind": "crash", "message": f"unreadable fault report {path}"}
        fault["process"] = process  # the file's name is the launcher's, not the writer's
        faults.append(fault)
    return faults


def describe_exit(code: int | None) -> str:
    """A child's exit code for a person: ``exit code 2``, ``killed by SIGKILL``."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass(frozen=True)
class Peer:
    """The server a client socket connects to: its process name and address."""

    name: str
    address: str


class HandshakeWatch:
    """Reports a client socket's failing CURVE handshakes with its peer to the launcher.

    Make it after the sockets are configured and before they connect (monitoring starts
    with the next connection); `stop` it before closing the sockets and terminating the
    context (its monitor sockets belong to that context)."""

    def __init__(self, run_dir: Path, process: str, key_dir: Path,
                 sockets: Mapping[zmq.Socket, Peer]) -> None:
        self.run_dir, self.process, self.key_dir = Path(run_dir), process, Path(key_dir)
        self.failure: dict[str, Any] | None = None
        """The reported fault, once there is one."""
        self._sockets = list(sockets)
        # get_monitor_socket talks to the watched socket: done here, in its own thread. The
        # PAIR ends are used only by the watch thread from then on.
        self._monitors = {socket.get_monitor_socket(_WATCHED): peer
                          for socket, peer in sockets.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"{process}-handshakes",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        for socket in self._sockets:
            with contextlib.suppress(zmq.ZMQError):  # already closed
                socket.disable_monitor()
        for monitor in self._monitors:
            monitor.close(0)

    def _watch(self) -> None:
        poller = zmq.Poller()
        for monitor in self._monitors:
            poller.register(monitor, zmq.POLLIN)
        dropped = dict.fromkeys(self._monitors, 0)
        while not self._stop.is_set():
            for monitor, _ in poller.poll(100):
                try:
                    event = recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
                except (zmq.ZMQError, ValueError, IndexError):
                    continue  # a malformed monitor message: nothing to learn from it
                peer = self._monitors[monitor]
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    dropped[monitor] = 0
                elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                    dropped[monitor] += 1
                    if dropped[monitor] >= NO_DETAIL_LIMIT:
                        self._report(peer, refused=False, attempts=dropped[monitor])
                elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    self._report(peer, refused=True, attempts=1)
                elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                    self._report(peer, refused=False, attempts=1)

    def _report(self, peer: Peer, *, refused: bool, attempts: int) -> None:
        if self.failure is not None:
            return
        if refused:  # the server's ZAP handler does not know our public key
            key_file = self.key_dir / "public" / f"{self.process}.key"
            message = (f"{peer.name} at {peer.address} refused {self.process}'s key: "
                       f"{peer.name}'s copy of {key_file} does not hold {self.process}'s "
                       "public key")
            fix = (f"give {peer.name}'s host the public key that belongs to "
                   f"private/{self.process}.key_secret (`qnetlab keys CONFIG` rewrites it "
                   f"from the secret), then copy public/{self.process}.key to every host")
        else:  # the server could not read our handshake: we hold a wrong key for it
            key_file = self.key_dir / "public" / f"{peer.name}.key"
            message = (f"the CURVE handshake with {peer.name} at {peer.address} failed "
                       f"{attempts} time(s) in a row: {key_file} is not {peer.name}'s "
                       "public key")
            fix = (f"copy public/{peer.name}.key from the host that runs {peer.name}, or "
                   "run `qnetlab keys CONFIG` where every secret key is")
        self.failure = {"peer": peer.name, "address": peer.address,
                        "key_file": str(key_file), "fix": fix}
        report_fault(self.run_dir, self.process, "auth", message, **self.failure)


_ADDR = re.compile(r"\(addr='([^']*)'\)")


def report_exception(run_dir: Path, process: str, exc: BaseException) -> bool:
    """Report what stopped a child process; whether it was a known fault (an address it
    could not bind, a qnetlab error such as a bad key), which needs no traceback: the
    launcher names the cause. Anything else is reported as a crash and is a bug."""
    from qnetlab.instruments.errors import QnetlabError

    if isinstance(exc, zmq.ZMQError) and exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
        match = _ADDR.search(str(exc))
        address = match.group(1) if match else "?"
        reason = ("in use by another process" if exc.errno == errno.EADDRINUSE
                  else "not an address of this host")
        report_fault(run_dir, process, "bind", f"{process} could not bind {address}: {reason}",
                     address=address, errno=exc.errno)
        return True
    if isinstance(exc, QnetlabError):
        report_fault(run_dir, process, "config", str(exc))
        return True
    report_fault(run_dir, process, "crash", f"{type(exc).__name__}: {exc}")
    return False


def watch_node_handshakes(settings: Any, sub: zmq.Socket, station: zmq.Socket,
                          orchestrator: zmq.Socket) -> HandshakeWatch:
    """The `HandshakeWatch` of a node agent's three client sockets (`network.node_agent`;
    `settings` a `NodeSettings` with a key directory)."""
    return HandshakeWatch(settings.run_dir, settings.name, settings.key_dir, {
        sub: Peer(settings.station_name, settings.herald_address),
        station: Peer(settings.station_name, settings.request_address),
        orchestrator: Peer(settings.orchestrator_name, settings.orchestrator_address)})
