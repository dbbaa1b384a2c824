"""Faults that can be injected into a simulated instrument's connection.

Both transports (the in-process VISA backend and the TCP servers) pass every program
message through an `Endpoint`, which applies the armed faults, so a fault behaves the same
whichever way a driver reaches its twin.
"""

from __future__ import annotations

import enum
import random
import threading
from dataclasses import dataclass

from .devices._scpi import HARDWARE_ERROR, ScpiDevice


class Fault(enum.Enum):
    LATENCY = "latency"
    """Every reply is delayed by `seconds` (real time) until cleared."""
    NO_REPLY = "no_reply"
    """The next reply is never sent: the driver's read times out."""
    DROP_CONNECTION = "drop_connection"
    """The connection is closed by the instrument on the next message."""
    GARBAGE_REPLY = "garbage_reply"
    """The next reply is replaced by bytes that mean nothing."""
    INSTRUMENT_ERROR = "instrument_error"
    """The next command fails inside the instrument: a -240 hardware error is queued."""


@dataclass
class _Armed:
    remaining: int | None
    seconds: float = 0.0


class FaultPlan:
    """The faults armed on one instrument. Thread-safe: the TCP server's control port arms
    faults while its I/O loop consumes them."""

    def __init__(self) -> None:
        self._armed: dict[Fault, _Armed] = {}
        self._lock = threading.Lock()

    def inject(self, fault: Fault | str, *, count: int | None = 1, seconds: float = 0.0) -> None:
        """Arm `fault` for the next `count` messages (None: until `clear`)."""
        fault = Fault(fault)
        if fault is Fault.LATENCY and seconds <= 0:
            raise ValueError("a latency fault needs seconds > 0")
        with self._lock:
            self._armed[fault] = _Armed(None if fault is Fault.LATENCY else count, seconds)

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def take(self, fault: Fault) -> bool:
        with self._lock:
            armed = self._armed.get(fault)
            if armed is None:
                return False
            if armed.remaining is not None:
                armed.remaining -= 1
                if armed.remaining <= 0:
                    del self._armed[fault]
            return True

    @property
    def latency(self) -> float:
        armed = self._armed.get(Fault.LATENCY)
        return armed.seconds if armed else 0.0


def split_messages(data: bytes | bytearray, terminator: bytes) -> tuple[list[bytes], int]:
    """The complete program messages at the start of `data`, and how many bytes they took.

    A terminator inside an IEEE 488.2 definite-length block (``#<n><length><bytes>``, outside
    quotes) does not end the message: binary data may hold any byte. A message whose block
    has not fully arrived is left for later.
    """
    if b"#" not in data:  # the common case, plain text: no byte-by-byte scan on the hot path
        *complete, _rest = bytes(data).split(terminator)
        return complete, len(data) - len(_rest)
    out: list[bytes] = []
    pos = start = 0
    quote = 0
    n = len(data)
    while pos < n:
        byte = data[pos]
        if quote:
            if byte == quote:
                quote = 0
            pos += 1
        elif byte in (0x22, 0x27):  # " or '
            quote = byte
            pos += 1
        elif byte == 0x23 and pos + 1 < n and 0x31 <= data[pos + 1] <= 0x39:  # #1..#9
            digits = data[pos + 1] - 0x30
            head = bytes(data[pos + 2:pos + 2 + digits])
            if len(head) < digits or not head.isdigit():
                if len(head) < digits:
                    break  # the block's header is still on its way
                pos += 1
                continue
            end = pos + 2 + digits + int(head)
            if end > n:
                break  # the block is still on its way
            pos = end
        elif data.startswith(terminator, pos):
            out.append(bytes(data[start:pos]))
            pos += len(terminator)
            start = pos
        else:
            pos += 1
    return out, start


def _last_block_end(data: bytes) -> int:
    """Where the last definite-length block of one message ends (0 if it has none)."""
    if b"#" not in data:
        return 0
    end, pos, quote = 0, 0, 0
    while pos < len(data):
        byte = data[pos]
        if quote:
            quote = 0 if byte == quote else quote
        elif byte in (0x22, 0x27):
            quote = byte
        elif byte == 0x23 and pos + 1 < len(data) and 0x31 <= data[pos + 1] <= 0x39:
            digits = data[pos + 1] - 0x30
            head = data[pos + 2:pos + 2 + digits]
            if len(head) == digits and head.isdigit():
                end = pos = min(pos + 2 + digits + int(head), len(data))
                continue
        pos += 1
    return end


@dataclass
class Exchange:
    """What an endpoint does with one program message."""

    reply: bytes | None
    drop: bool = False
    delay: float = 0.0


class Endpoint:
    """One simulated instrument as seen from a transport: a device plus its faults."""

    def __init__(self, device: ScpiDevice, faults: FaultPlan, terminator: bytes = b"\n") -> None:
        self.device = device
        self.faults = faults
        self.terminator = terminator
        self.lock = threading.Lock()
        self._garbage = random.Random(0)

    def exchange(self, message: bytes) -> Exchange:
        faults = self.faults
        if faults.take(Fault.DROP_CONNECTION):
            return Exchange(None, drop=True)
        # latin-1 maps every byte to one character, so a binary block survives the decoding
        # (devices that take blocks re-encode it); ASCII text is unchanged. Trailing white
        # space is stripped only after the last block, whose bytes may look like it.
        head = message.lstrip()
        end = _last_block_end(head)
        text = (head[:end] + head[end:].rstrip()).decode("latin-1")
        with self.lock:
            if faults.take(Fault.INSTRUMENT_ERROR):
                self.device.push_error(*HARDWARE_ERROR)
                reply = None
            else:
                reply = self.device.handle(text)
        if reply is None:
            return Exchange(None)
        if faults.take(Fault.NO_REPLY):
            return Exchange(None)
        # A device replies in text, or in bytes when the reply holds a binary block.
        data = reply if isinstance(reply, bytes) else reply.encode("ascii")
        if faults.take(Fault.GARBAGE_REPLY):
            data = bytes(self._garbage.randrange(0x21, 0x7F) for _ in range(12))
        return Exchange(data + self.terminator, delay=faults.latency)
