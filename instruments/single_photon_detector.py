"""Role: single-photon detectors (superconducting nanowire detectors and their bias electronics).

A `SinglePhotonDetector` has channels keyed by the instrument's own channel numbers (from 1;
the Quantum Opus driver uses the SIM900 slot of each bias module), each with

* ``bias_current`` (A, settable with a validator): the bias applied to the detector; 0 A while
  the channel is disabled;
* ``enabled`` (bool): False removes the bias (the driver remembers it), True puts it back;
* ``count_rate`` (Hz, read-only): the detector's click rate;
* ``latched`` (bool, read-only): True when the wire has switched to the resistive state and
  stays there (no clicks) until the bias is removed;

and an action ``reset(channel)`` that drops the bias briefly and restores it, clearing a latch.

Counts. Bias electronics often have no counter (the Quantum Opus amp-sim module amplifies the
pulses; a time tagger or counter counts them). A driver without a counter of its own raises
`CounterNotConnectedError` from ``count_rate``, naming the fix (give the driver a counter).
That is a documented answer, not a failure, of the conformance check.

Why the channel parameters are not abstract QCoDeS parameters: as for `instruments.awg.AWG`,
a driver builds its channels as `InstrumentChannel`s the role cannot reach before the
driver's concrete parameters exist. They are listed in
`SinglePhotonDetector.channel_parameters` and held by the role check `_channel_parameters`:
present on every channel with the unit, settable with a validator where the role says so,
and set and read back at the probe values (which stay below any sane switching current).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from qcodes.instrument import InstrumentChannel

from .conformance import _agrees, check_channel_parameters
from .errors import InstrumentError
from .role import ChannelParameter, Role, RoleParameter


class CounterNotConnectedError(InstrumentError, RuntimeError):
    """The detector electronics have no counter and none was given to the driver."""



def _channel_parameters(detector: Any) -> str | None:
    return check_channel_parameters(detector.detector_channels, detector.channel_parameters,
                                    unanswerable=(CounterNotConnectedError,))


def _reset_keeps_the_bias(detector: Any) -> str | None:
    problems = []
    for number, channel in detector.detector_channels.items():
        before = channel.bias_current.get()
        detector.reset(number)
        after = channel.bias_current.get()
        if not _agrees(before, after, 1e-6):
            problems.append(f"channel {number}: bias {before!r} A before reset, {after!r} after")
        if channel.latched.get():
            problems.append(f"channel {number}: still latched after reset at {after!r} A")
    return "; ".join(problems) or None


def _refuses_unknown_channel(detector: Any) -> str | None:
    bad = max(detector.detector_channels, default=0) + 1
    try:
        detector.reset(bad)
    except (KeyError, ValueError):
        return None
    return f"reset({bad}) of a channel that does not exist was not refused"


class SinglePhotonDetector(Role):
    """Single-photon detector channels. See the module docstring for the contract.

    A driver implements `detector_channels` (channel number -> channel with the parameters
    of `channel_parameters`) and `_reset(channel)`.
    """

    # No instrument-level parameters: everything is per channel. Declared so the conformance
    # check finds this role in the driver's classes.
    role_parameters: ClassVar[tuple[RoleParameter, ...]] = ()
    channel_parameters: ClassVar[tuple[ChannelParameter, ...]] = (
        # Probes well below the ~10 uA switching current of typical WSi/NbN wires.
        ChannelParameter("bias_current", "A", probe=(2.0e-6, 4.0e-6), rel_tolerance=1e-4),
        ChannelParameter("enabled", "", probe=(True, False)),
        ChannelParameter("count_rate", "Hz", settable=False),
        ChannelParameter("latched", "", settable=False),
    )
    role_checks = (_channel_parameters, _reset_keeps_the_bias, _refuses_unknown_channel)

    # -- what a driver provides -------------------------------------------------------------
    @property
    def detector_channels(self) -> Mapping[int, InstrumentChannel[Any]]:
        """Channel number -> channel."""
        raise NotImplementedError

    def _reset(self, channel: int) -> None:
        raise NotImplementedError

    # -- actions ----------------------------------------------------------------------------
    def reset(self, channel: int) -> None:
        """Clear a latch on `channel`: the bias drops to 0 A briefly and returns to its value.
        KeyError for a channel the instrument does not have."""
        if channel not in self.detector_channels:
            raise KeyError(
                f"{self.name} has no detector channel {channel!r}; it has "
                f"{sorted(self.detector_channels)}"
            )
        self._reset(channel)
