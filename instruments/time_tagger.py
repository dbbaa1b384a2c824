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

Why the channel parameters are not abstract QCoDeS parameters: as for `instruments.awg.AWG`,
a driver's channels are `InstrumentChannel` objects it builds itself, so the role cannot
declare abstract parameters on them. They are listed in `TimeTagger.channel_parameters` and
held by the role check `_channel_parameters` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from qcodes.instrument import InstrumentChannel

from .conformance import check_channel_parameters
from .role import ChannelParameter, Role, RoleParameter
from .tag_blocks import TagBlock


def delay_to_ps(delay_s: float) -> int:
    """A delay in seconds as the integer picoseconds taggers take."""
    return round(delay_s * 1e12)


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

    # -- what a driver provides -------------------------------------------------------------
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
