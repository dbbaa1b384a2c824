"""The simulated link as the station's time tagger twin sees it: `LinkEvents`.

An `EventSource` for the ID1000 emulator built from ``qnetlab.simulation.link``
(`link_config`): the tagger's ``sync_input`` gets one edge per round of the attempt clock,
its ``detector_inputs`` the clicks of the SNSPD twins cabled to them (``qnetlab.wiring``),
drawn by `physics.link_clicks.LinkClicks` with each SNSPD's efficiency and background click
rate (dark counts and stray light) at its CURRENT bias, read from the SIM900 twin as each
block of attempts is drawn: an SNSPD left unbiased sees nothing. Other inputs keep the
bench's events (`wiring.BenchEvents`: AWG markers, ...). The tagger model then adds its
hidden delays, jitter and dead time as for any source.

Recordings: the attempt clock starts with each recording (round 0's sync edge at recording
time 0, attempt ids = sync count from the start of the recording, as the herald engine
counts them) and each recording is a fresh draw (seeded by the recording's number). A counter
reading (``INPUt<n>:COUNter?``) draws its own stream and writes no truth.

Gating: when a recording starts with a detector input gated to windows after the link's
sync input (``TSCO<n>:WIND``, `devices.idq_tsco`), its dark counts and noise photons are
drawn only inside those windows, taken back from tagger time to the link's time (each
input's delay off) and widened by the tagger's jitter (12 sigma) and, before the window, its
dead time (a click just before the window still masks one inside): the tagger then drops
what falls outside exactly, and the clicks inside are the same process as when drawn
everywhere, for a fraction window / round period of the CPU (`physics.gating`). Neglected:
a click masked by dead time that would itself have masked one inside (both within 3 ns
before the window: ~4e-7 per window at 0.2 MHz).

Ground truth: with ``truth_file`` set, each recording REPLACES that file with its own truth,
`TWIN_TRUTH_DTYPE` rows in attempt order, as a ``.npy`` whose row count in the header is
updated after every append (about every second of recording, and at its end): a killed run
keeps what was written; `read_twin_truth` reads it (np.load does too). ``sync_ps`` there is
the attempt's first sync edge plus that input's delays (hidden + user), i.e. the tag's time
without its few-ps jitter. Only attempts whose true windows ended before the recording
reached its end (or RECord:STOP) have rows.
"""

from __future__ import annotations

import ast
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from .physics.link_clicks import BLOCK_ATTEMPTS, TWIN_TRUTH_DTYPE, GateWindows, LinkClicks
from .physics.link_physics import DetectorState

if TYPE_CHECKING:
    from qnetlab.instruments.lab_config import LabConfig

    from .devices.idq_id1000 import EventSource, IDQuantiqueID1000Emulator
    from .devices.scpi import ScpiDevice
    from .devices.srs_sim900_quantum_opus import SIM900QuantumOpusEmulator
    from .link_config import LinkSpec
    from .wiring import BenchEvents

__all__ = ["TWIN_TRUTH_DTYPE", "LinkEvents", "TruthWriter", "attach_link", "read_twin_truth"]

TRUTH_FLUSH_PS = 2 * 10**11
"""Recording time between appends to the truth file (0.2 s): a killed run loses at most this
(a bring-up's 40 pairs can all fall within one second)."""

_RECORDING, _COUNTER = 0, 1
"""Stream kinds in the generators' seeds."""


# -- the truth file ---------------------------------------------------------------------------
_MAGIC = b"\x93NUMPY\x01\x00"
_COUNT_WIDTH = 20


def _header(rows: int) -> bytes:
    """A version 1.0 .npy header of fixed length for `rows` TWIN_TRUTH_DTYPE rows."""
    descr = np.lib.format.dtype_to_descr(TWIN_TRUTH_DTYPE)
    text = (f"{{'descr': {descr!r}, 'fortran_order': False, "
            f"'shape': ({rows:{_COUNT_WIDTH}d},), }}")
    total = len(_MAGIC) + 2 + len(text) + 1
    text += " " * (-total % 64) + "\n"  # numpy pads headers to 64 bytes
    return _MAGIC + len(text).to_bytes(2, "little") + text.encode("latin1")


class TruthWriter:
    """An .npy file of TWIN_TRUTH_DTYPE rows that grows by appends (header count rewritten
    in place after each, so the file is always a valid array of what was written)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = open(path, "w+b")  # noqa: SIM115 (closed in close())
        self._file.write(_header(0))
        self._file.flush()

    def append(self, rows: np.ndarray) -> None:
        if self._file is None:
            raise ValueError(f"the truth file {self.path} is closed")
        if rows.size == 0:
            return
        self._file.seek(0, os.SEEK_END)
        self._file.write(np.ascontiguousarray(rows, TWIN_TRUTH_DTYPE).tobytes())
        self._file.flush()  # the rows before the count that announces them
        self.rows += rows.size
        self._file.seek(0)
        self._file.write(_header(self.rows))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_twin_truth(path: str | Path) -> np.ndarray:
    """The twin's ground truth of its latest recording (`TWIN_TRUTH_DTYPE`, attempt order).

    FileNotFoundError if there is none (no recording yet, or no ``truth_file`` in the
    simulation's link section); ValueError if the file holds something else."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no twin truth at {path}: the station's tagger twin writes it during a recording "
            "when qnetlab.simulation.link.truth_file names it (sim profile only)")
    truth = np.load(path, allow_pickle=False)
    if truth.dtype != TWIN_TRUTH_DTYPE or truth.ndim != 1:
        raise ValueError(f"{path} holds {truth.dtype} with shape {truth.shape}, not the twin's "
                         f"truth ({TWIN_TRUTH_DTYPE})")
    return truth


