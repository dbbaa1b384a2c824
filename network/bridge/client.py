"""An application's side of the bridge orchestrator: ask for pairs and state transfers,
cancel, wait.

    with BridgeClient("tcp://127.0.0.1:5600", key_dir, "app") as bridge:
        handle = bridge.request_pairs("qnu0", "qnu3", pairs=2, min_fidelity=0.55,
                                      deadline_s=2.0)
        delivered = bridge.wait(handle, timeout=10.0)   # DELIVERED: each pair's fidelity

One DEALER socket, a CURVE client with ``<key_dir>/private/<name>.key_secret`` that trusts
only the orchestrator's public key (``<key_dir>/public/<server>.key``); the orchestrator
must hold `name`'s public key. No thread: replies are read while `wait` or `poll` runs, and
every one is checked (`wire.decode_reply`); a malformed one is counted in `malformed` and
dropped. Times in requests and replies are s on the bridge's clock; `wait`'s timeout is
wall-clock s. Protocol: docs/bridge.md#the-orchestrator-process.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import zmq

from qnetlab.instruments.errors import InstrumentRefusedError, InstrumentTimeoutError

from ..keys import make_curve_client
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
    decode_reply,
    encode,
)

Outcome = Delivered | Transferred | Cancelled


SEND_TIMEOUT_S = 5.0
"""s a request waits for room in the send queue (1000 frames: full only while the
orchestrator takes nothing, e.g. it refused this client's key) before `BridgeTimeoutError`."""


class BridgeTimeoutError(InstrumentTimeoutError):
    """No outcome within the wait's timeout (the request may still be open)."""


class BridgeRefusedError(InstrumentRefusedError):
    """The orchestrator refused a request (ERR): `code` (`wire.ERR_CODES`), `reason` in its
    words, `field` what was malformed (MALFORMED only)."""

    def __init__(self, request_id: str, code: str, reason: str,
                 field: str | None = None) -> None:
        self.request_id, self.code, self.reason, self.field = request_id, code, reason, field
        super().__init__(f"bridge request {request_id} refused: {code}: {reason}")


@dataclass
class BridgeHandle:
    """A request in flight: what the orchestrator has said of it so far."""

    request_id: str
    kind: Literal["pairs", "transfer"]
    accepted: Accepted | None = None
    decisions: list[DecisionEntry] = field(default_factory=list)
    """The scheduler's decisions about it, each with its reason, in order."""
    outcome: Outcome | Err | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not None


class BridgeClient:
    """A client of the bridge orchestrator at `address` (``tcp://HOST:PORT``), as key
    `name` of `key_dir`, trusting only `server`'s key. A context manager (closes the
    socket)."""

    def __init__(self, address: str, key_dir: Path, name: str,
                 server: str = "bridge_orchestrator") -> None:
        self.address, self.name, self.server = address, name, server
        self.handles: dict[str, BridgeHandle] = {}
        self.unattributed: list[ServerMessage] = []
        """Replies about no request of ours (an ERR for a frame whose id was unreadable)."""
        self.malformed: Counter[str] = Counter()
        """Replies dropped, by the field they got wrong."""
        self._prefix = secrets.token_hex(4)  # two clients with one key never share an id
        self._count = itertools.count(1)
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.linger = 0
        self._socket.sndtimeo = round(SEND_TIMEOUT_S * 1000)
        self._socket.setsockopt(zmq.MAXMSGSIZE, SOCKET_MAXMSGSIZE)
        try:
            make_curve_client(self._socket, Path(key_dir), name, server)
        except Exception:
            self.close()
            raise
        self._socket.connect(address)

    # -- requests -------------------------------------------------------------------------
    def request_pairs(self, qnu_a: str, qnu_b: str, pairs: int = 1,
                      min_fidelity: float = 0.5, deadline_s: float | None = None,
                      request_id: str | None = None) -> BridgeHandle:
        """Ask for `pairs` pairs between `qnu_a` and `qnu_b`, each of fidelity >=
        `min_fidelity`, held at once within `deadline_s` (bridge s; None: no deadline).
        Raises `BridgeWireError` (a ValueError naming the field) for a bad argument."""
        rid = request_id or self._new_id()
        return self._send(RequestPairs(rid, qnu_a, qnu_b, pairs, min_fidelity, deadline_s),
                          "pairs")

    def request_transfer(self, source: str, target: str,
                         state: str | tuple[float, float, float] = "+",
                         min_fidelity: float = 0.5, deadline_s: float | None = None,
                         request_id: str | None = None) -> BridgeHandle:
        """Teleport `state` (a name of `wire.NAMED_STATES` or a Bloch vector) from `source`
        to `target` over one pair of fidelity >= `min_fidelity`; the outcome
        (`Transferred`) reports the transferred state's fidelity and the two bits."""
        rid = request_id or self._new_id()
        return self._send(RequestTransfer(rid, source, target, state, min_fidelity,
                                          deadline_s), "transfer")

    def cancel(self, request: BridgeHandle | str) -> BridgeHandle:
        """Withdraw a request; its handle's outcome becomes `Cancelled` (or stays what it
        already was, if the request finished first)."""
        rid = request if isinstance(request, str) else request.request_id
        handle = self.handles.get(rid)
        if handle is None:
            raise KeyError(f"no request {rid!r} was made by this client")
        if not handle.done:
            self._send_frame(encode(Cancel(rid)))
        return handle

    def _new_id(self) -> str:
        return f"{self._prefix}-{next(self._count)}"

    def _send(self, message: ClientMessage, kind: Literal["pairs", "transfer"]) -> BridgeHandle:
        rid = message.request_id
        old = self.handles.get(rid)
        if old is not None and not old.done:
            raise ValueError(f"request id {rid!r} is still open: choose another")
        handle = BridgeHandle(rid, kind)
        self._send_frame(encode(message))
        self.handles[rid] = handle
        return handle

    def _send_frame(self, frame: bytes) -> None:
        try:
            self._socket.send(frame)
        except zmq.Again:
            raise BridgeTimeoutError(
                f"the orchestrator at {self.address} has taken none of this client's last "
                f"frames for {SEND_TIMEOUT_S:g} s (its queue is full): is it running, and "
                f"does it hold {self.name}'s public key (it refuses a key it does not "
                "know)?") from None

    # -- replies --------------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> int:
        """Read the replies that come within `timeout` wall s (stops at the first pause
        once one has come); how many were read."""
        read = 0
        wait_ms = max(0, int(timeout * 1000))
        while self._socket.poll(wait_ms if read == 0 else 0):
            try:
                frame = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            read += 1
            self._take(frame)
        return read

    def _take(self, frame: bytes) -> None:
        try:
            message = decode_reply(frame)
        except BridgeWireError as exc:
            self.malformed[exc.field] += 1
            return
        handle = self.handles.get(message.request_id or "")
        if handle is None:
            self.unattributed.append(message)
            return
        if isinstance(message, DecisionEntry):
            handle.decisions.append(message)
        elif isinstance(message, Accepted):
            handle.accepted = message
        elif handle.outcome is None:  # the first word stands (a late ERR of a cancel, say)
            handle.outcome = message

    def wait(self, handle: BridgeHandle, timeout: float) -> Outcome:
        """The request's outcome (DELIVERED, TRANSFERRED or CANCELLED), within `timeout`
        wall s. Raises `BridgeRefusedError` (ERR, with the orchestrator's code and reason)
        or `BridgeTimeoutError` naming what was heard and the fix."""
        deadline = time.monotonic() + timeout
        while not handle.done:
            left = deadline - time.monotonic()
            if left <= 0.0:
                raise self._timeout(handle, timeout)
            self.poll(min(left, 0.5))
        outcome = handle.outcome
        if isinstance(outcome, Err):
            raise BridgeRefusedError(handle.request_id, outcome.code, outcome.reason,
                                     outcome.field)
        assert outcome is not None
        return outcome

    def _timeout(self, handle: BridgeHandle, timeout: float) -> BridgeTimeoutError:
        rid = handle.request_id
        if handle.accepted is None and not handle.decisions:
            return BridgeTimeoutError(
                f"bridge request {rid}: no answer from the orchestrator {self.server!r} at "
                f"{self.address} within {timeout:g} s. Fix: check that it runs there and "
                f"that {self.name!r}'s public key is in its key directory (a client whose "
                "key it does not hold hears nothing)")
        last = handle.decisions[-1] if handle.decisions else None
        said = f"; last decision {last.action}: {last.reason}" if last else ""
        return BridgeTimeoutError(
            f"bridge request {rid} accepted but not done within {timeout:g} s{said}. It is "
            "still open: wait again, or cancel it")

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close(0)
        if not self._context.closed:
            self._context.term()

    def __enter__(self) -> BridgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
