"""What every frame of the control plane's wire shares: the version byte, the type byte, the
fixed-layout message base, and the error a bad frame raises. The messages themselves:
`network.messages` (the link layer and the station) and `network.arm_messages` (a bridge
orchestrator's requests to a station's arms); `network.messages.decode` reads them all.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import ClassVar

VERSION = 1
"""Protocol version: the first byte of every frame."""

MAX_SEQ = 2**62 - 1
"""Highest legal herald seq (146 years of heralds at 1 GHz). Seqs are handled as int64; this
bound leaves room for one past it and for differences of two seqs, so no arithmetic on a
legal seq can wrap."""


class MsgType(IntEnum):
    """The second byte of every frame."""

    HERALDS = 1
    ATTEMPT_STATS = 2
    CREATE = 3
    ACK = 4
    OK = 5
    ERR = 6
    HEARTBEAT = 7
    CLOCK_REQUEST = 8
    CLOCK_REPLY = 9
    RESEND_REQUEST = 10
    OK_BATCH = 11
    ERR_BATCH = 12
    SET_ARM_DELAYS = 13
    ARM_DELAYS_SET = 14
    MEASURE_ARRIVALS = 15
    ARRIVALS_MEASURED = 16


class MalformedMessage(ValueError):
    """A frame that is not a valid message. `.reason` is one short word group, used as a
    counter key: "not bytes", "truncated", "wrong version", "unknown type", "bad length",
    "bad count", "bad value"."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"malformed message ({reason}){': ' + detail if detail else ''}")
        self.reason = reason


class _Fixed:
    """Shared encode/decode of the fixed-layout messages (one `struct.Struct` each)."""

    TYPE: ClassVar[MsgType]
    _STRUCT: ClassVar[struct.Struct]

    def encode(self) -> bytes:
        try:
            return self._STRUCT.pack(VERSION, self.TYPE, *self._fields())
        except struct.error as err:
            raise ValueError(f"{type(self).__name__} field out of range for its wire layout "
                             f"({self._STRUCT.format}): {err}; see network/messages.py") from None

    def _fields(self) -> tuple[int | float, ...]:
        return tuple(self.__dict__.values())

    def _check(self) -> str:
        """Why decoded values are inconsistent, or "" when they are fine."""
        return ""
