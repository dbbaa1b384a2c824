"""Emulator of the Tektronix AWG5208 arbitrary waveform generator (8 channels, 4 markers each).

Speaks the SCPI of the Tektronix AWG5200 Series Programmer Manual that the QCoDeS driver
and the qnetlab `AWG` role use: the clock (CLOCk:SRATe, CLOCk:SOURce), per channel the
amplitude, offset, skew and output state (SOURce<n>:VOLTage[...], SOURce<n>:SKEW,
OUTPut<n>:STATe), the waveform list (WLISt:WAVeform:NEW, :DATA and :MARKer:DATA with IEEE
488.2 definite-length blocks, :LIST?, :DELete, the limits :LMAXimum?, :LMINimum?,
:GRANularity?), the sequence list (SLISt:SEQuence:NEW, :STEP<n>:TASSet<m>:WAVeform,
:STEP<n>:RCOunt, :DELete, SLISt:SIZE?, SLISt:NAME?), channel assets (SOURce<n>:CASSet...)
and AWGControl:RUN/STOP/RSTATe?. Errors go to the queue (SYSTem:ERRor?), including
SYSTem:ERRor:CODE? which the QCoDeS driver reads after a pre-delete; an empty queue reads
``0,"No error"`` (the manual's form, no sign). Every other setting the QCoDeS driver reads
or sets (marker levels, wait/stopped values, DAC resolution, the function generator, the
external clock frequency, OUTPut:OFF, forced jumps and triggers) is in
`._awg5208_settings`, so that ``snapshot(update=True)`` gets an answer to every query.

Deliberately left out: the file route of QCoDeS's uploads (MMEMory:DATA, MMEMory:OPEN,
MMEMory:OPEN:SASSet:SEQuence, MMEMory:DELete: the emulator has no disk, the list commands
above do the same), assigning a lone waveform (SOURce<n>:CASSet:WAVeform), event jumps
(SLISt:SEQuence:STEP<n>:EJUMp), triggered run modes (RSTATe? never reads 1, "waiting for
trigger") and function-generator output (FGEN settings are kept, nothing is synthesised).
Unknown commands queue -113 Undefined header and, for a query, send no reply.

Physics (`sim_instruments.physics.awg.AwgModel`): on RUN the assigned sequence is checked
by the model and starts at the world's present time; `marker_edges(run_duration_s)` gives
the rising-edge times of every marker (int64 ps, world time) over the first
`run_duration_s` of the run, with each channel's user skew (SOURce<n>:SKEW) plus a hidden
intrinsic skew drawn once per instrument from the world's generator: the output-path
differences a skew calibration must find. Nothing advances the clock.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

import numpy as np

from ..physics.awg import AwgModel, SequenceStep, Waveform
from ._awg5208_settings import ChannelSettingsMixin
from .scpi import (
    DATA_OUT_OF_RANGE,
    EXECUTION_ERROR,
    ILLEGAL_PARAMETER_VALUE,
    SETTINGS_CONFLICT,
    SUFFIX_OUT_OF_RANGE,
    Args,
    ScpiDevice,
    ScpiError,
    command,
    fmt,
    mnemonics,
    no_argument,
)

if TYPE_CHECKING:
    from ..physics.world import LabWorld

N_CHANNELS = 8
N_MARKERS = 4
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1.49e3, 2.5e9
"""Sa/s: the AWG5208's sample clock (2.5 GS/s standard), as QCoDeS's validator has it."""
MIN_AMPLITUDE, MAX_AMPLITUDE = 0.025, 1.5
"""V peak-to-peak (DC high-voltage path)."""
MAX_OFFSET = 2.0
"""V"""
MAX_SKEW = 2e-9
"""s"""
MIN_SAMPLES = 2400
"""The shortest waveform the sequencer plays, samples (the minimum QCoDeS also enforces)."""
INTRINSIC_SKEW_SPREAD_PS = 150.0
"""Standard deviation of the hidden per-channel output skew, ps."""
_STEP = re.compile(r"STEP(\d*):", re.IGNORECASE)
_BLOCK_TOKEN = "#BLOCK"
_BLOCK_START = re.compile(rb"#([1-9])")



_CLOCK_SOURCES = mnemonics("INTernal", "EFIXed", "EVARiable", "EXTernal")
_MODES = mnemonics("AWG", "FGEN")


def _channel(suffix: int) -> int:
    if not 1 <= suffix <= N_CHANNELS:
        raise ScpiError(SUFFIX_OUT_OF_RANGE, f"channel {suffix} (1..{N_CHANNELS})")
    return suffix


class _Wave:
    def __init__(self, size: int) -> None:
        self.samples = np.zeros(size)
        self.markers = np.zeros((N_MARKERS, size), dtype=bool)


class _Sequence:
    def __init__(self, steps: int, tracks: int) -> None:
        self.assets: list[list[str | None]] = [[None] * tracks for _ in range(steps)]
        self.repeats = [1] * steps


class TektronixAWG5208Emulator(ChannelSettingsMixin, ScpiDevice):
    identity = ("TEKTRONIX", "AWG5208", "B010000", "FV:6.3.0080.0")

    def __init__(self, world: LabWorld, name: str) -> None:
        rng = world.rng(name)
        # Drawn once for the instrument's life: the output paths do not change on *RST.
        skews = tuple(float(s) for s in rng.normal(0.0, INTRINSIC_SKEW_SPREAD_PS, N_CHANNELS))
        self.model = AwgModel(n_channels=N_CHANNELS, n_markers=N_MARKERS, skews_ps=skews)
        self.received: list[str] = []
        """Every program message, in order (tests spy on uploads with it)."""
        self._block: bytes | None = None
        self._header = ""
        super().__init__(world, name)

    def reset(self) -> None:
        self.sample_rate = 2.5e9
        self.clock_source = "INT"
        self.mode = "AWG"
        self.directory = "\\Users\\OEM\\Documents"
        self.amplitude = [0.5] * N_CHANNELS
        self.offset = [0.0] * N_CHANNELS
        self.skew = [0.0] * N_CHANNELS
        self.output = [False] * N_CHANNELS
        self.waveforms: dict[str, _Wave] = {}
        self.sequences: dict[str, _Sequence] = {}
        self.assigned: list[tuple[str, int] | None] = [None] * N_CHANNELS
        self.running = False
        self.run_start_ps = 0
        self._run_sequence: list[SequenceStep] = []
        self._run_skews_ps: dict[int, float] = {}
        self.reset_settings()

    def format_error(self, code: int, message: str) -> str:
        # AWG5200 programmer manual, SYSTem:ERRor[:NEXT]?: '0,"No error"', no sign.
        return f'{code},"{message}"'

    # -- binary blocks ------------------------------------------------------------------------
    def handle(self, message: str) -> str | bytes | None:
        """As `ScpiDevice.handle`, but a definite-length block in the message (its bytes
        arrive as latin-1 characters) is set aside and replaced by a token its command reads,
        so that commas, quotes or semicolons among its bytes are not parsed as SCPI."""
        self.received.append(message)
        raw = message.encode("latin-1", errors="replace")
        quote = 0
        for i, byte in enumerate(raw):
            if byte in b"\"'":
                quote = 0 if quote == byte else (quote or byte)
            elif byte == ord("#") and not quote and (m := _BLOCK_START.match(raw, i)):
                digits = int(m.group(1))
                try:
                    length = int(raw[i + 2:i + 2 + digits])
                except ValueError:
                    break
                start = i + 2 + digits
                self._block = raw[start:start + length]
                if len(self._block) != length:
                    self._block = None
                    self.push_error(-161, "Invalid block data; block shorter than its header")
                    return None
                rest = raw[start + length:].decode("latin-1")
                try:
                    return super().handle(raw[:i].decode("latin-1") + _BLOCK_TOKEN + rest)
                finally:
                    self._block = None
        return super().handle(message)

    def _take_block(self, args: Args, i: int) -> bytes:
        if len(args) <= i or args.params[i].strip() != _BLOCK_TOKEN or self._block is None:
            raise ScpiError((-160, "Block data error"), "expected a definite-length block")
        return self._block

    # -- run state and physics -----------------------------------------------------------------
    def _sequence_for_run(self) -> tuple[list[SequenceStep], dict[int, float]]:
        """The model's sequence from the channels' assets (model channels count from 0)."""
        assigned = {ch: a for ch, a in enumerate(self.assigned) if a is not None}
        if not assigned:
            raise ScpiError(SETTINGS_CONFLICT, "no waveform or sequence assigned to a channel")
        names = {seq for seq, _ in assigned.values()}
        if len(names) != 1:
            raise ScpiError(SETTINGS_CONFLICT, "channels play different sequences")
        seq = self.sequences.get(names.pop())
        if seq is None:
            raise ScpiError(EXECUTION_ERROR, "assigned sequence no longer exists")
        steps = []
        for k, (assets, repeat) in enumerate(zip(seq.assets, seq.repeats, strict=True), 1):
            waves: dict[int, Waveform] = {}
            for ch, (_, track) in assigned.items():
                name = assets[track - 1]
                if name is None or name not in self.waveforms:
                    raise ScpiError(EXECUTION_ERROR, f"step {k}, track {track} has no waveform")
                w = self.waveforms[name]
                waves[ch] = Waveform(w.samples, w.markers)
            steps.append(SequenceStep(waves, repeat))
        try:
            self.model.validate(steps)
        except ValueError as exc:
            raise ScpiError(EXECUTION_ERROR, str(exc)) from None
        skews = {ch: self.skew[ch] * 1e12 for ch in assigned}
        return steps, skews

    def marker_edges(self, run_duration_s: float) -> dict[tuple[int, int], np.ndarray]:
        """Rising-edge times (int64 ps, world time) of every marker of the channels playing,
        over the first `run_duration_s` of the present run; keys (channel from 1, marker
        from 1). Only channels whose output is on give edges, only markers the DAC
        resolution leaves. Empty when stopped."""
        if not self.running:
            return {}
        model = dataclasses.replace(self.model, sample_rate=self.sample_rate)
        edges = model.marker_edges(self._run_sequence, run_duration_s,
                                   start_ps=self.run_start_ps,
                                   user_skews_ps=self._run_skews_ps)
        # A marker gives edges while its channel's output is on (and OUTPut:OFF is not), and
        # only if the DAC resolution leaves it (12 bits: 4 markers, 13: 3, ...).
        return {(ch + 1, m + 1): t for (ch, m), t in edges.items()
                if self.output[ch] and not self.all_outputs_off
                and m < self.settings[ch].n_markers}

    @property
    def intrinsic_skews_s(self) -> tuple[float, ...]:
        """The hidden per-channel skews, s (for tests of a calibration, never for drivers)."""
        return tuple(s * 1e-12 for s in self.model.skews_ps)

    @command("AWGControl:RUN[:IMMediate]")
    @no_argument
    def _run(self, args: Args) -> None:
        self._run_sequence, self._run_skews_ps = self._sequence_for_run()
        self.run_start_ps = round(self.world.now() * 1e12)
        self.running = True

    @command("AWGControl:STOP[:IMMediate]")
    @no_argument
    def _stop(self, args: Args) -> None:
        self.running = False

    @command("AWGControl:RSTATe", query=True)
    def _run_state(self, args: Args) -> str:
        return "2" if self.running else "0"

    def _settings_locked(self) -> None:
        # A sequence that is playing cannot be replaced under it.
        if self.running:
            raise ScpiError(SETTINGS_CONFLICT, "stop the AWG first")

    # -- clock, mode, file system -----------------------------------------------------------
    @command("CLOCk:SRATe")
    def _set_rate(self, args: Args) -> None:
        self.sample_rate = args.number(low=MIN_SAMPLE_RATE, high=MAX_SAMPLE_RATE,
                                       units=("HZ", "KHZ", "MHZ", "GHZ"))

    @command("CLOCk:SRATe", query=True)
    def _rate(self, args: Args) -> str:
        return fmt(self.sample_rate)

    @command("CLOCk:SOURce")
    def _set_clock_source(self, args: Args) -> None:
        self.clock_source = args.choice(0, _CLOCK_SOURCES)

    @command("CLOCk:SOURce", query=True)
    def _clock_source(self, args: Args) -> str:
        return self.clock_source

    @command("INSTrument:MODE")
    def _set_mode(self, args: Args) -> None:
        self.mode = args.choice(0, _MODES)

    @command("INSTrument:MODE", query=True)
    def _mode(self, args: Args) -> str:
        return self.mode

    @command("MMEMory:CDIRectory")
    def _set_directory(self, args: Args) -> None:
        self.directory = args.text()

    @command("MMEMory:CDIRectory", query=True)
    def _directory(self, args: Args) -> str:
        return f'"{self.directory}"'

    @command("SYSTem:ERRor:CODE[:NEXT]", query=True)
    def _error_code(self, args: Args) -> str:
        return self.next_error().split(",", 1)[0]

    @command("SYSTem:ERRor:COUNt", query=True)
    def _error_count(self, args: Args) -> str:
        return str(len(self._errors))

    # -- channels ---------------------------------------------------------------------------
    @command("[SOURce<n>]:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    def _set_amplitude(self, args: Args, suffix: int = 1) -> None:
        self.amplitude[_channel(suffix) - 1] = args.number(
            low=MIN_AMPLITUDE, high=MAX_AMPLITUDE, units=("V", "MV"))

    @command("[SOURce<n>]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", query=True)
    def _amplitude(self, args: Args, suffix: int = 1) -> str:
        return fmt(self.amplitude[_channel(suffix) - 1])

    @command("[SOURce<n>]:VOLTage[:LEVel][:IMMediate]:OFFSet")
    def _set_offset(self, args: Args, suffix: int = 1) -> None:
        self.offset[_channel(suffix) - 1] = args.number(low=-MAX_OFFSET, high=MAX_OFFSET,
                                                        units=("V", "MV"))

    @command("[SOURce<n>]:VOLTage[:LEVel][:IMMediate]:OFFSet", query=True)
    def _offset(self, args: Args, suffix: int = 1) -> str:
        return fmt(self.offset[_channel(suffix) - 1])

    @command("[SOURce<n>]:SKEW")
    def _set_skew(self, args: Args, suffix: int = 1) -> None:
        self.skew[_channel(suffix) - 1] = args.number(low=-MAX_SKEW, high=MAX_SKEW,
                                                      units=("S", "NS", "PS"))

    @command("[SOURce<n>]:SKEW", query=True)
    def _skew(self, args: Args, suffix: int = 1) -> str:
        return fmt(self.skew[_channel(suffix) - 1])

    @command("OUTPut<n>[:STATe]")
    def _set_output(self, args: Args, suffix: int) -> None:
        self.output[_channel(suffix) - 1] = args.boolean()

    @command("OUTPut<n>[:STATe]", query=True)
    def _output(self, args: Args, suffix: int) -> str:
        return "1" if self.output[_channel(suffix) - 1] else "0"

    @command("[SOURce<n>]:CASSet:SEQuence")
    def _assign_sequence(self, args: Args, suffix: int = 1) -> None:
        ch = _channel(suffix)
        name, track = args.text(0), args.integer(1, low=1)
        seq = self.sequences.get(name)
        if seq is None:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"no sequence {name!r}")
        if track > len(seq.assets[0]):
            raise ScpiError(DATA_OUT_OF_RANGE, f"sequence {name!r} has no track {track}")
        self._settings_locked()
        self.assigned[ch - 1] = (name, track)

    @command("[SOURce<n>]:CASSet", query=True)
    def _asset(self, args: Args, suffix: int = 1) -> str:
        a = self.assigned[_channel(suffix) - 1]
        return f'"{a[0]},{a[1]}"' if a else '""'

    @command("[SOURce<n>]:CASSet:CLEar")
    @no_argument
    def _clear_asset(self, args: Args, suffix: int = 1) -> None:
        self._settings_locked()
        self.assigned[_channel(suffix) - 1] = None

    # -- waveform list --------------------------------------------------------------------------
    @command("WLISt:WAVeform:LMAXimum", query=True)
    def _max_length(self, args: Args) -> str:
        return str(self.model.memory_samples)

    @command("WLISt:WAVeform:LMINimum", query=True)
    def _min_length(self, args: Args) -> str:
        return str(MIN_SAMPLES)

    @command("WLISt:WAVeform:GRANularity", query=True)
    def _granularity(self, args: Args) -> str:
        return "1"

    @command("WLISt:WAVeform:NEW")
    def _new_waveform(self, args: Args) -> None:
        name = args.text(0)
        size = args.integer(1, low=MIN_SAMPLES, high=self.model.memory_samples)
        self.waveforms[name] = _Wave(size)

    def _wave_slice(self, args: Args) -> tuple[_Wave, int, int, bytes]:
        name = args.text(0)
        wave = self.waveforms.get(name)
        if wave is None:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"no waveform {name!r}")
        n = wave.samples.size
        if len(args) == 4:
            start = args.integer(1, low=0, high=n - 1)
            size = args.integer(2, low=1, high=n - start)
            return wave, start, size, self._take_block(args, 3)
        if len(args) == 2:
            return wave, 0, n, self._take_block(args, 1)
        raise ScpiError((-109, "Missing parameter"), "name[,start,size],block")

    @command("WLISt:WAVeform:DATA")
    def _waveform_data(self, args: Args) -> None:
        wave, start, size, block = self._wave_slice(args)
        if len(block) != 4 * size:
            raise ScpiError((-161, "Invalid block data"),
                            f"{len(block)} bytes for {size} float32 samples")
        data = np.frombuffer(block, dtype="<f4").astype(float)
        if not np.all(np.isfinite(data)) or np.max(np.abs(data)) > 1.0:
            raise ScpiError(DATA_OUT_OF_RANGE, "samples outside [-1, 1]")
        wave.samples[start:start + size] = data

    @command("WLISt:WAVeform:MARKer:DATA")
    def _marker_data(self, args: Args) -> None:
        wave, start, size, block = self._wave_slice(args)
        if len(block) != size:
            raise ScpiError((-161, "Invalid block data"), f"{len(block)} bytes for {size} "
                            "samples")
        bits = np.frombuffer(block, dtype=np.uint8)
        for m in range(N_MARKERS):  # marker m+1 in bit m
            wave.markers[m, start:start + size] = (bits >> m) & 1

    @command("WLISt:LIST", query=True)
    def _waveform_list(self, args: Args) -> str:
        return '"' + ",".join(self.waveforms) + '"'

    @command("WLISt:SIZE", query=True)
    def _waveform_count(self, args: Args) -> str:
        return str(len(self.waveforms))

    @command("WLISt:WAVeform:DELete")
    def _delete_waveform(self, args: Args) -> None:
        self._settings_locked()
        name = args.text()
        if name.upper() == "ALL":
            self.waveforms.clear()
        elif self.waveforms.pop(name, None) is None:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"no waveform {name!r}")

    # -- sequence list --------------------------------------------------------------------------
    @command("SLISt:SEQuence:NEW")
    def _new_sequence(self, args: Args) -> None:
        name = args.text(0)
        steps = args.integer(1, low=1, high=16383)
        tracks = args.integer(2, low=1, high=N_CHANNELS) if len(args) > 2 else 1
        self.sequences[name] = _Sequence(steps, tracks)

    def _sequence(self, args: Args, step: int) -> _Sequence:
        name = args.text(0)
        seq = self.sequences.get(name)
        if seq is None:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"no sequence {name!r}")
        if not 1 <= step <= len(seq.assets):
            raise ScpiError(SUFFIX_OUT_OF_RANGE, f"step {step} of {len(seq.assets)}")
        return seq

    def _dispatch(
        self, header: str, is_query: bool, rest: str, parent: list[str]
    ) -> tuple[str | bytes | None, list[str]]:
        # The engine passes a handler one numeric suffix (the last); STEP<n>:TASSet<m> has
        # two, so the header is kept for its handler to read the step number from.
        self._header = ":".join([*parent, header])
        return super()._dispatch(header, is_query, rest, parent)

    @command("SLISt:SEQuence:STEP<n>:TASSet<m>:WAVeform")
    def _step_waveform(self, args: Args, suffix: int) -> None:
        m = _STEP.search(self._header)
        step = int(m.group(1)) if m and m.group(1) else 1
        seq = self._sequence(args, step)
        if not 1 <= suffix <= len(seq.assets[0]):
            raise ScpiError(SUFFIX_OUT_OF_RANGE, f"track {suffix} of {len(seq.assets[0])}")
        name = args.text(1)
        if name not in self.waveforms:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"no waveform {name!r}")
        seq.assets[step - 1][suffix - 1] = name

    @command("SLISt:SEQuence:STEP<n>:RCOunt")
    def _step_repeat(self, args: Args, suffix: int) -> None:
        seq = self._sequence(args, suffix)
        word = args.text(1).upper()
        if word == "ONCE":
            count = 1
        elif word in ("INF", "INFINITE"):
            raise ScpiError(SETTINGS_CONFLICT, "infinite repeat is not emulated")
        else:
            count = args.integer(1, low=1, high=2**20)
        seq.repeats[suffix - 1] = count

    @command("SLISt:SIZE", query=True)
    def _sequence_count(self, args: Args) -> str:
        return str(len(self.sequences))

    @command("SLISt:NAME", query=True)
    def _sequence_name(self, args: Args) -> str:
        names = list(self.sequences)
        index = args.integer(0, low=1, high=max(len(names), 1))
        if index > len(names):
            raise ScpiError(DATA_OUT_OF_RANGE, "the sequence list is empty")
        return f'"{names[index - 1]}"'

    @command("SLISt:SEQuence:DELete")
    def _delete_sequence(self, args: Args) -> None:
        self._settings_locked()
        name = args.text()
        if name.upper() == "ALL":
            self.sequences.clear()
        elif self.sequences.pop(name, None) is None:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"no sequence {name!r}")
        self.assigned = [a if a and a[0] in self.sequences else None for a in self.assigned]
