"""The orchestrator's side of a heralding station's arms: its windows moved to the stored arm
delays of the paths the switch joins to them, a stale path re-checked by the station's own
tagger first (the station's side: `network.station_arms`).

One `ArmSetup` per station process, a DEALER to its ``request_address`` (CURVE client with
the orchestrator's key, trusting only that station's). A set-up never blocks the
orchestrator: `start` sends a re-check (`MeasureArrivals` for the stale arms) or, with
none stale, `SetArmDelays` with the arm delays to use (skipped when the station's windows
already sit there); each answer, taken as it arrives (`take`), leads to the next step (the
windows at the measured arm delays). The last answer names the first herald decided with
the new windows: the fabric counts the station's heralds for the request from there on.
Anything but a DONE answer, or none in time (`REPLY_TIMEOUT_S`, plus the measurement's own
length: `expired`), ends it with a `PathSetupError` naming the station, the paths and what
to do: the request gets an ERR, and the station's windows count as unknown (set again on its
next assignment).

Every answer is hostile until checked: it must decode, be the answer type with this
station's link and the seq asked (an older, timed-out answer is skipped), and a measured
delay must lie within the search the station was asked for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from ..arm_messages import (
    ArmDelaysSet,
    ArmStatus,
    ArrivalsMeasured,
    MeasureArrivals,
    SetArmDelays,
)
from ..keys import make_curve_client
from ..messages import (
    MalformedMessage,
    decode,
    limit_frame_size,
)
from .fabric import ArmMeasurement, PathSetup, PathSetupError

REPLY_TIMEOUT_S = 2.0
"""s a station has to answer an arm request, beyond a measurement's own length: it answers
with the first tag block after carrying it out (a block every ~ms), unless its reader is
stuck."""
MAX_TAKEN = 1000
"""Frames `ArmSetup.take` reads at most per call."""
MAX_MEASURED_OFF_S = 1e-6
"""s a measured arrival may lie from the path's stored one (a station's search reaches at most
half a round): beyond, the answer is refused as garbage."""


@dataclass
class SetupResult:
    """How one station's set-up for an assignment ended (`ArmSetup.take`)."""

    station: str
    request: str
    measured: dict[str, ArmMeasurement] = field(default_factory=dict)
    """QNU -> its path's arm delay as re-checked (stale paths only)."""
    first_seq: int | None = None
    """The station's first herald decided with the new windows (None: they were already
    there, or it failed)."""
    error: PathSetupError | None = None
    current: bool = True
    """Whether the station was still assigned to the request when it ended (set by the
    fabric): only then does a failure cost the request its ERR."""


@dataclass
class _Step:
    request: str
    a: str
    b: str
    delays_ps: dict[str, int]
    stale: list[str]
    seconds: float
    asked: SetArmDelays | MeasureArrivals
    deadline: float
    measured: dict[str, ArmMeasurement] = field(default_factory=dict)


