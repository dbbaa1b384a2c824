"""Role: a time tagger (stamps each detector click and AWG marker in picoseconds).

A `TimeTagger` has input channels numbered from 1 as on the front panel, each with
``trigger_level`` (V, the discriminator threshold), ``delay`` (s, added to every timestamp of
the channel) and ``enabled`` (bool). The role is SI, so ``delay`` is in seconds; taggers take
it in picoseconds on the wire, and a driver converts with ``round(delay_s * 1e12)`` (a
delay therefore holds to 1 ps, which the conformance probe tolerates).

Actions:

* ``acquire(duration_s)`` records for ``duration_s`` seconds and returns one
  `instruments.tag_blocks.TagBlock`: int64 picosecond timestamps counted from the start
  of the recording, sorted, with the input channel of each tag, and the overflow flag set when
  the tagger reported lost tags.
* ``blocks(duration_s)`` yields TagBlocks as they arrive from a running recording (each block
  sorted and later than the one before), and ``stream(consumer, duration_s)`` hands each to
  ``consumer``; a block in which the tagger reported lost tags has ``overflow=True``.

Gating (a tagger that can: ``supports_gating``): ``gate(channel, sync_channel=, open_s=,
close_s=)`` makes input ``channel`` pass only the tags that fall ``open_s <= t - s < close_s``
after some tag ``s`` of ``sync_channel`` (both as recorded: each input's delay included), so
the tags outside never use the data link; ``ungate(channel)`` passes everything again and
``gate_of(channel)`` reads the gate back (a `TagGate`, or None). ``ungated(tagger, inputs)``
lifts the gates of `inputs` for a block of code and puts them back after (a calibration that
histograms arrivals over the whole period).

Why the channel parameters are not abstract QCoDeS parameters: as for `instruments.awg.AWG`,
a driver's channels are `InstrumentChannel` objects it builds itself, so the role cannot
declare abstract parameters on them. They are listed in `TimeTagger.channel_parameters` and
held by the role check `_channel_parameters` instead.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from qcodes.instrument import InstrumentChannel

from .conformance import check_channel_parameters
from .errors import ConfigError
from .role import ChannelParameter, Role, RoleParameter
from .tag_blocks import TagBlock


def delay_to_ps(delay_s: float) -> int:
    """A delay in seconds as the integer picoseconds taggers take."""
    return round(delay_s * 1e12)


@dataclass(frozen=True)
class TagGate:
    """A gate on one tagger input: its tags pass only when ``open_s <= t - s < close_s`` for
    some tag s of `sync_channel` (s, tag times as recorded)."""

    sync_channel: int
    open_s: float
    close_s: float


@dataclass
class StreamSummary:
    """What `TimeTagger.stream` handed over."""

    blocks: int = 0
    tags: int = 0
    overflowed_blocks: int = 0


def merge_blocks(blocks: list[TagBlock], index: int | None = None) -> TagBlock:
    """One block from consecutive blocks of a stream (each later than the one before)."""
    if not blocks:
        return TagBlock(np.empty(0, np.int64), np.empty(0, np.int8), index=index)
    lost = [b.lost_tags for b in blocks if b.overflow]
    overflow = bool(lost)
    lost_tags = sum(x for x in lost if x is not None) if lost and None not in lost else None
    return TagBlock(np.concatenate([b.timestamps for b in blocks]),
                    np.concatenate([b.channels for b in blocks]),
                    overflow, lost_tags if overflow else None, index)


def _channel_parameters(tagger: Any) -> str | None:
    return check_channel_parameters(tagger.tagger_channels, tagger.channel_parameters)


def _acquire_gives_a_tag_block(tagger: Any) -> str | None:
    block = tagger.acquire(tagger.conformance_duration_s)
    if not isinstance(block, TagBlock):
        return f"acquire returned {type(block).__name__}, not a TagBlock"
    block.validate(accept_overflow=True)
    known = set(tagger.tagger_channels)
    found = {int(c) for c in np.unique(block.channels)}
    if not found <= known:
        return f"tags on channels {sorted(found - known)}, the tagger has {sorted(known)}"
    return None


class TimeTagger(Role):
    """A time tagger. See the module docstring for the contract.

    A driver implements `tagger_channels` (channel number -> channel) and `_blocks(duration_s)`
    (a generator of TagBlocks from one recording); `acquire` and `stream` are built on it.
    """

    role_parameters: ClassVar[tuple[RoleParameter, ...]] = ()
    channel_parameters: ClassVar[tuple[ChannelParameter, ...]] = (
        ChannelParameter("trigger_level", "V", probe=(0.5, 0.25), rel_tolerance=1e-3),
        # 1 ps resolution on the wire: 1 ns probed to 1e-3 relative.
        ChannelParameter("delay", "s", probe=(1e-9, 0.0), rel_tolerance=1e-3),
        ChannelParameter("enabled", "", probe=(True, False)),
    )
    role_checks = (_channel_parameters, _acquire_gives_a_tag_block)
    conformance_duration_s: ClassVar[float] = 0.02
    """Recording the conformance check makes, s (short: it runs in real time)."""
    recording_started: float | None = None
    """time.monotonic() (s) when the latest recording started (its REC:PLAY or the
    driver's equivalent), set by the driver; None before any. Tag times count from it, so a
    process maps a tag to its own clock as ``recording_started + timestamp_ps * 1e-12``."""

    supports_gating: ClassVar[bool] = False
    """The driver implements `_set_gate`, `_clear_gate` and `_read_gate`."""
    gate_range_s: ClassVar[tuple[float, float]] = (0.0, 1.0)
    """s, the window delays the tagger takes (a driver states its instrument's)."""

    # -- what a driver provides -------------------------------------------------------------
    def _set_gate(self, channel: int, gate: TagGate) -> None:
        """Gate input `channel` (arguments checked by `gate`)."""
        raise NotImplementedError

    def _clear_gate(self, channel: int) -> None:
        """Pass every tag of input `channel` again."""
        raise NotImplementedError

    def _read_gate(self, channel: int) -> TagGate | None:
        """Input `channel`'s gate as the tagger holds it (None: ungated)."""
        raise NotImplementedError

    @property
    def tagger_channels(self) -> Mapping[int, InstrumentChannel[Any]]:
        """Channel number (from 1) -> channel."""
        raise NotImplementedError

    def _blocks(self, duration_s: float) -> Iterator[TagBlock]:
        """Record for `duration_s` s; yield the tags as sorted, consecutive TagBlocks."""
        raise NotImplementedError

    # -- actions ----------------------------------------------------------------------------
    @staticmethod
    def _check_duration(duration_s: float) -> None:
        if not duration_s > 0:
            raise ValueError(f"duration_s must be > 0 s, got {duration_s!r}")

    def blocks(self, duration_s: float) -> Iterator[TagBlock]:
        """Record for `duration_s` seconds, yielding TagBlocks as they arrive."""
        self._check_duration(duration_s)
        return self._blocks(duration_s)

    def acquire(self, duration_s: float) -> TagBlock:
        """Record for `duration_s` seconds; all tags as one sorted TagBlock (ps from the
        start of the recording), flagged overflowed if the tagger lost any."""
        self._check_duration(duration_s)
        return merge_blocks(list(self._blocks(duration_s)))

    def stream(self, consumer: Callable[[TagBlock], object],
               duration_s: float) -> StreamSummary:
        """Record for `duration_s` seconds, handing each TagBlock to `consumer` as it arrives.

        A block with lost tags is handed over with ``overflow=True`` (consumers in
        `sequences.timetags` refuse it unless told to accept overflow)."""
        summary = StreamSummary()
        for block in self.blocks(duration_s):
            consumer(block)
            summary.blocks += 1
            summary.tags += len(block)
            summary.overflowed_blocks += int(block.overflow)
        return summary

    # -- gating -----------------------------------------------------------------------------
    def gate(self, channel: int, *, sync_channel: int, open_s: float, close_s: float) -> None:
        """Pass input `channel`'s tags only in ``[open_s, close_s)`` s after each tag of
        `sync_channel` (tag times as recorded, delays included); ConfigError naming the
        argument and the fix for a value the tagger cannot take."""
        self._gating(channel)
        where = f"gate(channel={channel})"
        if sync_channel not in self.tagger_channels or sync_channel == channel:
            raise ConfigError(
                self.name, where, f"sync_channel {sync_channel!r} "
                + ("is the gated input itself" if sync_channel == channel
                   else f"is not an input (the tagger has {sorted(self.tagger_channels)})"),
                "give the input of the clock whose tags open the windows")
        low, high = self.gate_range_s
        for label, value in (("open_s", open_s), ("close_s", close_s)):
            if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
                    and math.isfinite(value) and low <= value <= high):
                raise ConfigError(self.name, where, f"{label} = {value!r} s is outside the "
                                  f"window delays the tagger takes ({low:g} to {high:g} s)",
                                  "give a delay after the sync tag in that range (a window "
                                  "before it: open it after the previous sync tag, one "
                                  "period later)")
        if not close_s > open_s:
            raise ConfigError(self.name, where, f"close_s = {close_s!r} s is not after open_s "
                              f"= {open_s!r} s", "give close_s > open_s (the window's end "
                              "after its start)")
        self._set_gate(channel, TagGate(sync_channel, float(open_s), float(close_s)))

    def ungate(self, channel: int) -> None:
        """Pass every tag of input `channel` again."""
        self._gating(channel)
        self._clear_gate(channel)

    def gate_of(self, channel: int) -> TagGate | None:
        """Input `channel`'s gate as the tagger holds it, None when it is ungated."""
        self._gating(channel)
        return self._read_gate(channel)

    def _gating(self, channel: int) -> None:
        if not self.supports_gating:
            raise NotImplementedError(
                f"{self.name} ({type(self).__name__}) cannot gate its inputs: record them "
                "ungated (check supports_gating first)")
        if channel not in self.tagger_channels:
            raise ConfigError(self.name, f"gate(channel={channel!r})",
                              f"no input {channel!r} (the tagger has "
                              f"{sorted(self.tagger_channels)})", "give a front-panel input")


@contextmanager
def ungated(tagger: TimeTagger, inputs: Iterable[int]) -> Iterator[None]:
    """Lift the gates of `inputs` (a tagger that cannot gate: nothing to do) for the block and
    put each back after, however it ends: a recording that histograms arrivals over the whole
    period (arm delays, backgrounds) must not see only the windows a station left gated."""
    saved: list[tuple[int, TagGate]] = []
    try:
        if getattr(tagger, "supports_gating", False):  # a tagger that cannot gate is not
            for n in inputs:
                gate = tagger.gate_of(n)
                if gate is not None:
                    tagger.ungate(n)
                    saved.append((n, gate))
        yield
    finally:
        for n, gate in reversed(saved):
            tagger.gate(n, sync_channel=gate.sync_channel, open_s=gate.open_s,
                        close_s=gate.close_s)
