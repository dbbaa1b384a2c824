"""Faults that can be injected into a simulated instrument's connection.

Both transports (the in-process VISA backend and the TCP servers) pass every program
message through an `Endpoint`, which applies the armed faults, so a fault behaves the same
whichever way a driver reaches its twin.
"""

from __future__ import annotations

import enum
import functools
import random
import re
import threading
from dataclasses import dataclass

from .devices.scpi import HARDWARE_ERROR, ScpiDevice


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
    RESTART = "restart"
    """The instrument is power-cycled on the next message, which is lost: it comes back in
    its power-on state (`ScpiDevice.power_on`: settings, units and formats as after
    switching on, error queue empty) and the connection is closed, as when an instrument
    (or `qnetlab sim serve`) is restarted."""


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


@dataclass(frozen=True)
class Overrun:
    """In a scanner's output, where a program message over its bound was discarded."""

    held: int
    """Bytes of the message the scanner held when it found the overrun (more may follow)."""


@functools.cache
def _scan_patterns(terminator: bytes, blocks: bool) -> dict[int, re.Pattern[bytes]]:
    """What ends the scan of a stretch of bytes, by quote state (0: outside quotes)."""
    term = re.escape(terminator)
    return {0: re.compile(b"[#\"']|" + term if blocks else term),
            0x22: re.compile(b'"|' + term), 0x27: re.compile(b"'|" + term)}


class MessageScanner:
    """Splits a byte stream into program messages as it arrives, looking at each byte once.

    `feed` returns the messages (without terminator) that the new bytes complete; bytes
    already scanned are never scanned again, so a long message costs time in proportion to
    its length, not to its length squared. A terminator inside an IEEE 488.2 definite-length
    block (``#<n><length><bytes>``, a ``#`` outside quotes) does not end the message: binary
    data may hold any byte, and a message whose block has not fully arrived waits for it.
    Quotes matter only there (a ``#`` inside a string is text); a terminator ends a message
    even inside an unclosed quote, so one stray quote cannot swallow every later message.
    ``blocks=False`` reads ``#`` as text (JSON lines).

    ``max_text`` bounds the bytes of one message outside its blocks and ``max_block`` the
    sum of the lengths its block headers declare (None: no bound). A message over either is
    an input buffer overrun: the scanner drops what it holds of the message, returns an
    `Overrun` in its place, and discards the rest of it up to its terminator (the rest of a
    block is skipped by count), so after any `feed` it holds at most
    ``max_text + max_block`` bytes.
    """

    def __init__(self, terminator: bytes, *, max_text: int | None = None,
                 max_block: int | None = None, blocks: bool = True) -> None:
        if not terminator:
            raise ValueError("a message scanner needs a terminator")
        self.terminator = terminator
        self.max_text = max_text
        self.max_block = max_block
        self._patterns = _scan_patterns(terminator, blocks)
        self._buf = bytearray()
        self._pos = 0  # the next byte to look at; beyond the buffer: the end of a block
        self._quote = 0
        self._in_blocks = 0  # bytes the current message's block headers declare
        self._discarding = False
        self._skip = 0  # bytes still to skip of a discarded block
        self.examined = 0
        """Bytes looked at so far, in all: about one per byte fed (the scan is incremental)."""
        self.high_water = 0
        """The most bytes held after a `feed`."""

    @property
    def pending(self) -> int:
        """Bytes held: the start of a message whose terminator has not arrived."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[bytes | Overrun]:
        """The messages (and overruns, in order) that `data` completes."""
        self._buf += data
        out: list[bytes | Overrun] = []
        while True:
            if self._discarding:
                if not self._discard():
                    break
                continue
            item = self._next()
            if item is None:
                break
            out.append(item)
        self.high_water = max(self.high_water, len(self._buf))
        return out

    def _next(self) -> bytes | Overrun | None:
        """The next complete message or overrun; None when more bytes are needed."""
        buf, term = self._buf, self.terminator
        while self._pos <= len(buf):
            match = self._patterns[self._quote].search(buf, self._pos)
            if match is None:
                self.examined += len(buf) - self._pos
                # A terminator of several bytes may have begun at the very end.
                self._pos = max(self._pos, len(buf) - len(term) + 1)
                break
            start = match.start()
            self.examined += match.end() - self._pos
            token = match.group()
            if token == term:
                message = bytes(buf[:start])
                text = start - self._in_blocks
                del buf[:match.end()]
                self._pos = self._quote = self._in_blocks = 0
                if self.max_text is not None and text > self.max_text:
                    return Overrun(len(message))
                return message
            if token in (b'"', b"'"):
                self._quote = 0 if self._quote else token[0]
                self._pos = start + 1
                continue
            step = self._block(start)  # token is b"#"
            if step is None:  # its header is still on its way
                self._pos = start
                break
            if isinstance(step, Overrun):
                return step
            self._pos = step
        return self._check_unfinished()

    def _block(self, start: int) -> int | Overrun | None:
        """Where scanning resumes after the ``#`` at `start`: past its block if it starts
        one, the next byte if not; None if the header is incomplete."""
        buf = self._buf
        if start + 1 >= len(buf):
            return None
        if not 0x31 <= buf[start + 1] <= 0x39:  # #0 (indefinite length) or not a block
            return start + 1
        digits = buf[start + 1] - 0x30
        head = bytes(buf[start + 2:start + 2 + digits])
        if len(head) < digits:
            return None
        if not head.isdigit():
            return start + 1
        self._in_blocks += int(head)
        end = start + 2 + digits + int(head)
        if self.max_block is not None and self._in_blocks > self.max_block:
            return self._overrun(end)
        return end

    def _check_unfinished(self) -> Overrun | None:
        text = len(self._buf) - self._in_blocks
        if self.max_text is not None and text > self.max_text:
            # Keep what may be the start of a terminator of several bytes.
            return self._overrun(max(self._pos, len(self._buf) - len(self.terminator) + 1))
        return None

    def _overrun(self, resume: int) -> Overrun:
        """Drop the message held up to `resume` (which may lie beyond the bytes held) and
        discard the rest of it up to its terminator."""
        held = len(self._buf)
        cut = min(resume, held)
        del self._buf[:cut]
        self._skip = resume - cut
        self._pos = self._quote = self._in_blocks = 0
        self._discarding = True
        return Overrun(held)

    def _discard(self) -> bool:
        """Discard bytes up to the end of the overlong message; True once it has ended."""
        buf, term = self._buf, self.terminator
        if self._skip:
            taken = min(self._skip, len(buf))
            del buf[:taken]
            self._skip -= taken
            if self._skip:
                return False
        end = buf.find(term)
        if end < 0:
            self.examined += len(buf)
            del buf[:max(0, len(buf) - len(term) + 1)]
            return False
        self.examined += end + len(term)
        del buf[:end + len(term)]
        self._discarding = False
        return True


def split_messages(data: bytes | bytearray, terminator: bytes) -> tuple[list[bytes], int]:
    """The complete program messages at the start of `data`, and how many bytes they took
    (see `MessageScanner`, which does the same for a stream that arrives in pieces)."""
    if b"#" not in data:  # plain text, the common case: quotes cannot matter (see above)
        *complete, rest = bytes(data).split(terminator)
        return complete, len(data) - len(rest)
    scanner = MessageScanner(terminator)
    messages = [m for m in scanner.feed(data) if isinstance(m, bytes)]
    return messages, len(data) - scanner.pending


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
        if faults.take(Fault.RESTART):
            with self.lock:
                self.device.power_on()
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
