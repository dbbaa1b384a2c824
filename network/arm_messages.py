"""A bridge orchestrator's requests to a heralding station's arms, and the station's answers:
windows moved to the arm delays of the paths the switch joined to its arms (SET_ARM_DELAYS,
ARM_DELAYS_SET), and a stale path's arrival measured (MEASURE_ARRIVALS, ARRIVALS_MEASURED).
Layouts: docs/link.md#messages-and-wire-format; their use: docs/bridge.md#per-path-calibrations.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from ._wire import MAX_SEQ, MsgType, _Fixed

MAX_ARM_DELAY_PS = 10**9
"""Latest arm delay (ps after the round's sync tag) an arm request may name: 1 ms, far beyond
any round period a station runs."""

MAX_MEASURE_US = 10_000_000
"""Longest arrival measurement (us) a station is asked for: 10 s."""


class ArmStatus(IntEnum):
    """A station's answer to an arm request (`ArmDelaysSet`, `ArrivalsMeasured`)."""

    DONE = 0
    UNSUPPORTED = 1
    """Its herald source has no arms to set (a test signal, not a tagger)."""
    REFUSED = 2
    """The values do not fit its windows (a window past the round, or its start before the
    sync where the station's were after it)."""
    NO_SYNC = 3
    """No sync tag in the measurement: the attempt clock is not reaching the tagger."""
    NO_PEAK = 4
    """No arrival peak near the nominal delay of the arm `ArrivalsMeasured.arm` names."""


def _arm_delay_problem(*delays_ps: int) -> str:
    if any(not 0 <= d <= MAX_ARM_DELAY_PS for d in delays_ps):
        return f"arm delay outside 0..MAX_ARM_DELAY_PS ({MAX_ARM_DELAY_PS} ps)"
    return ""


@dataclass(frozen=True)
class SetArmDelays(_Fixed):
    """Orchestrator -> station: centre each arm's herald windows, on every detector, at its
    delay (ps after the round's sync tag): the stored arm delays of the paths the switch has
    just joined to arms a and b. Answered by `ArmDelaysSet` with the same `seq`."""

    link: int
    seq: int
    arm_a_ps: int
    arm_b_ps: int
    TYPE: ClassVar[MsgType] = MsgType.SET_ARM_DELAYS
    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBHQqq")

    def _check(self) -> str:
        return _arm_delay_problem(self.arm_a_ps, self.arm_b_ps)


@dataclass(frozen=True)
class ArmDelaysSet(_Fixed):
    """Station -> orchestrator: the answer to `SetArmDelays` `seq`. With `status` DONE, every
    herald from `first_seq` on was decided with the new windows (the ones before may not
    have been)."""

    link: int
    seq: int
    status: int
    first_seq: int
    TYPE: ClassVar[MsgType] = MsgType.ARM_DELAYS_SET
    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBHQBQ")

    def _check(self) -> str:
        if self.status not in _ARM_STATUSES:
            return f"status {self.status} is no ArmStatus"
        if self.first_seq > MAX_SEQ + 1:
            return f"first_seq beyond MAX_SEQ + 1 ({MAX_SEQ + 1})"
        return ""


@dataclass(frozen=True)
class MeasureArrivals(_Fixed):
    """Orchestrator -> station: measure where the photons of arm a and/or b (`arms`: bit 0
    a, bit 1 b) arrive after the sync, over `duration_us` of the tag stream with the detector
    inputs ungated, searching near each arm's nominal delay (ps): the re-check of a stale
    path. Answered by `ArrivalsMeasured` with the same `seq`."""

    link: int
    seq: int
    duration_us: int
    arms: int
    nominal_a_ps: int
    nominal_b_ps: int
    TYPE: ClassVar[MsgType] = MsgType.MEASURE_ARRIVALS
    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBHQIBqq")

    def _check(self) -> str:
        if not 1 <= self.duration_us <= MAX_MEASURE_US:
            return f"duration_us outside 1..MAX_MEASURE_US ({MAX_MEASURE_US})"
        if self.arms not in (1, 2, 3):
            return f"arms {self.arms} (1: a, 2: b, 3: both)"
        return _arm_delay_problem(self.nominal_a_ps, self.nominal_b_ps)


@dataclass(frozen=True)
class ArrivalsMeasured(_Fixed):
    """Station -> orchestrator: the answer to `MeasureArrivals` `seq`: each measured arm's
    arrival (ps after the sync, both detectors' fitted peaks combined) and its standard
    error; 0 for an arm not measured. `arm` names the arm a NO_PEAK is about (1 a, 2 b; 0
    otherwise); `clicks` and `syncs` are the detector and sync tags recorded."""

    link: int
    seq: int
    status: int
    arm: int
    arm_a_ps: int
    arm_a_error_ps: int
    arm_b_ps: int
    arm_b_error_ps: int
    clicks: int
    syncs: int
    TYPE: ClassVar[MsgType] = MsgType.ARRIVALS_MEASURED
    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBHQBBqqqqQQ")

    def _check(self) -> str:
        if self.status not in _ARM_STATUSES:
            return f"status {self.status} is no ArmStatus"
        if self.arm not in (0, 1, 2):
            return f"arm {self.arm} (0: none, 1: a, 2: b)"
        if min(self.arm_a_error_ps, self.arm_b_error_ps) < 0:
            return "a negative standard error"
        return _arm_delay_problem(self.arm_a_ps, self.arm_b_ps)


_ARM_STATUSES = frozenset(int(s) for s in ArmStatus)
