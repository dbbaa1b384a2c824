"""Emulator of the ID Quantique ID1000 Time Controller (its SCPI control interface).

The real instrument takes text SCPI commands over a ZeroMQ REQ/REP socket (port 5555) and
replies to every command; a failed command's reply ends in ``SCPI_ERR_<kind>``. Commands here
are those used by IDQ's own example scripts (redistributed in github.com/vxcarson/thesis_code,
``utils/common.py`` and ``utils/acquisitions/timestamps.py``) and by MSL's ID900 driver
(github.com/MSLNZ/pr-single-photons, ``photons/equipment/idq_time_controller.py``); the ID1000
user and programming manuals define them:

* ``INPUt<n>:ENABle ON|OFF`` (query: ``ON``/``OFF``), ``INPUt<n>:THREshold <V>`` (query:
  ``0.5V``), ``INPUt<n>:COUNter?``, ``INPUt<n>:COUNter:RESEt``,
  ``INPUt<n>:COUNter:INTEgrationtime <ms>``;
* ``DELAy<n>:VALUe <ps>``, ``DELAy<n>:INPOrt:LINK INPU<m>|STAR|NONE`` (a delay block adds its
  value to the input it is linked to; block n is linked to input n at reset here);
* ``RECord:TRIGger:ARM:MODE MANUal|AUTO``, ``RECord:ENABle``, ``RECord:NUMber``,
  ``RECord:DURation <ps>``, ``RECord:PLAY``, ``RECord:STOP``, ``RECord:STAGe?``
  (``PLAYING``/``STOPPED``);
* ``RAW<n>:SEND ON|OFF`` (hand channel n's timestamps to the data-link service),
  ``RAW<n>:ERRORS?`` (timestamps lost on the link; here the number of lost tags),
  ``RAW<n>:ERRORS:CLEAR``;
* ``TSCO<n>:...`` (the time-stamping/counting blocks): RAW<n> streams TSCO<n>'s output, so a
  window on TSCO<n> gates input n's timestamps before they use the link (`idq_tsco`, which
  lists what of the blocks is emulated and how the window is taken).

Not confirmed against the manual (modelling choices, check on a real unit): the reply text of
settings (empty here, except the counter reset's ``Counter value set to 0 ``), the error reply
wording before the ``SCPI_ERR_...`` marker, the threshold range (+-2 V here), the reset state
(inputs disabled, threshold 0.5 V, delays 0), ``*IDN?`` fields, and that ``RAW<n>:ERRORS?``
counts lost tags rather than loss events.

Physics: input events come from a pluggable `EventSource` (default: independent Poisson
clicks per input). A pulse is seen only when the threshold lies between 0 V and the pulse
amplitude. `sim_instruments.physics.time_tagger.TimeTaggerModel` adds each input's hidden
delay, jitter and dead time, plus the user's delay. Tags go out to the link in chunks; a
chunk holds at most ``max_stream_rate * chunk`` tags (the earliest are kept), the rest are
lost and counted in ``RAW<n>:ERRORS?``. `recording` yields the chunks of one recording; the
ZeroMQ server (`sim_instruments.zmq_server`) paces and sends them.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from ..physics.gating import Gate, SyncCarry, in_windows
from ..physics.time_tagger import TaggerChannel, TaggerStream, TimeTaggerModel
from .idq_tsco import TscoCommands
from .scpi import (
    DATA_OUT_OF_RANGE,
    SETTINGS_CONFLICT,
    Args,
    ScpiDevice,
    ScpiError,
    command,
    mnemonics,
    no_argument,
)

if TYPE_CHECKING:
    from ..physics.world import LabWorld

N_INPUTS = 4
"""ID1000 inputs 1-4 (the START input is not emulated)."""


class EventSource(Protocol):
    """Input events for the emulator: arrival times per input (front-panel number)."""

    def events(self, inputs: Sequence[int], start_ps: int, stop_ps: int,
               rng: np.random.Generator) -> dict[int, np.ndarray]:
        """Sorted int64 ps arrival times in [start_ps, stop_ps) for each of `inputs`."""
        ...


class RecordingEvents(EventSource, Protocol):
    """The events of one recording, from a source that has ``open_recording(duration_ps)``
    (a source with state per recording, e.g. `sim_instruments.link_events.LinkEvents`)."""

    def finish(self, reached_ps: int) -> None:
        """The recording ended at `reached_ps` (ps from its start)."""
        ...


@dataclass
class PoissonClicks:
    """Independent Poisson clicks per input, rates in counts/s (inputs not listed: none)."""

    rates_hz: Mapping[int, float]

    def events(self, inputs: Sequence[int], start_ps: int, stop_ps: int,
               rng: np.random.Generator) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        span = stop_ps - start_ps
        for n in inputs:
            rate = float(self.rates_hz.get(n, 0.0))
            # Given their number, Poisson arrivals are uniform order statistics.
            k = int(rng.poisson(rate * span * 1e-12)) if rate > 0 else 0
            out[n] = np.sort(rng.integers(start_ps, stop_ps, k, dtype=np.int64))
        return out


@dataclass
class CoincidentPulses:
    """One Poisson train of pulses split onto several inputs at the same instant (a pulse
    fanned out to several cables): the tags then differ only by delays and jitter."""

    rate_hz: float
    inputs: tuple[int, ...] = (1, 2)

    def events(self, inputs: Sequence[int], start_ps: int, stop_ps: int,
               rng: np.random.Generator) -> dict[int, np.ndarray]:
        k = int(rng.poisson(self.rate_hz * (stop_ps - start_ps) * 1e-12))
        times = np.sort(rng.integers(start_ps, stop_ps, k, dtype=np.int64))
        return {n: (times if n in self.inputs else np.empty(0, np.int64)) for n in inputs}


def default_model() -> TimeTaggerModel:
    """Four inputs with distinct hidden delays (what a delay calibration must find).

    Jitter, dead time and link rate are modelling choices of a plausible order, not ID1000
    datasheet values (check them against the datasheet before trusting a sensitivity study).
    """
    delays = (1_000, 2_350, 1_520, 3_105)
    return TimeTaggerModel(
        channels=tuple(TaggerChannel(delay_ps=d, jitter_rms_ps=5.0, dead_time_ps=3_000)
                       for d in delays),
        max_stream_rate=20e6, resolution_ps=1)


@dataclass
class Chunk:
    """One chunk of a recording as it leaves on the link, ps from the start of the recording."""

    start_ps: int
    stop_ps: int
    tags: dict[int, np.ndarray]
    """Input -> sorted int64 ps timestamps sent."""
    lost: dict[int, int]
    """Input -> tags lost to the link-rate cap in this chunk."""


_ERROR_MARKERS = {-113: "SCPI_ERR_INVALID_CMD", -100: "SCPI_ERR_INVALID_CMD",
                  -102: "SCPI_ERR_INVALID_CMD"}
"""SCPI error code -> reply marker; every other error is a parameter error."""


class IDQuantiqueID1000Emulator(TscoCommands, ScpiDevice):
    """An ID1000 Time Controller with four inputs (see the module docstring)."""

    identity = ("ID Quantique", "ID1000", "EMU0001", "qnetlab-emulator")
    threshold_range_v: ClassVar[tuple[float, float]] = (-2.0, 2.0)
    max_delay_ps: ClassVar[int] = 10**12
    """1 s, the range MSL's ID900 driver allows."""

    def __init__(self, world: LabWorld, name: str, *, model: TimeTaggerModel | None = None,
                 source: EventSource | None = None, pulse_amplitude_v: float = 1.0,
                 chunk_s: float = 0.01) -> None:
        self.model = model or default_model()
        if self.model.n_channels != N_INPUTS:
            raise ValueError(f"the ID1000 has {N_INPUTS} inputs, model has "
                             f"{self.model.n_channels}")
        self.source: EventSource = source or PoissonClicks(dict.fromkeys(range(1, 5), 1e4))
        self.pulse_amplitude_v = pulse_amplitude_v
        """V, the height of the pulses at every input."""
        self.chunk_s = chunk_s
        """s, how much recording time one message to the link carries."""
        self.batch_s = 0.005
        """s of recording drawn at once (a whole number of chunks, at least one)."""
        self.lock = threading.RLock()
        """Held while a command runs, so a recorder thread sees a consistent state."""
        self._request_errors: list[tuple[int, str]] = []
        self.raw_errors = dict.fromkeys(range(1, N_INPUTS + 1), 0)
        super().__init__(world, name)
        self._rng = world.rng(name)

    def reset(self) -> None:
        self.enabled = dict.fromkeys(range(1, N_INPUTS + 1), False)
        self.threshold_v = dict.fromkeys(range(1, N_INPUTS + 1), 0.5)
        self.delay_ps = dict.fromkeys(range(1, N_INPUTS + 1), 0)
        self.delay_link: dict[int, int | None] = {n: n for n in range(1, N_INPUTS + 1)}
        self.integration_ms = dict.fromkeys(range(1, N_INPUTS + 1), 1000)
        self.raw_send = dict.fromkeys(range(1, N_INPUTS + 1), False)
        self.reset_tsco()
        self.rec_duration_ps = 10**12
        self.rec_number = 1
        self.rec_enabled = False
        self.rec_arm_mode = "MAN"
        self.playing = False
        self.stop_requested = False
        self.play_requested = False
        """Set by RECord:PLAY; the server starts the recording and clears it."""

    # -- replies as the Time Controller gives them ------------------------------------------
    def push_error(self, code: int, message: str) -> None:
        super().push_error(code, message)
        self._request_errors.append((code, message))

    def reply(self, message: str) -> str:
        """The reply to one request: the response text, "" for a setting, or an error text
        ending in SCPI_ERR_<kind> (the ID1000 answers every request)."""
        with self.lock:
            self._request_errors.clear()
            out = self.handle(message)
            if self._request_errors:
                code, text = self._request_errors[0]
                marker = _ERROR_MARKERS.get(code, "SCPI_ERR_PARAM_TYPE")
                return f"Error in {message!r}: {text} {marker}"
            if isinstance(out, bytes):  # no binary replies here; keep the type honest
                return out.decode("ascii", errors="replace")
            return out or ""

    # -- inputs -------------------------------------------------------------------------------
    @staticmethod
    def _input(suffix: int) -> int:
        if not 1 <= suffix <= N_INPUTS:
            raise ScpiError((-114, "Header suffix out of range"), str(suffix))
        return suffix

    @command("INPUt<n>:ENABle")
    def _set_enable(self, args: Args, suffix: int) -> None:
        self.enabled[self._input(suffix)] = args.boolean()

    @command("INPUt<n>:ENABle", query=True)
    def _get_enable(self, args: Args, suffix: int) -> str:
        return "ON" if self.enabled[self._input(suffix)] else "OFF"

    @command("INPUt<n>:THREshold")
    def _set_threshold(self, args: Args, suffix: int) -> None:
        low, high = self.threshold_range_v
        self.threshold_v[self._input(suffix)] = args.number(low=low, high=high,
                                                            units=("V", "MV"))

    @command("INPUt<n>:THREshold", query=True)
    def _get_threshold(self, args: Args, suffix: int) -> str:
        return f"{self.threshold_v[self._input(suffix)]:.4f}V"

    @command("INPUt<n>:COUNter:INTEgrationtime")
    def _set_integration(self, args: Args, suffix: int) -> None:
        self.integration_ms[self._input(suffix)] = args.integer(low=1, high=65535)

    @command("INPUt<n>:COUNter:INTEgrationtime", query=True)
    def _get_integration(self, args: Args, suffix: int) -> str:
        return str(self.integration_ms[self._input(suffix)])

    @command("INPUt<n>:COUNter:RESEt")
    @no_argument
    def _reset_counter(self, args: Args, suffix: int) -> str:
        self._input(suffix)
        return "Counter value set to 0 "  # the reply MSL's ID900 driver checks

    @command("INPUt<n>:COUNter", query=True)
    def _get_counter(self, args: Args, suffix: int) -> str:
        """Counts in the last integration window (virtual time: no waiting)."""
        n = self._input(suffix)
        if not self._sees_pulses(n):
            return "0"
        stop = self.integration_ms[n] * 10**9
        events = self.source.events([n], 0, stop, self._rng)
        return str(self.tagging_model().count(n - 1, events.get(n, np.empty(0, np.int64))))

    def tagging_model(self) -> TimeTaggerModel:
        """The tagger as it tags now: `model` with each input's hidden delay drifted by
        the world's lab time (unchanged in the ideal lab: `LabWorld.tagger_delay_drift_ps`)."""
        return self.model.with_delay_offsets(
            [self.world.tagger_delay_drift_ps(self.name, n) for n in range(1, N_INPUTS + 1)])

    def _sees_pulses(self, n: int) -> bool:
        return self.enabled[n] and 0.0 < self.threshold_v[n] < self.pulse_amplitude_v

    # -- delays -------------------------------------------------------------------------------
    @staticmethod
    def _block(suffix: int) -> int:
        if not 1 <= suffix <= 8:
            raise ScpiError((-114, "Header suffix out of range"), str(suffix))
        return suffix

    @command("DELAy<n>:VALUe")
    def _set_delay(self, args: Args, suffix: int) -> None:
        block = self._block(suffix)
        if block > N_INPUTS:
            self.delay_link.setdefault(block, None)
        self.delay_ps[block] = args.integer(low=0, high=self.max_delay_ps)

    @command("DELAy<n>:VALUe", query=True)
    def _get_delay(self, args: Args, suffix: int) -> str:
        return str(self.delay_ps.get(self._block(suffix), 0))

    @command("DELAy<n>:INPOrt:LINK")
    def _set_link(self, args: Args, suffix: int) -> None:
        block = self._block(suffix)
        word = args.text().upper()
        if word in ("NONE", "STAR", "START"):
            self.delay_link[block] = None  # the START input is not emulated
            return
        for prefix in ("INPUT", "INPU"):
            if word.startswith(prefix) and word[len(prefix):].isdigit():
                self.delay_link[block] = self._input(int(word[len(prefix):]))
                return
        raise ScpiError((-224, "Illegal parameter value"), word)

    @command("DELAy<n>:INPOrt:LINK", query=True)
    def _get_link(self, args: Args, suffix: int) -> str:
        link = self.delay_link.get(self._block(suffix))
        return "NONE" if link is None else f"INPU{link}"

    def user_delays_ps(self) -> dict[int, int]:
        """Input -> the sum of the delay blocks linked to it, ps."""
        out = dict.fromkeys(range(1, N_INPUTS + 1), 0)
        for block, link in self.delay_link.items():
            if link is not None:
                out[link] += self.delay_ps.get(block, 0)
        return out

    # -- recording ----------------------------------------------------------------------------
    @command("RECord:TRIGger:ARM:MODE")
    def _set_arm(self, args: Args) -> None:
        self.rec_arm_mode = args.choice(0, mnemonics("MANUal", "AUTO"))

    @command("RECord:TRIGger:ARM:MODE", query=True)
    def _get_arm(self, args: Args) -> str:
        return {"MAN": "MANUAL", "AUTO": "AUTO"}[self.rec_arm_mode]

    @command("RECord:ENABle")
    def _set_rec_enable(self, args: Args) -> None:
        self.rec_enabled = args.boolean()

    @command("RECord:ENABle", query=True)
    def _get_rec_enable(self, args: Args) -> str:
        return "ON" if self.rec_enabled else "OFF"

    @command("RECord:NUMber")
    def _set_number(self, args: Args) -> None:
        number = args.integer(low=0, high=2**31 - 1)
        if number != 1:
            # Only single recordings are emulated: say so rather than do something else.
            raise ScpiError(DATA_OUT_OF_RANGE, "the emulator records once (REC:NUM 1)")
        self.rec_number = number

    @command("RECord:NUMber", query=True)
    def _get_number(self, args: Args) -> str:
        return str(self.rec_number)

    @command("RECord:DURation")
    def _set_duration(self, args: Args) -> None:
        self.rec_duration_ps = round(args.number(low=1e6, high=1e15))  # 1 us .. 1000 s

    @command("RECord:DURation", query=True)
    def _get_duration(self, args: Args) -> str:
        return str(self.rec_duration_ps)

    @command("RECord:PLAY")
    @no_argument
    def _play(self, args: Args) -> None:
        if not self.rec_enabled:
            raise ScpiError(SETTINGS_CONFLICT, "RECord:ENABle is OFF")
        if self.playing:
            raise ScpiError(SETTINGS_CONFLICT, "already playing")
        self.stream_gates(self._streamed())  # refuses a window it does not emulate
        self.playing = True
        self.stop_requested = False
        self.play_requested = True

    @command("RECord:STOP")
    @no_argument
    def _stop(self, args: Args) -> None:
        self.stop_requested = True

    @command("RECord:STAGe", query=True)
    def _stage(self, args: Args) -> str:
        return "PLAYING" if self.playing else "STOPPED"

    # -- raw timestamps to the data link -----------------------------------------------------
    @command("RAW<n>:SEND")
    def _set_send(self, args: Args, suffix: int) -> None:
        self.raw_send[self._input(suffix)] = args.boolean()

    @command("RAW<n>:SEND", query=True)
    def _get_send(self, args: Args, suffix: int) -> str:
        return "ON" if self.raw_send[self._input(suffix)] else "OFF"

    @command("RAW<n>:ERRORS", query=True)
    def _get_raw_errors(self, args: Args, suffix: int) -> str:
        return str(self.raw_errors[self._input(suffix)])

    @command("RAW<n>:ERRORS:CLEAR")
    @no_argument
    def _clear_raw_errors(self, args: Args, suffix: int) -> None:
        self.raw_errors[self._input(suffix)] = 0

    def _streamed(self) -> list[int]:
        """The inputs a recording streams: enabled, seeing pulses, RAW<n>:SEND ON."""
        return [n for n in range(1, N_INPUTS + 1) if self.raw_send[n] and self._sees_pulses(n)]

    def recording(self) -> Generator[Chunk, None, None]:
        """The chunks of the recording started by RECord:PLAY, as the link carries them.

        Inputs recorded: enabled, seeing pulses, and with RAW<n>:SEND ON (only they use the
        link). Tags lie in [0, duration) ps from the start of the recording. Ends early on
        RECord:STOP (or `close()`); clears `playing` at the end. Events are drawn `batch_s`
        at a time and handed out `chunk_s` at a time; a source with
        ``open_recording(duration_ps)`` gets one `RecordingEvents` per recording, told where
        it ended (`RecordingEvents.finish`).
        """
        source: EventSource | RecordingEvents | None = None
        reached = 0
        try:
            with self.lock:
                inputs = self._streamed()
                gates = self.stream_gates(inputs)
                # an input whose tags open a window is tagged too, sent on the link or not
                drawn = sorted({*inputs, *(g.sync_input for g in gates.values()
                                          if g.sync_input is not None
                                          and self._sees_pulses(g.sync_input))})
                duration = self.rec_duration_ps
                delays = {n - 1: d for n, d in self.user_delays_ps().items()}
            # The stream tags without a cap; the link cap is applied per chunk below so the
            # loss can be counted per input. (A huge finite rate: capacity() floors it.)
            uncapped = dataclasses.replace(self.tagging_model(), max_stream_rate=1e30)
            stream = TaggerStream(uncapped, self._rng, user_delays_ps=delays)
            step = max(1, round(self.chunk_s * 1e12))
            # Tags are drawn for several chunks at once (numpy's per-call cost would
            # dominate sub-ms chunks) and handed out chunk by chunk.
            per_batch = max(1, round(self.batch_s / self.chunk_s))
            capacity = math.floor(self.model.max_stream_rate * step * 1e-12)
            # A source with state per recording (the simulated link) opens one for it.
            opener = getattr(self.source, "open_recording", None)
            source = opener(duration) if callable(opener) else self.source
            carries = {n: SyncCarry(g.close_ps) for n, g in gates.items()}
            start = 0
            while start < duration + step:  # one more chunk flushes tags delayed past the end
                if self.stop_requested:
                    break
                chunks = per_batch if start < duration else 1
                stop = start + chunks * step
                window = min(stop, duration)
                events = (source.events(drawn, start, window, self._rng)
                          if start < duration else {})
                reached = window
                block = stream.block({n - 1: t for n, t in events.items()}, start, stop)
                ts, cs = block.timestamps, block.channels
                inside = (ts >= 0) & (ts < duration)  # the recording window gates the tags
                ts, cs = ts[inside], cs[inside]
                if drawn != inputs or gates:  # before the link: gated tags never use it
                    ts, cs = _apply_gates(ts, cs, gates, carries, inputs)
                # chunk i takes the tags before its end (the last one all that are left)
                bounds = start + step * np.arange(1, chunks + 1)
                ends = np.searchsorted(ts, bounds)
                ends[-1] = ts.size
                # each input's tags, split at the same bounds (one pass per batch, not chunk)
                per_input = {n: ts[cs == n - 1] for n in inputs}
                input_ends = {n: np.searchsorted(t, bounds) for n, t in per_input.items()}
                for t_n, e_n in zip(per_input.values(), input_ends.values(), strict=True):
                    e_n[-1] = t_n.size
                begin = 0
                for i, end in enumerate(ends.tolist()):
                    if self.stop_requested:
                        break
                    if end - begin <= capacity:
                        tags = {n: per_input[n][input_ends[n][i - 1] if i else 0:
                                                input_ends[n][i]] for n in inputs}
                        lost = dict.fromkeys(inputs, 0)
                    else:  # over the link's rate: the earliest tags go, the rest are lost
                        c_ts, c_cs = ts[begin:end], cs[begin:end]
                        lost_cs = c_cs[capacity:]
                        c_ts, c_cs = c_ts[:capacity], c_cs[:capacity]
                        tags = {n: c_ts[c_cs == n - 1] for n in inputs}
                        lost = {n: int(np.count_nonzero(lost_cs == n - 1)) for n in inputs}
                        with self.lock:
                            for n, k in lost.items():
                                self.raw_errors[n] += k
                    begin = end
                    c_start = start + i * step
                    yield Chunk(c_start, c_start + step, tags, lost)
                start = stop
        finally:
            finish = getattr(source, "finish", None) if source is not self.source else None
            try:
                if callable(finish):
                    finish(reached)
            finally:
                with self.lock:
                    self.playing = False


def _apply_gates(ts: np.ndarray, cs: np.ndarray, gates: Mapping[int, Gate],
                 carries: Mapping[int, SyncCarry], sent: Sequence[int],
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The tags (sorted ps, channel = input - 1) that leave on the link: each gated input's
    as its `Gate` passes them (windows after the sync input's tags, earlier blocks' sync tags
    carried), of the `sent` inputs only (an input tagged only to open windows stays home)."""
    sent_lut = np.zeros(N_INPUTS, bool)  # channel -> sent (a lookup: cheaper than np.isin)
    sent_lut[np.asarray(sent, np.int64) - 1] = True
    passes = sent_lut[cs]
    for n, gate in gates.items():
        mine = cs == n - 1
        if gate.sync_input is None:
            inside = np.zeros(int(np.count_nonzero(mine)), bool)
        else:
            carry = carries[n]
            syncs = carry.syncs(ts[cs == gate.sync_input - 1])
            inside = in_windows(ts[mine], syncs, gate.open_ps, gate.close_ps)
            if ts.size:
                carry.keep_after(syncs, int(ts[-1]))
        passes[mine] &= np.where(inside, gate.inside, gate.outside)
    return ts[passes], cs[passes]