def _check_header_parses() -> None:
    """The fixed-width header must stay a Python literal (numpy reads it with literal_eval)."""
    ast.literal_eval(_header(0)[10:].decode("latin1"))


_check_header_parses()


# -- the event source -------------------------------------------------------------------------
@dataclass
class LinkEvents:
    """The ID1000 twin's `EventSource` of a station with a simulated link (module docstring).

    `detectors`: tagger input -> (SIM900 twin, slot) for both ``detector_inputs``;
    `fallback`: the bench's events for every other input (None: nothing there).
    """

    spec: LinkSpec
    tagger: IDQuantiqueID1000Emulator
    detectors: dict[int, tuple[SIM900QuantumOpusEmulator, int]]
    fallback: EventSource | None = None
    _recordings: int = 0
    _counts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def detector_state(self) -> DetectorState:
        """(efficiency, background click rate Hz) of detector 0 and 1 at their bias now."""
        out = []
        for n in self.spec.detector_inputs:
            sim900, slot = self.detectors[n]
            module = sim900.module(slot)
            module.settle()
            efficiency = 0.0 if module.latched else module.model.detection_efficiency(
                module.bias)
            # dark counts and whatever light of the bench reaches it; 0 while latched
            out.append((efficiency, sim900.click_rate(slot)))
        return out[0], out[1]

    def truth_window_centres(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """The station engine's windows (``herald_windows_ps``, tagger time after the sync tag)
        in the link's physical time after the round's emission: each detector input's delay
        (hidden and user) relative to the sync input's taken off. None without them."""
        windows = self.spec.herald_windows_ps
        if windows is None:
            return None
        user = self.tagger.user_delays_ps()

        def delay(n: int) -> int:
            return int(self.tagger.model.channels[n - 1].delay_ps + user[n])

        sync = delay(self.spec.sync_input)
        rows = [tuple(c - (delay(n) - sync) for c in windows[d])
                for d, n in enumerate(self.spec.detector_inputs)]
        return (int(rows[0][0]), int(rows[0][1])), (int(rows[1][0]), int(rows[1][1]))

    def gate_windows(self) -> GateWindows | None:
        """Each detector's gate (module docstring) in the link's time after the round's
        emission, widened by the tagger's jitter and dead time; None where a detector is not
        gated to the sync input's windows, or its window (widened) spans a whole round."""
        from .devices.scpi import ScpiError

        tagger, spec = self.tagger, self.spec
        with tagger.lock:
            try:
                gates = tagger.stream_gates(list(spec.detector_inputs))
            except ScpiError:  # not a window the twin gates by: nothing to save
                return None
            model = tagger.tagging_model()
            user = tagger.user_delays_ps()
        sync = model.channels[spec.sync_input - 1]
        period = spec.physics.round_period_ps
        out: list[tuple[int, int] | None] = []
        for n in spec.detector_inputs:
            gate = gates.get(n)
            if gate is None or not gate.is_window or gate.sync_input != spec.sync_input:
                out.append(None)
                continue
            channel = model.channels[n - 1]
            skew = channel.delay_ps + user[n] - sync.delay_ps - user[spec.sync_input]
            spread = math.ceil(12.0 * math.hypot(channel.jitter_rms_ps, sync.jitter_rms_ps)
                               ) + 2 * model.resolution_ps + 1
            a = gate.open_ps - skew - spread - math.ceil(channel.dead_time_ps)
            b = gate.close_ps - skew + spread
            out.append((a, b) if b - a < period else None)
        return None if out == [None, None] else (out[0], out[1])

    def events(self, inputs: Sequence[int], start_ps: int, stop_ps: int,
               rng: np.random.Generator) -> dict[int, np.ndarray]:
        """Events outside a recording (the counter): a fresh stream, no truth."""
        with self._lock:
            self._counts += 1
            number = self._counts
        return _LinkRecording(self, (_COUNTER, number), stop_ps, None).events(
            inputs, start_ps, stop_ps, rng)

    def open_recording(self, duration_ps: int) -> _LinkRecording:
        """The events of one recording of `duration_ps` (called by the emulator at
        RECord:PLAY); its `finish` writes the last truth."""
        with self._lock:
            number = self._recordings
            self._recordings += 1
        truth = TruthWriter(self.spec.truth_file) if self.spec.truth_file else None
        return _LinkRecording(self, (_RECORDING, number), duration_ps, truth,
                              gate=self.gate_windows())


class _LinkRecording:
    """The events and truth of one recording (or one counter reading)."""

    def __init__(self, source: LinkEvents, stream: tuple[int, int], stop_ps: int,
                 writer: TruthWriter | None, gate: GateWindows | None = None) -> None:
        self.source = source
        self.writer = writer
        self.state = source.detector_state()
        """The SNSPDs' state, read once per events() call (blocks drawn then use it)."""
        self.clicks = LinkClicks(source.spec.physics, stream, lambda: self.state, stop_ps,
                                 window_centres_ps=source.truth_window_centres(),
                                 gate_ps=gate)
        self._done = 0
        """Attempts whose truth has been computed."""
        self._pending: list[np.ndarray] = []
        self._flushed_at = 0
        self._reached = 0

    def events(self, inputs: Sequence[int], start_ps: int, stop_ps: int,
               rng: np.random.Generator) -> dict[int, np.ndarray]:
        spec = self.source.spec
        self.state = self.source.detector_state()
        out: dict[int, np.ndarray] = {}
        others = []
        for n in inputs:
            if n == spec.sync_input:
                out[n] = self.clicks.sync_times(start_ps, stop_ps)
            elif n in spec.detector_inputs:
                out[n] = self.clicks.detector_clicks(spec.detector_inputs.index(n), start_ps,
                                                     stop_ps)
            else:
                others.append(n)
        if others and self.source.fallback is not None:
            out.update(self.source.fallback.events(others, start_ps, stop_ps, rng))
        for n in others:
            out.setdefault(n, np.empty(0, np.int64))
        self._reached = max(self._reached, stop_ps)
        if self.writer is not None:
            self._advance_truth(force=False)
        # keep the blocks the truth still needs (its attempts' windows) and the next chunk's
        keep = start_ps
        if self.writer is not None:
            keep = min(keep, self._done * spec.physics.attempt_period_ps)
        self.clicks.forget_before(keep)
        return out

    def _advance_truth(self, *, force: bool) -> None:
        final = self.clicks.attempts_final_by(self._reached)
        if final - self._done >= BLOCK_ATTEMPTS or (force and final > self._done):
            rows = self.clicks.truth(self._done, final)
            sync = self.source.spec.sync_input
            delay = (self.source.tagger.model.channels[sync - 1].delay_ps
                     + self.source.tagger.user_delays_ps()[sync])
            rows["sync_ps"] += delay
            self._pending.append(rows)
            self._done = final
        if self.writer is not None and self._pending and (
                force or self._reached - self._flushed_at >= TRUTH_FLUSH_PS):
            self.writer.append(np.concatenate(self._pending))
            self._pending.clear()
            self._flushed_at = self._reached

    def finish(self, reached_ps: int) -> None:
        """The recording ended at `reached_ps` (its duration, or where RECord:STOP cut it):
        write the truth of every attempt decided by then and close the file."""
        if self.writer is None:
            return
        self._reached = min(self._reached, reached_ps) if self._reached else reached_ps
        try:
            self._advance_truth(force=True)
        finally:
            self.writer.close()


# -- wiring ------------------------------------------------------------------------------------
def attach_link(config: LabConfig, spec: LinkSpec, devices: dict[str, ScpiDevice],
                sources: dict[str, BenchEvents]) -> None:
    """Make the link's tagger twin's source a `LinkEvents` (called by `wiring.wire_taggers`
    once every cable is checked): its detector inputs must be cabled to SNSPD twins, its
    sync input to nothing (the attempt clock is the link's). ConfigError names the entry."""
    from .devices.idq_id1000 import IDQuantiqueID1000Emulator
    from .link_config import ENTRY

    taggers = [n for n, d in devices.items() if isinstance(d, IDQuantiqueID1000Emulator)]
    name = spec.tagger
    if name is None:
        if len(taggers) != 1:
            raise config.error(f"{ENTRY}.tagger", f"the link needs one time tagger twin; this "
                               f"lab has {len(taggers)} ({', '.join(taggers) or 'none'})",
                               "name it with 'tagger: <instrument>'")
        name = taggers[0]
    device = devices.get(name)
    if not isinstance(device, IDQuantiqueID1000Emulator):
        raise config.error(f"{ENTRY}.tagger", f"'{name}' is not a simulated time tagger "
                           "(idq_id1000)", "name the station's time tagger")
    bench = sources.get(name)
    wires = config.wiring.get(name, {})
    detectors = {}
    for n in spec.detector_inputs:
        if bench is None or n not in bench.detectors:
            found = f"cabled to {wires[n]}" if n in wires else "not cabled"
            raise config.error(f"{ENTRY}.detector_inputs", f"{name} input {n} is {found}; "
                               "the link's clicks come from an SNSPD twin",
                               f"add 'qnetlab.wiring.{name}.{n}: <snspd>.ch<slot>'")
        detectors[n] = bench.detectors[n]
    if spec.sync_input in wires:
        raise config.error(f"{ENTRY}.sync_input", f"{name} input {spec.sync_input} is cabled "
                           f"to {wires[spec.sync_input]}; the link's attempt clock needs an "
                           "input of its own", "choose a free input, or remove that cable")
    device.source = LinkEvents(spec, device, detectors, bench)
    device.chunk_s = spec.chunk_s
