"""The compiled pass of the herald engine (`herald_engine.HeraldEngine`): numba, one core.

Kept apart from `herald_engine` so that importing the engine's types (`HeraldWindows`,
`ENGINE_HERALD_DTYPE`) does not import numba: the network's processes and its config code
read those without running the engine.

All state lives in arrays owned by the engine, so a call can stop at any tag (a buffer is full)
and resume there, and a block boundary is just another place where the loop paused. Layout:

- ``state`` (int64): the `P_*` settings, the `S_*` scalars (counters, ring positions, the last
  timestamp), then per window (detector d, arm a, at ``S_WINDOWS + 2 * (d * arms + a)``) its
  first and one-past-last ``t - sync`` (ps).
- ``rings`` (int64, 11 x capacity, a power of two; one array for both rings and the copy, as
  every array argument costs numba's dispatch time per block):
- rows 0-7 (``rounds`` below): rows 0-3 are the undecided rounds and the
  last decided one (a two-click attempt's first round), a ring indexed by sync tag number: sync
  time, clicks in its windows, detector of its last click, and the round's number. Rows 4-7
  hold the same rounds as they were when the current block started (column j: round
  ``state[S_SNAP + S_DECIDED - S_SYNCS] - 1 + j``), so that a block found unsorted half-way can
  be undone (windows after the sync only, see `_herald_pass`). The number
  counts attempt-clock periods, not sync tags: a sync tag that comes more than 1.5 round
  periods after the one before means the tags between were lost (on the data link, or
  dropped late), and the rounds they started are skipped, so one lost sync tag costs its own
  round and never renumbers the attempts after it.
- rows 8-10 (``clicks`` below): the latest clicks, a ring indexed by click
  number: time, detector index, whether a round holds it. Only read when windows start before
  the sync (a click may belong to a sync tagged after it).
- ``out`` (ENGINE_HERALD_DTYPE): the heralds, written from ``state[S_OUT]`` on; the engine
  hands out the written part as a view and never writes it again.
- the order of a block's timestamps is checked before it changes anything: with windows that
  start before the sync, by a pass over the block first; otherwise inside the loop itself (a
  separate pass is the first to read the block from memory, which costs as much as a tenth
  of the engine's time when blocks come from a large buffer), undoing the block's changes
  from the start-of-block copy (the `S_*` scalars and the live rounds) when a timestamp goes
  back.

Each (click, sync) pair is looked at once, when the later of the two arrives: a click against
the rounds already started, a sync against the clicks already seen (only those within the
earliest window start before it). So nothing waits, and the per-tag work is that of the
plainest loop: a check for the oldest round's decision, then the tag itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from .messages import HERALD_DTYPE

# settings (written once by the engine)
P_SYNC = 0          # sync channel
P_DET0 = 1          # detector 0 channel
P_DET1 = 2          # detector 1 channel
P_ARMS = 3          # arms (windows per detector)
P_END = 4           # latest window end over all windows (ps after the sync)
P_START = 5         # earliest window start (ps after the sync; < 0: before it)
P_TWO_CLICK = 6     # 1 for Barrett-Kok (for the reader: each scheme has its compiled variant)
# state
S_SYNCS = 7         # sync tags seen = rounds started (= the next round's number)
S_DECIDED = 8       # rounds decided (the oldest undecided round's number)
S_CLICKS = 9        # detector tags seen (the next click's number)
S_ASSIGNED = 10     # clicks some round holds in a window
S_LAST = 11         # last timestamp fed (ps), -1 before any
S_HERALDS = 12
S_PSI_MINUS = 13    # heralds with bell_state 1
S_MULTI = 14        # two-click: attempts decided with a round of more than one click (the
                    # other attempts without a herald had a round without any); single-click:
                    # rounds that got a second click, decided or not (counted at the click,
                    # off the per-tag path; the engine subtracts the undecided ones)
S_OUT = 15          # next free row of `out`
S_RESUME = 16       # tag to resume the current block at (0: a new block)
S_BAD = 17          # position of the tag that broke the order (after UNSORTED)
S_TAGS = 18         # tags of the blocks completed
S_BLOCKS = 19       # blocks completed
P_PERIOD = 20       # round period (ps); 0: number rounds by counting sync tags
S_MISSED = 21       # rounds whose sync tag never came (skipped numbers)
P_GAP = 22          # a sync gap above this (ps) means lost sync tags: 1.5 periods, or the
                    # largest int64 without a period (set by the engine: as a loaded value,
                    # not one derived from P_PERIOD here, its test stays one compare per sync)
S_SNAP = 23         # copy of state[S_SYNCS:S_SYNCS + N_SNAP] at the start of the block
N_SNAP = P_GAP - S_SYNCS
S_WINDOWS = S_SNAP + N_SNAP

# statuses, returned negated (a return value >= 0 is the end row of the heralds in `out`)
ROUNDS_FULL = 1
CLICKS_FULL = 2
OUT_FULL = 3
UNSORTED = 4


@njit(cache=True, nogil=True)
def _first_unsorted(ts: Any, previous: int) -> int:
    """Position of the first timestamp below its predecessor (or below `previous`, or below
    0), or -1. A branch-free OR over the block first (it vectorises: ~0.1 ns a tag), so that
    sorted blocks, the usual case, pay almost nothing; the position is searched on failure."""
    n = ts.size
    if n == 0:
        return -1
    bad = (ts[0] < previous) | (ts[0] < 0)
    for k in range(1, n):
        bad |= ts[k] < ts[k - 1]
    if not bad:
        return -1
    if ts[0] < previous or ts[0] < 0:
        return 0
    for k in range(1, n):
        if ts[k] < ts[k - 1]:
            return k
    return -1


@njit(cache=True, nogil=True, inline="always")
def _save(state: Any, rounds: Any) -> None:
    """Copy what a block can change (the `S_*` scalars, the live rounds) aside, at its start."""
    for i in range(N_SNAP):
        state[S_SNAP + i] = state[S_SYNCS + i]
    mask = (rounds.shape[1] - 1)
    oldest = state[S_DECIDED] - 1  # the last decided round too (-1: the numbering's start)
    for j in range(state[S_SYNCS] - oldest):
        slot = (oldest + j) & mask
        for f in range(4):
            rounds[4 + f, j] = rounds[f, slot]


@njit(cache=True, nogil=True, inline="always")
def _undo(state: Any, rounds: Any, bad: int) -> None:
    """Put back what `_save` copied (the block is refused: tag `bad` goes back in time)."""
    for i in range(N_SNAP):
        state[S_SYNCS + i] = state[S_SNAP + i]
    mask = (rounds.shape[1] - 1)
    oldest = state[S_DECIDED] - 1
    for j in range(state[S_SYNCS] - oldest):
        slot = (oldest + j) & mask
        for f in range(4):
            rounds[f, slot] = rounds[4 + f, j]
    state[S_RESUME] = 0
    state[S_BAD] = bad


@njit(cache=True, nogil=True, inline="always")
def _herald_pass(ts: Any, ch: Any, state: Any, rings: Any, out: Any, two_click: bool,
                 early: bool) -> int:
    """Run the engine over one block from tag ``state[S_RESUME]`` on.

    `two_click` (the scheme) and `early` (a window starts at or before the sync, so a click
    may belong to a sync tagged after it, or at the same time) are constants of the four
    compiled variants below: the code a variant does not need is compiled out, which keeps
    the loop's variables in registers (a fifth faster than testing them per tag).

    Returns the end row of the heralds written to `out` when the block is done, or a negated
    status: a full buffer (`ROUNDS_FULL`, `CLICKS_FULL`, `OUT_FULL`: grow it, call again, the
    pass resumes where it stopped) or `UNSORTED` (nothing changed: the block's changes are
    undone; ``state[S_BAD]`` is the position of the tag that went back in time, and
    ``state[S_OUT]`` must be set back to where the block's heralds started, which the engine
    knows if it replaced `out` on the way).

    Per tag at time t (see docs/link.md, "The herald engine"):
    1. the rounds with sync + end <= t are decided, oldest first: every click that can fall in
       their windows has been seen;
    2. a sync tag starts a round, which takes the clicks already seen in its windows (only
       when windows start before the sync); a detector tag goes to the rounds already started
       whose windows hold it (and to the click ring when later syncs may claim it).
    A stop on a full buffer happens before the tag changes anything, so the pass resumes at it.
    """
    # Indices that LLVM can prove non-negative skip numba's wraparound code (a negative index
    # counts from the end), which cost a third of the loop: hence the max(.., 0) and the
    # range loop.
    first = max(state[S_RESUME], 0)
    n = ts.size
    if first == 0:
        if early:
            bad = _first_unsorted(ts, state[S_LAST])
            if bad >= 0:
                state[S_BAD] = bad
                return -UNSORTED
        else:
            _save(state, rings)
    sync_ch = state[P_SYNC]
    det0 = state[P_DET0]
    det1 = state[P_DET1]
    n_arms = max(state[P_ARMS], 1)
    end = state[P_END]
    start = state[P_START]
    windows = state[S_WINDOWS:]

    n_syncs = state[S_SYNCS]
    decided = state[S_DECIDED]
    n_clicks = state[S_CLICKS]
    assigned = state[S_ASSIGNED]
    psi_minus = state[S_PSI_MINUS]
    multi = state[S_MULTI]
    n_out = max(state[S_OUT], 0)
    out_cap = out.size
    r_sync = rings[0]
    r_count = rings[1]
    r_det = rings[2]
    r_id = rings[3]
    period = state[P_PERIOD]
    gap_limit = state[P_GAP]  # a larger gap between sync tags means lost ones
    r_mask = max(r_sync.size - 1, 0)
    c_time = rings[8]
    c_det = rings[9]
    c_held = rings[10]
    c_mask = max(c_time.size - 1, 0)

    status = 0
    stop = n  # where the pass stopped: the block's end, or the tag to resume at
    previous = max(state[S_LAST], 0)  # timestamps are >= 0 and sorted across blocks
    for k in range(first, n):
        t = ts[np.uint64(k)]  # unsigned: no wraparound code (LLVM cannot prove k >= 0)
        if not early:
            # checked here rather than in a pass of its own (see the module docstring)
            if t < previous:
                status = UNSORTED
                stop = k
                break
            previous = t
        # 1. decide the rounds whose windows are all closed
        # (attempts without a herald are counted only when a round had several clicks, the
        # rest had a round without any, and single-click counts those at their second click:
        # each counter on this path costs the loop several per cent)
        while decided < n_syncs and r_sync[decided & r_mask] + end <= t:
            slot = decided & r_mask
            count = r_count[slot]
            if not two_click:
                if count == 1:
                    if n_out >= out_cap:
                        status = OUT_FULL  # this round is decided again on resume
                        break
                    out[n_out].attempt_id = r_id[slot]
                    out[n_out].sync_ps = r_sync[slot]
                    out[n_out].bell_state = r_det[slot]
                    n_out += 1
                    psi_minus += r_det[slot]
            elif r_id[slot] & 1:
                # the attempt's second round; its first, unless its sync tag was lost, is
                # still in the ring (one slot is kept spare for it)
                round1 = (decided - 1) & r_mask
                whole = decided > 0 and r_id[round1] == r_id[slot] - 1
                round1_count = r_count[round1] if whole else 0
                if round1_count == 1 and count == 1:
                    if n_out >= out_cap:
                        status = OUT_FULL
                        break
                    bell = 0 if r_det[round1] == r_det[slot] else 1
                    out[n_out].attempt_id = r_id[slot] >> 1
                    out[n_out].sync_ps = r_sync[round1]
                    out[n_out].bell_state = bell
                    n_out += 1
                    psi_minus += bell
                elif round1_count > 1 or count > 1:
                    multi += 1
            decided += 1
        if status:
            stop = k
            break
        # 2. take the tag in
        c = ch[np.uint64(k)]
        if c == sync_ch:
            if n_syncs - decided >= r_mask:  # (one slot spare: the last round decided)
                status = ROUNDS_FULL
                stop = k
                break
            slot = n_syncs & r_mask
            r_sync[slot] = t
            r_count[slot] = 0
            r_det[slot] = 0
            # numbered after the round before (still in the ring: undecided, or the last
            # decided; the ring starts with number -1 before slot 0), from the ring rather
            # than loop variables: fewer registers keep the loop as fast as a bare one
            before = (n_syncs - 1) & r_mask
            number = r_id[before] + 1
            gap = t - r_sync[before]
            # (the first sync tag's gap is from the virtual round -1 at -period, so sync tags
            # lost before it, at the recording's start, are skipped rounds too)
            if gap > gap_limit:  # rare: tested first
                skipped = (gap + (period >> 1)) // period - 1
                number += skipped
                state[S_MISSED] += skipped
            r_id[slot] = number
            n_syncs += 1
            if early:
                # clicks already seen in this round's windows: newest first, back to the
                # earliest window start
                j = n_clicks - 1
                while j >= max(0, n_clicks - 1 - c_mask):  # the ring holds the last c_mask + 1
                    cs = j & c_mask
                    dt = c_time[cs] - t
                    if dt < start:
                        break
                    w = 2 * c_det[cs] * n_arms
                    for a in range(n_arms):
                        if windows[w + 2 * a] <= dt < windows[w + 2 * a + 1]:
                            r_count[slot] += 1
                            r_det[slot] = c_det[cs]
                            if not two_click:
                                multi += r_count[slot] == 2
                            assigned += c_held[cs] == 0
                            c_held[cs] = 1
                            break
                    j -= 1
        elif c == det0 or c == det1:  # noqa: SIM109 (two compares, no tuple, in numba)
            d = 0 if c == det0 else 1
            if early:
                # the ring keeps the clicks a later sync may claim: refuse to overwrite one
                cs = n_clicks & c_mask
                if n_clicks > c_mask and c_time[cs] - t >= start:
                    status = CLICKS_FULL
                    stop = k
                    break
                c_time[cs] = t
                c_det[cs] = d
                c_held[cs] = 0
            held = False
            w = 2 * d * n_arms
            # newest round first; a round with sync + end <= t (and older) cannot hold it
            r = n_syncs - 1
            while r >= decided:
                slot = r & r_mask
                dt = t - r_sync[slot]
                if dt >= end:
                    break
                for a in range(n_arms):
                    if windows[w + 2 * a] <= dt < windows[w + 2 * a + 1]:
                        # in this round's window: counted once however many arms hold it
                        r_count[slot] += 1
                        if not two_click:
                            multi += r_count[slot] == 2
                        r_det[slot] = d
                        held = True
                        break
                r -= 1
            if held:
                assigned += 1
                if early:
                    c_held[n_clicks & c_mask] = 1
            n_clicks += 1

    if status == UNSORTED:
        _undo(state, rings, stop)
        return -UNSORTED
    state[S_SYNCS] = n_syncs
    state[S_DECIDED] = decided
    state[S_CLICKS] = n_clicks
    state[S_ASSIGNED] = assigned
    if stop > first:
        state[S_LAST] = ts[stop - 1]
    state[S_PSI_MINUS] = psi_minus
    state[S_MULTI] = multi
    state[S_HERALDS] += n_out - state[S_OUT]
    state[S_OUT] = n_out
    if status:
        state[S_RESUME] = stop
        return -status
    state[S_RESUME] = 0
    state[S_TAGS] += n
    state[S_BLOCKS] += 1
    return n_out


@njit(cache=True, nogil=True)
def pass_single(ts: Any, ch: Any, state: Any, rings: Any, out: Any) -> int:
    """`_herald_pass` for single-click, every window after its sync."""
    return _herald_pass(ts, ch, state, rings, out, False, False)


@njit(cache=True, nogil=True)
def pass_single_early(ts: Any, ch: Any, state: Any, rings: Any, out: Any) -> int:
    """`_herald_pass` for single-click, a window starting at or before its sync."""
    return _herald_pass(ts, ch, state, rings, out, False, True)


@njit(cache=True, nogil=True)
def pass_two(ts: Any, ch: Any, state: Any, rings: Any, out: Any) -> int:
    """`_herald_pass` for two-click, every window after its sync."""
    return _herald_pass(ts, ch, state, rings, out, True, False)


@njit(cache=True, nogil=True)
def pass_two_early(ts: Any, ch: Any, state: Any, rings: Any, out: Any) -> int:
    """`_herald_pass` for two-click, a window starting at or before its sync."""
    return _herald_pass(ts, ch, state, rings, out, True, True)


_WIRE_ROW = HERALD_DTYPE


@njit(cache=True, nogil=True)
def wire_rows(found: Any, id_offset: int, time_offset_ps: int, link: int, first_seq: int
              ) -> Any:
    """The engine's heralds (`found`, ENGINE_HERALD_DTYPE) as the station sends them
    (`messages.HERALD_DTYPE`): `link`, seqs from `first_seq`, attempt id + `id_offset`, time
    = sync time + `time_offset_ps`. One compiled call instead of a numpy call per field
    (~3 us each on the heralds' latency on a busy host: bench_delivery)."""
    out = np.empty(len(found), _WIRE_ROW)
    shift, seq = np.uint64(id_offset), np.uint64(first_seq)  # (uint64 + int64 is a float)
    for i in range(len(found)):
        out[i].link = link
        out[i].seq = seq + np.uint64(i)
        out[i].attempt_id = found[i].attempt_id + shift
        out[i].bell_state = found[i].bell_state
        out[i].timestamp_ps = found[i].sync_ps + time_offset_ps
    return out