class ArmSetup:
    """Sets one station's arms, one assignment at a time, without waiting (module
    docstring): `start` sends the first request, `take` handles each answer off `socket`
    (polled with the orchestrator's others), `expired` checks its deadline. Every set-up
    ends with one `SetupResult` in `ended` (a set-up that a new `start` replaces, failed)."""

    def __init__(self, context: zmq.Context, key_dir: Path, name: str, station: str,
                 request_address: str, link_id: int) -> None:
        self.station, self.link_id = station, link_id
        self.socket = context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.sndhwm = 100
        limit_frame_size(self.socket)
        make_curve_client(self.socket, key_dir, name, station)
        self.socket.connect(request_address)
        self.arm_delays_ps: tuple[int, int] | None = None
        """The station's windows' centres as last confirmed (None: unknown)."""
        self.step: _Step | None = None
        """The set-up under way (None: none)."""
        self.ended: list[SetupResult] = []
        """Set-ups ended, for the fabric to take."""
        self._seq = 0
        self.refused_answers = 0
        """Frames off the socket that were not the answer waited for (late ones included)."""

    def start(self, request: str, a: str, b: str, setup: PathSetup, lag_s: float = 0.0,
              ) -> None:
        """Set A's and B's paths up for `request` (a set-up still under way ends, failed):
        re-check the stale ones (recording `setup.recheck_time` plus `lag_s`, the simulated
        world's switch lag, during which the new path's light may not have reached the
        station yet), then centre arm a's windows at A's arm delay and arm b's at B's. Ended
        at once when there is nothing to ask."""
        if self.step is not None:
            self._failed(f"station {self.station}'s set-up for {self.step.request} was "
                         f"replaced by one for {request} before it ended")
        delays = {q: round(setup.arm_delays[q] * 1e12) for q in (a, b)}
        stale = [q for q in (a, b) if q in setup.recheck]
        if stale:
            seconds = setup.recheck_time + lag_s
            arms = (1 if a in stale else 0) | (2 if b in stale else 0)
            asked: SetArmDelays | MeasureArrivals = MeasureArrivals(
                self.link_id, self._next_seq(), max(1, round(seconds * 1e6)), arms,
                delays[a], delays[b])
            self.step = _Step(request, a, b, delays, stale, seconds, asked,
                              time.monotonic() + REPLY_TIMEOUT_S + seconds)
            self._send()
        else:
            self.step = _Step(request, a, b, delays, [], 0.0, SetArmDelays(0, 0, 0, 0), 0.0)
            self._set_windows()

    def take(self) -> None:
        """Handle the answers waiting on the socket (at most `MAX_TAKEN` a call: a flood
        must not starve the orchestrator's other sockets)."""
        for _ in range(MAX_TAKEN):
            try:
                frame = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            step = self.step
            try:
                answer = decode(frame)
            except MalformedMessage:
                answer = None
            if (step is None or not isinstance(answer, _ANSWER[type(step.asked)])
                    or answer.link != self.link_id or answer.seq != step.asked.seq):
                self.refused_answers += 1  # garbage, or the answer to a dropped set-up
                continue
            if isinstance(answer, ArrivalsMeasured):
                self._measured(step, answer)
            else:
                assert isinstance(answer, ArmDelaysSet)
                self._windows_set(step, answer)

    def expired(self, now: float | None = None) -> None:
        """End the set-up under way, failed, if it has waited past its deadline."""
        step = self.step
        if step is None or (time.monotonic() if now is None else now) < step.deadline:
            return
        what = ("the re-check of " + " and ".join(step.stale)
                if isinstance(step.asked, MeasureArrivals)
                else f"the windows of {step.a} and {step.b}")
        self._failed(f"station {self.station} did not answer {what} in time: is its "
                     "process running, reading its tagger, and does it hold the "
                     "orchestrator's public key?")

    # -- the steps --------------------------------------------------------------------------
    def _measured(self, step: _Step, answer: ArrivalsMeasured) -> None:
        if answer.status != ArmStatus.DONE:
            qnu = {1: step.a, 2: step.b}.get(answer.arm, " and ".join(step.stale))
            self._failed(
                f"station {self.station} re-checking the path of {qnu}: "
                f"{ArmStatus(answer.status).name} in {step.seconds:g} s ({answer.clicks} "
                f"detector tags, {answer.syncs} sync tags; {_FIX[ArmStatus(answer.status)]})")
            return
        for q, value, error in ((step.a, answer.arm_a_ps, answer.arm_a_error_ps),
                                (step.b, answer.arm_b_ps, answer.arm_b_error_ps)):
            if q not in step.stale:
                continue
            stored = step.delays_ps[q]
            if abs(value - stored) * 1e-12 > MAX_MEASURED_OFF_S:
                self._failed(
                    f"station {self.station} answered the re-check of {q}'s path with "
                    f"{value * 1e-3:.4g} ns, {abs(value - stored) * 1e-3:.4g} ns from its "
                    f"stored {stored * 1e-3:.4g} ns, beyond any search it was asked for: "
                    "refused as garbage (is another program answering on its address?)")
                return
            step.measured[q] = ArmMeasurement(
                value * 1e-12, error * 1e-12,
                f"measured by station {self.station}'s time tagger: its photons arrive "
                f"{value * 1e-3:.4f} +- {error * 1e-3:.3f} ns after the sync over "
                f"{step.seconds:g} s ({answer.clicks} detector tags, {answer.syncs} sync "
                f"tags; stored {stored * 1e-3:.4f} ns)")
            step.delays_ps[q] = value
        self._set_windows()

    def _set_windows(self) -> None:
        step = self.step
        assert step is not None
        wanted = (step.delays_ps[step.a], step.delays_ps[step.b])
        if wanted == self.arm_delays_ps:
            self.step = None
            self.ended.append(SetupResult(self.station, step.request, step.measured))
            return
        self.arm_delays_ps = None
        step.asked = SetArmDelays(self.link_id, self._next_seq(), *wanted)
        step.deadline = time.monotonic() + REPLY_TIMEOUT_S
        self._send()

    def _windows_set(self, step: _Step, answer: ArmDelaysSet) -> None:
        assert isinstance(step.asked, SetArmDelays)
        if answer.status != ArmStatus.DONE:
            self._failed(
                f"station {self.station} did not move its windows to arm delays "
                f"{step.asked.arm_a_ps * 1e-3:.4g} ns ({step.a}) and "
                f"{step.asked.arm_b_ps * 1e-3:.4g} ns ({step.b}): "
                f"{ArmStatus(answer.status).name} ({_FIX[ArmStatus(answer.status)]})")
            return
        self.arm_delays_ps = (step.asked.arm_a_ps, step.asked.arm_b_ps)
        self.step = None
        self.ended.append(SetupResult(self.station, step.request, step.measured,
                                      answer.first_seq))

    def _send(self) -> None:
        step = self.step
        assert step is not None
        try:
            self.socket.send(step.asked.encode(), zmq.NOBLOCK)
        except zmq.Again:
            self._failed(f"station {self.station} takes no requests (its queue is full): is "
                         "its process running on its request_address?")

    def _failed(self, reason: str) -> None:
        step = self.step
        assert step is not None
        self.step, self.arm_delays_ps = None, None  # its windows: unknown until set again
        self.ended.append(SetupResult(self.station, step.request, step.measured,
                                      error=PathSetupError(reason)))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def close(self) -> None:
        self.socket.close(0)


_ANSWER: dict[type, type[ArmDelaysSet] | type[ArrivalsMeasured]] = {
    SetArmDelays: ArmDelaysSet, MeasureArrivals: ArrivalsMeasured}
"""The answer to each request."""


_FIX = {
    ArmStatus.DONE: "",
    ArmStatus.UNSUPPORTED: "its herald source has no arms to set: run the station on its "
                           "time tagger",
    ArmStatus.REFUSED: "the arm delays put its windows where its engine cannot: check the "
                       "paths' records in the bridge's calibration store",
    ArmStatus.NO_SYNC: "no attempt clock reached its tagger: check the sync cable and the "
                       "clock",
    ArmStatus.NO_PEAK: "no photons arrived near the stored arm delay: check that the QNU "
                       "emits and the switch carries its light (the path's loss), then "
                       "calibrate the path again",
}
