"""The herald engine: heralds decided from a time tagger's stream, block by block.

The station's tagger records the attempt clock (one sync tag per round) and the two detectors
behind the beam splitter. `HeraldEngine.feed` takes the stream in blocks as the data link
delivers them and returns the heralds of every round it could decide, in attempt order; a
round whose windows are still open at the end of a block waits for the next one, so splitting
a stream into blocks anywhere gives the same heralds. The decision rules and the carry:
docs/link.md, "The herald engine".

This module imports numba only when an engine is built (`HeraldWindows` and
`ENGINE_HERALD_DTYPE` are read by code that never runs the engine).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from qnetlab.instruments.errors import ConfigError

if TYPE_CHECKING:
    from qnetlab.instruments.tag_blocks import TagBlock

__all__ = ["ENGINE_HERALD_DTYPE", "HeraldEngine", "HeraldWindows"]

ENGINE_HERALD_DTYPE = np.dtype([("attempt_id", "<u8"), ("sync_ps", "<i8"), ("bell_state", "u1")])
"""One herald: the attempt's number since the stream started (single-click: the round's sync
index; two-click: sync index // 2), the tagger time of the attempt's first sync tag (ps) and the
Bell state (0 = psi+, 1 = psi-)."""

_SCHEMES = ("single_click", "two_click")
_WHAT = "HeraldWindows"


def _int(value: Any, field: str, fix: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise ConfigError(_WHAT, field, f"must be an integer, got {value!r}", fix) from None


@dataclass(frozen=True)
class HeraldWindows:
    """Where the engine looks for each arm's photons.

    Attributes
    ----------
    scheme
        ``"single_click"`` (an attempt is one round) or ``"two_click"`` (Barrett-Kok: an
        attempt is two consecutive rounds, sync index even = round 1, odd = round 2).
    sync_channel
        Tagger input of the attempt clock: one sync tag per round.
    detector_channels
        Tagger inputs of (detector 0, detector 1) behind the beam splitter.
    offsets_ps
        ``offsets_ps[d][arm]``: centre of arm `arm`'s window on detector `d`, in ps after the
        round's sync tag (the calibrated arm delays, one entry per arm = per node). May exceed
        many attempt periods (a 2 km arm is ~10 us) and may be negative (a sync tag that the
        tagger sees later than the photons).
    window_ps
        Full window width (ps); a click at t is in a window if
        ``centre - window_ps/2 <= t - sync < centre + window_ps/2``.
    round_period_ps
        The attempt clock's period (ps): the attempt period, or half of it for two-click.
        Rounds are numbered by it, from the recording's start (tag time 0: round k's sync
        is at about k periods, give or take half of one), so a sync tag lost on the way (a
        gap of more than 1.5 periods), or before the first one heard, skips its round instead
        of renumbering every later attempt (see ``missed_syncs`` in
        `HeraldEngine.counters`). None: number rounds by counting sync
        tags (a stream known to be complete, e.g. a test's).

    Every field is checked on construction (`ConfigError` naming the field and the fix).
    """

    scheme: Literal["single_click", "two_click"]
    sync_channel: int
    detector_channels: tuple[int, int]
    offsets_ps: tuple[tuple[int, ...], tuple[int, ...]]
    window_ps: int
    round_period_ps: int | None = None

    def __post_init__(self) -> None:
        if self.scheme not in _SCHEMES:
            raise ConfigError(_WHAT, "scheme", f"unknown scheme {self.scheme!r}",
                              f"use one of {', '.join(_SCHEMES)}")
        sync = _int(self.sync_channel, "sync_channel", "give the tagger input number of the "
                    "attempt clock")
        try:
            dets = tuple(_int(c, "detector_channels", "give two tagger input numbers")
                         for c in self.detector_channels)
        except TypeError:
            dets = ()
        if len(dets) != 2:
            raise ConfigError(_WHAT, "detector_channels", f"must be two tagger inputs "
                              f"(detector 0, detector 1), got {self.detector_channels!r}",
                              "give the inputs of both detectors behind the beam splitter")
        if len({sync, *dets}) != 3:
            raise ConfigError(_WHAT, "sync_channel/detector_channels",
                              f"the sync input {sync} and detector inputs {dets} must be three "
                              "different tagger inputs", "cable the attempt clock and each "
                              "detector to its own input")
        width = _int(self.window_ps, "window_ps", "give the full window width in integer ps")
        if width <= 0:
            raise ConfigError(_WHAT, "window_ps", f"must be > 0 ps, got {width}",
                              "give the full width of each arm's window, e.g. 1000 for 1 ns")
        offsets = self.offsets_ps
        shape_fix = ("give one tuple per detector, each with one centre (ps after the sync) "
                     "per arm, e.g. ((d0_arm0, d0_arm1), (d1_arm0, d1_arm1))")
        try:
            rows = [tuple(_int(o, "offsets_ps", shape_fix) for o in row) for row in offsets]
        except TypeError:
            raise ConfigError(_WHAT, "offsets_ps", f"must be a sequence of two sequences, "
                              f"got {offsets!r}", shape_fix) from None
        if len(rows) != 2:
            raise ConfigError(_WHAT, "offsets_ps", f"needs one row per detector (2), got "
                              f"{len(rows)}", shape_fix)
        if not rows[0] or len(rows[0]) != len(rows[1]):
            raise ConfigError(_WHAT, "offsets_ps", f"both detectors need the same number "
                              f"(>= 1) of arm offsets, got {len(rows[0])} and {len(rows[1])}",
                              shape_fix)
        object.__setattr__(self, "sync_channel", sync)
        object.__setattr__(self, "detector_channels", dets)
        object.__setattr__(self, "offsets_ps", (rows[0], rows[1]))
        object.__setattr__(self, "window_ps", width)
        if self.round_period_ps is not None:
            period = _int(self.round_period_ps, "round_period_ps",
                          "give the attempt clock's period in integer ps")
            if period <= 0:
                raise ConfigError(_WHAT, "round_period_ps", f"must be > 0 ps, got {period}",
                                  "give the attempt period (half of it for two-click) in ps")
            object.__setattr__(self, "round_period_ps", period)

    @property
    def arms(self) -> int:
        """Number of arms (nodes)."""
        return len(self.offsets_ps[0])

    def bounds_ps(self) -> NDArray[np.int64]:
        """Integer window bounds, shape (2, arms, 2): first and one-past-last ``t - sync``.

        ``centre - W/2 <= x < centre + W/2`` for integer x is ``ceil(centre - W/2) <= x <
        ceil(centre + W/2)``, computed exactly in integers (W may be odd).
        """
        c = np.array(self.offsets_ps, np.int64)
        w = self.window_ps
        return np.stack((-((w - 2 * c) // 2), -((-2 * c - w) // 2)), axis=-1)

    @property
    def last_end_ps(self) -> int:
        """Latest window end after the sync (ps): a round is decided by the first tag at or
        after its sync plus this (the attempt's decision time for a station's timestamps)."""
        return int(self.bounds_ps()[..., 1].max())


_I64 = np.dtype(np.int64)
_CHANNEL_DTYPES = frozenset(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64,
                                                  np.uint8, np.uint16, np.uint32))
"""Channel dtypes the compiled pass takes as they are (uint64 does not compare with int64)."""
_ARENA = 16_384
"""Heralds per output buffer (17 bytes each): feed() hands out views into it."""


class HeraldEngine:
    """Streaming herald decisions for one link (compiled, carries undecided rounds).

    ``feed(timestamps, channels)`` takes one block of the tagger's stream (int64 ps, sorted,
    not before the previous block) and returns the heralds decided by it
    (`ENGINE_HERALD_DTYPE`, attempt order). `counters` tallies what was seen and decided.
    A block that is not sorted raises `TagBlockError` and changes nothing.

    The heralds returned are a view into an output buffer of the engine that it never writes
    again (no copy per block); holding them keeps that buffer (280 kB, more after a block with
    over 16,384 heralds) alive. The compiled pass releases the GIL (a reader thread can feed
    while another thread publishes).
    """

    def __init__(self, windows: HeraldWindows, *, accept_overflow: bool = False) -> None:
        if not isinstance(windows, HeraldWindows):
            raise TypeError(f"HeraldEngine takes a HeraldWindows, got "
                            f"{type(windows).__name__}")
        from . import _herald_kernel as kernel  # numba: only when an engine is built

        self._k = kernel
        self.windows = windows
        self.accept_overflow = accept_overflow
        bounds = windows.bounds_ps()
        two, early = windows.scheme == "two_click", int(bounds[..., 0].min()) <= 0
        self._two = two
        self._pass = {(False, False): kernel.pass_single, (False, True): kernel.pass_single_early,
                      (True, False): kernel.pass_two, (True, True): kernel.pass_two_early,
                      }[two, early]
        self._settings = np.array(
            [windows.sync_channel, *windows.detector_channels, windows.arms,
             int(bounds[..., 1].max()), int(bounds[..., 0].min()),
             windows.scheme == "two_click"], np.int64)
        self._bounds = bounds.ravel()
        self.reset()

    def set_windows(self, windows: HeraldWindows) -> None:
        """Decide from the next block on with `windows` (the arms' windows moved: another
        path switched in), carrying the stream on. Rounds still open are decided with the new
        windows, their clicks so far counted with the old ones: a round across the change
        may be judged wrongly, so a caller counts heralds only from the first decided after
        it. Only the centres may change: `ConfigError` for another scheme, input, number of
        arms, period, or windows that start before the sync where these did not (or the
        other way round: that changes the compiled pass's way of holding clicks)."""
        def fixed(w: HeraldWindows) -> tuple[Any, ...]:
            return (w.scheme, w.sync_channel, w.detector_channels, w.arms, w.round_period_ps)

        k = self._k
        if fixed(windows) != fixed(self.windows):
            raise ConfigError(_WHAT, "windows", "only the windows' centres may change on a "
                              f"running engine: (scheme, sync, detectors, arms, period) "
                              f"{fixed(windows)}, the engine's {fixed(self.windows)}",
                              "build a new engine for another scheme, input set or period")
        bounds = windows.bounds_ps()
        if (int(bounds[..., 0].min()) <= 0) != (int(self._settings[k.P_START]) <= 0):
            raise ConfigError(_WHAT, "offsets_ps", "the new windows start on the other side of "
                              "the sync tag from the engine's", "build a new engine")
        self.windows = windows
        self._settings[k.P_END] = int(bounds[..., 1].max())
        self._settings[k.P_START] = int(bounds[..., 0].min())
        self._bounds = bounds.ravel()
        self._state[k.P_END] = self._settings[k.P_END]
        self._state[k.P_START] = self._settings[k.P_START]
        self._state[k.S_WINDOWS:] = self._bounds

    def reset(self) -> None:
        """Forget the stream (after a tagger restart: its clock and sync count start again)."""
        k = self._k
        state = np.zeros(k.S_WINDOWS + self._bounds.size, np.int64)
        state[:k.P_TWO_CLICK + 1] = self._settings
        state[k.S_WINDOWS:] = self._bounds
        state[k.S_LAST] = -1
        self._state = state
        period = self.windows.round_period_ps or 0
        state[k.P_PERIOD] = period
        state[k.P_GAP] = period + period // 2 if period else np.iinfo(np.int64).max
        # the ring of rounds, its start-of-block copy, the ring of clicks (_herald_kernel)
        self._rings = np.zeros((11, 64), np.int64)
        self._rings[3] = -1  # round numbers: the first sync tag's round follows "-1"
        # ... whose sync was at -period: with a period, rounds count from the recording's
        # start (tag time 0), so sync tags lost before the first one heard (a data link slow to
        # start) skip their rounds too, instead of renumbering every attempt of the recording
        # (and, for two-click, pairing each round with the wrong partner)
        self._rings[0] = -period
        self._out = np.empty(_ARENA, ENGINE_HERALD_DTYPE)
        self._pos = 0
        self._overflowed = 0
        self._lost = 0

    def feed(self, timestamps: NDArray[np.int64], channels: NDArray[np.integer[Any]],
             ) -> NDArray[Any]:
        """Take one block (tag times in ps, int64, sorted; tagger inputs) and return the
        heralds it decided (`ENGINE_HERALD_DTYPE`, attempt order; often empty)."""
        ts, ch = timestamps, channels
        # The fast path checks only what the compiled pass cannot (it checks the order): at
        # a block per millisecond, every 0.1 us here is 1 % of the engine's time.
        try:
            fast = (ts.dtype is _I64 and ch.dtype in _CHANNEL_DTYPES and ts.ndim == 1
                    and ch.ndim == 1 and ts.size == ch.size)
        except AttributeError:  # not arrays
            fast = False
        if not fast:
            ts, ch = _checked(ts, ch)
        end = self._pass(ts, ch, self._state, self._rings, self._out)
        if end < 0:
            end = self._recover(ts, ch, end)
        start = self._pos
        self._pos = end
        return self._out[start:end]

    def _recover(self, ts: NDArray[np.int64], ch: NDArray[np.integer[Any]], status: int,
                 ) -> int:
        """Raise for a bad block, or grow the full buffer and resume until the block is done;
        returns the end row of its heralds (as the pass does)."""
        k, state = self._k, self._state
        while status < 0:
            if status == -k.UNSORTED:
                from qnetlab.instruments.tag_blocks import order_error

                state[k.S_OUT] = self._pos  # (the pass undid the rest of the block)
                previous = int(state[k.S_LAST])
                raise order_error(int(state[k.S_BLOCKS]), ts, int(state[k.S_BAD]),
                                  None if previous < 0 else previous)
            if status in (-k.ROUNDS_FULL, -k.CLICKS_FULL):
                self._rings = _grow_rings(self._rings, state)
            else:
                # A new buffer: the part handed out stays where it is; this block's heralds
                # so far move to the new one's start.
                written = int(state[k.S_OUT]) - self._pos
                out = np.empty(max(_ARENA, 4 * written), ENGINE_HERALD_DTYPE)
                out[:written] = self._out[self._pos:self._pos + written]
                self._out, self._pos = out, 0
                state[k.S_OUT] = written
            status = self._pass(ts, ch, state, self._rings, self._out)
        return status

    def feed_block(self, block: TagBlock) -> NDArray[Any]:
        """`feed` a tagger `TagBlock`; an overflowed block (the tagger dropped tags, so a
        missed click could make a false herald) is refused unless ``accept_overflow``, then
        tallied in counters ``overflowed_blocks`` and ``lost_tags``."""
        if block.overflow:  # (checked here first: a block per ms, each call on the latency)
            from qnetlab.instruments.tag_blocks import check_overflow

            index = int(self._state[self._k.S_BLOCKS]) if block.index is None else block.index
            check_overflow(block, index, self.accept_overflow)
        heralds = self.feed(block.timestamps, block.channels)
        if block.overflow:
            self._overflowed += 1
            self._lost += block.lost_tags or 0
        return heralds

    @property
    def attempts(self) -> int:
        """Attempts decided so far: ``counters["attempts"]`` without building the dict (for
        bookkeeping per block)."""
        decided = int(self._state[self._k.S_DECIDED])
        if decided == 0:
            return 0
        # the last decided round stays in the ring; numbers count lost rounds too
        rounds = int(self._rings[3, (decided - 1) & (self._rings.shape[1] - 1)]) + 1
        return rounds // 2 if self._two else rounds

    @property
    def counters(self) -> dict[str, int]:
        """What the engine has seen and decided since the start (or `reset`).

        ``rounds`` (sync tags), ``attempts`` (decided: rounds decided, or pairs of rounds for
        two-click, counting rounds whose sync tag was lost), ``missed_syncs`` (rounds whose
        sync tag never came: their attempts cannot herald), ``heralds`` (``psi_plus`` +
        ``psi_minus``), ``no_click`` and ``multi_click`` (attempts decided without a herald: a
        round with no click in its windows or without its sync tag, or one with more than one
        click), ``clicks`` (detector tags),
        ``unassigned_clicks`` (in no window of any round seen so far: with windows before
        the sync, a sync still to come may claim the latest ones), ``other_tags`` (other inputs),
        ``pending_rounds`` (started, not yet decided), ``tags``, ``blocks``,
        ``overflowed_blocks``, ``lost_tags``.
        """
        k, s = self._k, self._state
        rounds, decided = int(s[k.S_SYNCS]), int(s[k.S_DECIDED])
        attempts = self.attempts
        heralds, multi, clicks = int(s[k.S_HERALDS]), int(s[k.S_MULTI]), int(s[k.S_CLICKS])
        if not self._two:  # the pass counts a round's second click, decided or not
            ring = self._rings
            pending = np.arange(decided, rounds) & (ring.shape[1] - 1)
            multi -= int(np.count_nonzero(ring[1, pending] > 1))
        return {
            "rounds": rounds,
            "attempts": attempts,
            "missed_syncs": int(s[k.S_MISSED]),
            "heralds": heralds,
            "psi_plus": heralds - int(s[k.S_PSI_MINUS]),
            "psi_minus": int(s[k.S_PSI_MINUS]),
            "no_click": attempts - heralds - multi,
            "multi_click": multi,
            "clicks": clicks,
            "unassigned_clicks": clicks - int(s[k.S_ASSIGNED]),
            "other_tags": int(s[k.S_TAGS]) - rounds - clicks,
            "pending_rounds": rounds - decided,
            "tags": int(s[k.S_TAGS]),
            "blocks": int(s[k.S_BLOCKS]),
            "overflowed_blocks": self._overflowed,
            "lost_tags": self._lost,
        }


def _checked(ts: Any, ch: Any) -> tuple[NDArray[np.int64], NDArray[np.integer[Any]]]:
    """The slow path of `feed`: arrays of the right kinds, or a ValueError saying the fix."""
    t = np.asarray(ts)
    c = np.asarray(ch)
    if t.ndim != 1 or (t.size and t.dtype.kind not in "iu"):
        raise ValueError(f"timestamps must be a 1-D array of integer ps, got shape {t.shape} "
                         f"dtype {t.dtype}; convert with np.rint(seconds * 1e12).astype(np.int64)")
    if c.ndim != 1 or (c.size and c.dtype.kind not in "iu"):
        raise ValueError(f"channels must be a 1-D array of integer tagger inputs, got shape "
                         f"{c.shape} dtype {c.dtype}")
    if t.size != c.size:
        raise ValueError(f"{t.size} timestamps but {c.size} channels; give exactly one "
                         "channel per timestamp")
    if c.dtype not in _CHANNEL_DTYPES:
        c = c.astype(np.int64)  # uint64 or non-native byte order
    return np.ascontiguousarray(t, np.int64), c


def _grow_rings(rings: NDArray[np.int64], state: NDArray[np.int64]) -> NDArray[np.int64]:
    """The engine's rings (layout: `_herald_kernel`) at twice the capacity: in each ring, every
    live entry (index i at column i & (capacity-1)) moved to its column under the new mask;
    the start-of-block copy of the rounds keeps its columns."""
    from . import _herald_kernel as k

    size = rings.shape[1]
    bigger = np.zeros((rings.shape[0], 2 * size), np.int64)
    n_clicks = int(state[k.S_CLICKS])
    # rounds: from the last decided one, or from "-1" (the number before the first round's:
    # the clicks' ring can fill before the first sync tag)
    for rows, head, tail in ((slice(0, 4), int(state[k.S_DECIDED]) - 1, int(state[k.S_SYNCS])),
                             (slice(8, 11), max(0, n_clicks - size), n_clicks)):
        live = np.arange(head, tail)
        bigger[rows, live & (2 * size - 1)] = rings[rows, live & (size - 1)]
    bigger[4:8, :size] = rings[4:8]
    return bigger
