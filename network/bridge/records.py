"""What goes into and out of a bridge scheduler: requests, and decisions with their reasons.

Vocabulary after the single link's orchestrator (Dahlberg et al. 2019, "A link layer protocol
for quantum networks", SIGCOMM '19): a request is ACKed or refused with ERR and a code
(`network.messages.ErrCode` names), and answered OK when its pairs are held. The bridge adds
the switch's actions: RECONFIGURE a station's two ports, RECHECK a stale path, ASSIGN a
request to a station, SUSPEND it (round-robin's slot ended), RELEASE the station, HOLD it
for its pair's follow-up, WAIT (and why). Every decision carries a reason in words and the
numbers behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ..messages import ErrCode

Action = Literal["ACK", "ERR", "WAIT", "RECONFIGURE", "RECHECK", "ASSIGN", "SUSPEND",
                 "RELEASE", "HOLD", "OK", "CANCEL"]


@dataclass(frozen=True)
class Request:
    """`pairs` entangled pairs between QNUs `a` and `b`, each of at least `min_fidelity` when
    used, held at once; `deadline` in s on the run's clock (None: none). A state transfer
    (`transfer`) goes a -> b and consumes one pair."""

    id: str
    a: str
    b: str
    pairs: int = 1
    min_fidelity: float = 0.0
    deadline: float | None = None
    transfer: bool = False

    def __post_init__(self) -> None:
        if self.a == self.b:
            raise ValueError(f"request {self.id}: a pair needs two different QNUs, got "
                             f"{self.a!r} twice")
        if self.pairs < 1 or (self.transfer and self.pairs != 1):
            raise ValueError(f"request {self.id}: pairs = {self.pairs} (>= 1; a transfer "
                             "consumes exactly 1)")
        if not 0.0 <= self.min_fidelity <= 1.0:
            raise ValueError(f"request {self.id}: min_fidelity = {self.min_fidelity} must be "
                             "between 0 and 1")
        if self.deadline is not None and not math.isfinite(self.deadline):
            raise ValueError(f"request {self.id}: deadline = {self.deadline} must be finite")

    @property
    def qnus(self) -> tuple[str, str]:
        return (self.a, self.b)


@dataclass(frozen=True)
class Decision:
    """One decision of a scheduler, at `time` (s on the run's clock)."""

    time: float
    action: Action
    reason: str
    request: str | None = None
    station: str | None = None
    qnus: tuple[str, ...] = ()
    ready_at: float | None = None
    """ASSIGN: s when the station starts heralding for the request (after settle and
    re-checks)."""
    code: str | None = None
    """ERR: an `ErrCode` name (TIMEOUT, UNSUPPORTED, ...)."""
    values: dict[str, float] = field(default_factory=dict)
    """The numbers the decision weighed (s, Hz), by name."""

    def as_record(self) -> dict[str, object]:
        """A JSON-ready record for the decision log."""
        record: dict[str, object] = {"time": self.time, "action": self.action,
                                     "reason": self.reason}
        for name in ("request", "station", "ready_at", "code"):
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        if self.qnus:
            record["qnus"] = list(self.qnus)
        if self.values:
            record["values"] = dict(self.values)
        return record


class Clock:
    """The time a scheduling core was last told: refuses a time that is not finite or runs
    backwards (the caller's bug; never silently reordered)."""

    def __init__(self) -> None:
        self.now = -math.inf

    def advance(self, now: float) -> None:
        if not math.isfinite(now) or now < self.now:
            raise ValueError(f"time {now!r} s is not finite or runs backwards (last "
                             f"{self.now!r} s): pass the run's clock, never decreasing")
        self.now = now


def err(time: float, request: Request, code: ErrCode, reason: str,
        **values: float) -> Decision:
    """An ERR for `request` with its code."""
    return Decision(time, "ERR", reason, request.id, qnus=request.qnus, code=code.name,
                    values=values)
