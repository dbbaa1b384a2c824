"""Time tagger model: int64 picosecond timestamps from several input channels.

Each input event becomes a tag after the channel's hidden delay, the user's delay, Gaussian
jitter and the timestamp resolution; a channel has a non-paralysable dead time; channels merge
into one time-sorted block (Swabian ``TimeTagStream`` / PicoQuant TTTR layout); streaming is
capped at ``max_stream_rate`` tags/s (overflowing blocks keep their earliest tags and are
flagged). Defaults follow the Swabian Time Tagger Ultra.

Model and sources: docs/timing.md#1-time-tagger-model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

CHANNEL_DTYPE = np.int8
"""Channel numbers in a tag block."""

# A Gaussian exceeds 10 sigma with probability ~1e-23: the stream's safety margin for jitter.
_JITTER_MARGIN_SIGMAS = 10.0


@dataclass(frozen=True)
class TaggerChannel:
    """One input channel; times in ps."""

    delay_ps: int = 0
    """Intrinsic input delay d_ch (cable and electronics), hidden from the user, ps."""
    jitter_rms_ps: float = 9.0
    """sigma_ch, ps (Swabian Time Tagger Ultra Performance: 9 ps RMS, check)."""
    dead_time_ps: int = 2_000
    """ps (Time Tagger Ultra: ~2 ns, check; PicoQuant MultiHarp 160: 650 ps; docs/timing.md)."""


@dataclass(frozen=True)
class TagBlock:
    """A sorted block of tags covering [start_ps, stop_ps)."""

    timestamps: np.ndarray
    """int64 ps, non-decreasing."""
    channels: np.ndarray
    """CHANNEL_DTYPE, the channel index of each tag."""
    start_ps: int
    stop_ps: int
    overflowed: bool = False
    """True if the stream-rate cap dropped tags from this block."""
    dropped: int = 0
    """Number of tags dropped by the cap."""

    def __len__(self) -> int:
        return int(self.timestamps.size)

    @property
    def duration_s(self) -> float:
        return (self.stop_ps - self.start_ps) * 1e-12


def apply_dead_time(times: np.ndarray, dead_time_ps: int, last_ps: int | None = None) -> np.ndarray:
    """Mask of the events (sorted int64 ps) a non-paralysable dead time keeps.

    An event at least the dead time after its predecessor is kept whatever happened before
    (the last kept event is no later than the predecessor), so only events that follow
    their predecessor closely are decided in order. `last_ps` is the last kept event
    before these (None: none).
    """
    n = times.size
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    gap = np.empty(n, dtype=float)
    gap[1:] = np.diff(times)
    gap[0] = math.inf if last_ps is None else float(times[0] - last_ps)
    fresh = gap >= dead_time_ps
    keep[fresh] = True
    close = np.flatnonzero(~fresh)
    if close.size == 0:
        return keep
    latest_fresh = np.maximum.accumulate(np.where(keep, times.astype(float), -math.inf))
    before = np.concatenate([[-math.inf], latest_fresh[:-1]])[close].tolist()
    t_list = times[close].tolist()
    last = -math.inf if last_ps is None else float(last_ps)
    for k, i in enumerate(close.tolist()):
        t = t_list[k]
        if t - max(last, before[k]) >= dead_time_ps:
            keep[i] = True
            last = t
    return keep


@dataclass(frozen=True)
class TimeTaggerModel:
    """A time tagger's parameters; times in ps, rates in tags/s."""

    channels: tuple[TaggerChannel, ...] = field(
        default_factory=lambda: tuple(TaggerChannel() for _ in range(8))
    )
    max_stream_rate: float = 80e6
    """Tags/s the stream carries (~80 Mtags/s for a Time Tagger Ultra over USB3: docs/timing.md)."""
    resolution_ps: int = 1
    """Timestamp LSB, ps."""

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    def with_delay_offsets(self, offsets_ps: Sequence[int]) -> TimeTaggerModel:
        """This tagger with each channel's hidden delay moved by `offsets_ps` (ps, one per
        channel): the drift of cables and electronics in a realistic lab. All zero: itself."""
        if len(offsets_ps) != self.n_channels:
            raise ValueError(f"{len(offsets_ps)} delay offsets for {self.n_channels} channels")
        if not any(offsets_ps):
            return self
        channels = tuple(dataclasses.replace(p, delay_ps=p.delay_ps + int(d))
                         for p, d in zip(self.channels, offsets_ps, strict=True))
        return dataclasses.replace(self, channels=channels)

    def capacity(self, start_ps: int, stop_ps: int) -> int:
        """Tags a block over [start_ps, stop_ps) can carry under the rate cap."""
        return math.floor(self.max_stream_rate * (stop_ps - start_ps) * 1e-12)

    def tag(
        self,
        events: Mapping[int, np.ndarray],
        rng: np.random.Generator,
        *,
        user_delays_ps: Mapping[int, int] | None = None,
        last_tags_ps: Mapping[int, int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tag input events: (timestamps int64 ps, channels) sorted, no window, no cap.

        Args:
            events: arrival times (int64 ps) of input events per channel index.
            rng: the tagger's generator (jitter).
            user_delays_ps: delays the user set per channel, ps (default 0).
            last_tags_ps: each channel's last tag before these events, for the dead time.
        """
        user = user_delays_ps or {}
        last = last_tags_ps or {}
        stamps: list[np.ndarray] = []
        chans: list[np.ndarray] = []
        for ch in sorted(events):
            if not 0 <= ch < self.n_channels:
                raise ValueError(f"no channel {ch}; this tagger has 0..{self.n_channels - 1}")
            p = self.channels[ch]
            t = np.asarray(events[ch], dtype=np.int64)
            jitter = np.rint(rng.normal(0.0, p.jitter_rms_ps, t.size)).astype(np.int64)
            t = t + (p.delay_ps + int(user.get(ch, 0))) + jitter
            if self.resolution_ps > 1:
                t = (t // self.resolution_ps) * self.resolution_ps
            t.sort()
            t = t[apply_dead_time(t, p.dead_time_ps, last.get(ch))]
            stamps.append(t)
            chans.append(np.full(t.size, ch, dtype=CHANNEL_DTYPE))
        if not stamps:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=CHANNEL_DTYPE)
        ts, cs = np.concatenate(stamps), np.concatenate(chans)
        order = np.lexsort((cs, ts))
        return ts[order], cs[order]

    def count(self, channel: int, events: np.ndarray) -> int:
        """Tags channel `channel` gives for input `events` (int64 ps): what its counter
        reads. Only the dead time changes a count: jitter and delays move tags by ps against
        a counter's ms-long window, so, unlike `tag`, no stream is drawn (no jitter, no
        merge): a 1 MHz count over 1 s costs ~10 ms instead of ~90."""
        if not 0 <= channel < self.n_channels:
            raise ValueError(f"no channel {channel}; this tagger has 0..{self.n_channels - 1}")
        t = np.asarray(events, dtype=np.int64)
        if t.size > 1 and not bool((t[1:] >= t[:-1]).all()):
            t = np.sort(t)
        return int(np.count_nonzero(apply_dead_time(t, self.channels[channel].dead_time_ps)))

    def cap(self, timestamps: np.ndarray, channels: np.ndarray, start_ps: int,
            stop_ps: int) -> TagBlock:
        """A block of sorted tags over [start_ps, stop_ps), truncated at the rate cap."""
        n_max = self.capacity(start_ps, stop_ps)
        dropped = max(timestamps.size - n_max, 0)
        if dropped:
            timestamps, channels = timestamps[:n_max], channels[:n_max]
        return TagBlock(timestamps, channels, start_ps, stop_ps, dropped > 0, dropped)

    def acquire(
        self,
        events: Mapping[int, np.ndarray],
        start_ps: int,
        stop_ps: int,
        rng: np.random.Generator,
        *,
        user_delays_ps: Mapping[int, int] | None = None,
    ) -> TagBlock:
        """One block: the tags of `events` that fall in [start_ps, stop_ps), capped."""
        ts, cs = self.tag(events, rng, user_delays_ps=user_delays_ps)
        inside = (ts >= start_ps) & (ts < stop_ps)
        return self.cap(ts[inside], cs[inside], start_ps, stop_ps)


@dataclass
class TaggerStream:
    """Consecutive blocks of one stream, globally sorted and with dead time carried over.

    Feed the input events that arrive in [start_ps, stop_ps) with `block`; a tag delayed past
    the end of its block is held for the next. A block is emitted up to
    ``stop_ps + min(0, smallest total delay) - 10 sigma_max``, so no later input can produce a
    tag that sorts before what was already emitted.
    """

    model: TimeTaggerModel
    rng: np.random.Generator
    user_delays_ps: dict[int, int] = field(default_factory=dict)
    _pending_t: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    _pending_c: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=CHANNEL_DTYPE))
    _last: dict[int, int] = field(default_factory=dict)
    _emitted_to: int | None = None

    def _margin(self) -> int:
        smallest = min(
            p.delay_ps + int(self.user_delays_ps.get(ch, 0))
            for ch, p in enumerate(self.model.channels)
        )
        sigma = max(p.jitter_rms_ps for p in self.model.channels)
        jitter = math.ceil(_JITTER_MARGIN_SIGMAS * sigma)
        return min(0, smallest) - jitter - self.model.resolution_ps

    def block(self, events: Mapping[int, np.ndarray], start_ps: int, stop_ps: int) -> TagBlock:
        """The next block, given the input events that arrive in [start_ps, stop_ps)."""
        ts, cs = self.model.tag(events, self.rng, user_delays_ps=self.user_delays_ps,
                                last_tags_ps=self._last)
        for ch in np.unique(cs).tolist():
            self._last[ch] = int(ts[cs == ch][-1])
        ts = np.concatenate([self._pending_t, ts])
        cs = np.concatenate([self._pending_c, cs])
        order = np.lexsort((cs, ts))
        ts, cs = ts[order], cs[order]
        begin = start_ps + self._margin() if self._emitted_to is None else self._emitted_to
        end = stop_ps + self._margin()
        out = ts < end
        self._pending_t, self._pending_c = ts[~out], cs[~out]
        self._emitted_to = end
        return self.model.cap(ts[out], cs[out], begin, end)
