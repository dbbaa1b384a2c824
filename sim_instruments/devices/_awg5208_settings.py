"""The AWG5208 emulator's per-channel settings beyond amplitude, offset, skew and output.

Commands from the Tektronix AWG5200 Series Programmer Manual (077-1337-xx), as the QCoDeS
driver (`TektronixAWG70000Base`, `Tektronix70000AWGChannel`) reads and sets them: marker
levels (``SOURce<n>:MARKer<m>:VOLTage[:LEVel][:IMMediate]:HIGH|LOW``), marker and analog
output in the waiting-for-trigger and stopped states (``OUTPut<n>:WVALue...``,
``OUTPut<n>:SVALue...``), the DAC resolution (``SOURce<n>:DAC:RESolution``), the function
generator (``FGEN[:CHANnel<n>]:...``), the external clock frequency
(``CLOCk:ECLock:FREQuency``), ``OUTPut:OFF`` (all outputs off), ``SOURce<n>:JUMP:FORCe`` and
``TRIGger[:SEQuence][:IMMediate] ATRigger|BTRigger``.

Enumerated replies are the manual's short forms (``FIRS``, ``ZERO``, ``LOW``, ``SQU``...),
numbers NR3. These settings are state only: the function generator is not synthesised and
the marker levels do not enter the timing model (the marker edges are logic edges).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .scpi import (
    SUFFIX_OUT_OF_RANGE,
    Args,
    ScpiError,
    command,
    fmt,
    mnemonics,
)

N_CHANNELS = 8
N_MARKERS = 4
MARKER_HIGH_RANGE = (-0.5, 1.75)
"""V: marker high level (AWG5208; the same limits QCoDeS validates)."""
MARKER_LOW_RANGE = (-0.3, 1.55)
"""V: marker low level."""
DAC_RESOLUTIONS = (12, 13, 14, 15, 16)
"""bits: 12 bits leave 4 markers, each bit more takes one marker away; 16 bits none."""
FGEN_MAX_AMPLITUDE = 1.5
"""V peak-to-peak."""
FGEN_FREQUENCY_RANGE = (1.0, 12.5e9)
"""Hz (sine and square; other shapes stop at half, which is not enforced here)."""
FGEN_MAX_OFFSET = 0.25
"""V, also the DC level range (+-)."""
EXTERNAL_CLOCK_RANGE = (2.5e9, 12.5e9)
"""Hz accepted for CLOCk:ECLock:FREQuency (the emulator does not lock to anything)."""
MAX_SEQUENCE_STEP = 16383

_WAIT_ANALOG = mnemonics("FIRSt", "ZERO")
_WAIT_MARKER = mnemonics("FIRSt", "LOW", "HIGH")
_STOP_MARKER = mnemonics("OFF", "LOW")
_FGEN_PATHS = mnemonics("DCHB", "DCHV", "ACDirect")
_FGEN_TYPES = {
    **mnemonics("SINE", "SQUare", "TRIangle", "NOISe", "DC", "GAUSsian", "EXPRise",
                "EXPDecay", "NONE"),
    # QCoDeS sends GAUSS for GAUSSIAN (its val_mapping); accepted as the instrument's GAUS.
    "GAUSS": "GAUS",
}
_TRIGGERS = mnemonics("ATRigger", "BTRigger")
_SOURCE = re.compile(r"(?:^|:)SOUR(?:CE)?(\d*):", re.IGNORECASE)
_OUTPUT = re.compile(r"(?:^|:)OUTP(?:UT)?(\d*):", re.IGNORECASE)


def _channel(suffix: int) -> int:
    if not 1 <= suffix <= N_CHANNELS:
        raise ScpiError(SUFFIX_OUT_OF_RANGE, f"channel {suffix} (1..{N_CHANNELS})")
    return suffix - 1


def _marker(suffix: int) -> int:
    if not 1 <= suffix <= N_MARKERS:
        raise ScpiError(SUFFIX_OUT_OF_RANGE, f"marker {suffix} (1..{N_MARKERS})")
    return suffix - 1


@dataclass
class ChannelSettings:
    """One channel's settings (*RST values from the programmer manual)."""

    marker_high: list[float] = field(default_factory=lambda: [1.0] * N_MARKERS)
    """V"""
    marker_low: list[float] = field(default_factory=lambda: [0.0] * N_MARKERS)
    """V"""
    wait_marker: list[str] = field(default_factory=lambda: ["LOW"] * N_MARKERS)
    stop_marker: list[str] = field(default_factory=lambda: ["LOW"] * N_MARKERS)
    wait_analog: str = "ZERO"
    resolution: int = 12
    fgen_amplitude: float = 0.5
    """V peak-to-peak"""
    fgen_offset: float = 0.0
    """V"""
    fgen_frequency: float = 1e6
    """Hz"""
    fgen_dclevel: float = 0.0
    """V"""
    fgen_path: str = "DCHB"
    fgen_phase: float = 0.0
    """degrees"""
    fgen_symmetry: float = 100.0
    """%"""
    fgen_type: str = "SINE"

    @property
    def n_markers(self) -> int:
        """Markers the present DAC resolution leaves (manual, SOURce:DAC:RESolution)."""
        return 16 - self.resolution


class ChannelSettingsMixin:
    """Commands of `ChannelSettings`, for `TektronixAWG5208Emulator` (which calls
    `reset_settings` from its *RST)."""

    settings: list[ChannelSettings]
    external_clock_hz: float
    all_outputs_off: bool
    jumps: list[int]
    """Forced jumps (target steps), in order; the sequencer does not act on them."""
    triggers: list[str]
    """Forced trigger events (``ATR``/``BTR``), in order."""

    def reset_settings(self) -> None:
        self.settings = [ChannelSettings() for _ in range(N_CHANNELS)]
        self.external_clock_hz = 2.5e9
        self.all_outputs_off = False
        self.jumps = []
        self.triggers = []

    def _ch(self, suffix: int) -> ChannelSettings:
        return self.settings[_channel(suffix)]

    # The engine passes a handler the last numeric suffix of its header (the marker here);
    # the emulator keeps the header it is dispatching in `_header`, where the channel's is.
    def _source_suffix(self) -> int:
        m = _SOURCE.search(getattr(self, "_header", ""))
        return int(m.group(1)) if m and m.group(1) else 1

    def _output_suffix(self) -> int:
        m = _OUTPUT.search(getattr(self, "_header", ""))
        return int(m.group(1)) if m and m.group(1) else 1

    # -- markers --------------------------------------------------------------------------------
    @command("[SOURce<n>]:MARKer<m>:VOLTage[:LEVel][:IMMediate]:HIGH")
    def _set_marker_high(self, args: Args, suffix: int) -> None:
        ch = self._ch(self._source_suffix())
        ch.marker_high[_marker(suffix)] = args.number(
            low=MARKER_HIGH_RANGE[0], high=MARKER_HIGH_RANGE[1], units=("V", "MV"))

    @command("[SOURce<n>]:MARKer<m>:VOLTage[:LEVel][:IMMediate]:HIGH", query=True)
    def _marker_high(self, args: Args, suffix: int) -> str:
        return fmt(self._ch(self._source_suffix()).marker_high[_marker(suffix)])

    @command("[SOURce<n>]:MARKer<m>:VOLTage[:LEVel][:IMMediate]:LOW")
    def _set_marker_low(self, args: Args, suffix: int) -> None:
        ch = self._ch(self._source_suffix())
        ch.marker_low[_marker(suffix)] = args.number(
            low=MARKER_LOW_RANGE[0], high=MARKER_LOW_RANGE[1], units=("V", "MV"))

    @command("[SOURce<n>]:MARKer<m>:VOLTage[:LEVel][:IMMediate]:LOW", query=True)
    def _marker_low(self, args: Args, suffix: int) -> str:
        return fmt(self._ch(self._source_suffix()).marker_low[_marker(suffix)])

    @command("OUTPut<n>:WVALue:MARKer<m>")
    def _set_wait_marker(self, args: Args, suffix: int) -> None:
        self._ch(self._output_suffix()).wait_marker[_marker(suffix)] = args.choice(
            0, _WAIT_MARKER)

    @command("OUTPut<n>:WVALue:MARKer<m>", query=True)
    def _wait_marker(self, args: Args, suffix: int) -> str:
        return self._ch(self._output_suffix()).wait_marker[_marker(suffix)]

    @command("OUTPut<n>:SVALue:MARKer<m>")
    def _set_stop_marker(self, args: Args, suffix: int) -> None:
        self._ch(self._output_suffix()).stop_marker[_marker(suffix)] = args.choice(
            0, _STOP_MARKER)

    @command("OUTPut<n>:SVALue:MARKer<m>", query=True)
    def _stop_marker(self, args: Args, suffix: int) -> str:
        return self._ch(self._output_suffix()).stop_marker[_marker(suffix)]

    @command("OUTPut<n>:WVALue[:ANALog][:STATe]")
    def _set_wait_analog(self, args: Args, suffix: int) -> None:
        self._ch(suffix).wait_analog = args.choice(0, _WAIT_ANALOG)

    @command("OUTPut<n>:WVALue[:ANALog][:STATe]", query=True)
    def _wait_analog(self, args: Args, suffix: int) -> str:
        return self._ch(suffix).wait_analog

    @command("[SOURce<n>]:DAC:RESolution")
    def _set_resolution(self, args: Args, suffix: int = 1) -> None:
        bits = args.integer(low=DAC_RESOLUTIONS[0], high=DAC_RESOLUTIONS[-1])
        self._ch(suffix).resolution = bits

    @command("[SOURce<n>]:DAC:RESolution", query=True)
    def _resolution(self, args: Args, suffix: int = 1) -> str:
        return str(self._ch(suffix).resolution)

    # -- function generator -------------------------------------------------------------------
    @command("FGEN[:CHANnel<n>]:AMPLitude[:VOLTage]")
    def _set_fgen_amplitude(self, args: Args, suffix: int = 1) -> None:
        self._ch(suffix).fgen_amplitude = args.number(low=0.0, high=FGEN_MAX_AMPLITUDE,
                                                      units=("V", "MV"))

    @command("FGEN[:CHANnel<n>]:AMPLitude[:VOLTage]", query=True)
    def _fgen_amplitude(self, args: Args, suffix: int = 1) -> str:
        return fmt(self._ch(suffix).fgen_amplitude)

    @command("FGEN[:CHANnel<n>]:OFFSet")
    def _set_fgen_offset(self, args: Args, suffix: int = 1) -> None:
        self._ch(suffix).fgen_offset = args.number(low=-FGEN_MAX_OFFSET, high=FGEN_MAX_OFFSET,
                                                   units=("V", "MV"))

    @command("FGEN[:CHANnel<n>]:OFFSet", query=True)
    def _fgen_offset(self, args: Args, suffix: int = 1) -> str:
        return fmt(self._ch(suffix).fgen_offset)

    @command("FGEN[:CHANnel<n>]:FREQuency")
    def _set_fgen_frequency(self, args: Args, suffix: int = 1) -> None:
        self._ch(suffix).fgen_frequency = args.number(
            low=FGEN_FREQUENCY_RANGE[0], high=FGEN_FREQUENCY_RANGE[1],
            units=("HZ", "KHZ", "MHZ", "GHZ"))

    @command("FGEN[:CHANnel<n>]:FREQuency", query=True)
    def _fgen_frequency(self, args: Args, suffix: int = 1) -> str:
        return fmt(self._ch(suffix).fgen_frequency)

    @command("FGEN[:CHANnel<n>]:PERiod", query=True)
    def _fgen_period(self, args: Args, suffix: int = 1) -> str:
        return fmt(1.0 / self._ch(suffix).fgen_frequency)

    @command("FGEN[:CHANnel<n>]:DCLevel")
    def _set_fgen_dclevel(self, args: Args, suffix: int = 1) -> None:
        self._ch(suffix).fgen_dclevel = args.number(low=-FGEN_MAX_OFFSET,
                                                    high=FGEN_MAX_OFFSET, units=("V", "MV"))

    @command("FGEN[:CHANnel<n>]:DCLevel", query=True)
    def _fgen_dclevel(self, args: Args, suffix: int = 1) -> str:
        return fmt(self._ch(suffix).fgen_dclevel)

    @command("FGEN[:CHANnel<n>]:PATH")
    def _set_fgen_path(self, args: Args, suffix: int = 1) -> None:
        self._ch(suffix).fgen_path = args.choice(0, _FGEN_PATHS)

    @command("FGEN[:CHANnel<n>]:PATH", query=True)
    def _fgen_path(self, args: Args, suffix: int = 1) -> str:
        return self._ch(suffix).fgen_path

    @command("FGEN[:CHANnel<n>]:PHASe")
    def _set_fgen_phase(self, args: Args, suffix: int = 1) -> None:
        self._ch(suffix).fgen_phase = args.number(low=-180.0, high=180.0, units=("DEG",))

    @command("FGEN[:CHANnel<n>]:PHASe", query=True)
    def _fgen_phase(self, args: Args, suffix: int = 1) -> str:
        return fmt(self._ch(suffix).fgen_phase)

    @command("FGEN[:CHANnel<n>]:SYMMetry")
    def _set_fgen_symmetry(self, args: Args, suffix: int = 1) -> None:
        self._ch(suffix).fgen_symmetry = args.number(low=0.0, high=100.0, units=("PCT",))

    @command("FGEN[:CHANnel<n>]:SYMMetry", query=True)
    def _fgen_symmetry(self, args: Args, suffix: int = 1) -> str:
        return fmt(self._ch(suffix).fgen_symmetry)

    @command("FGEN[:CHANnel<n>]:TYPE")
    def _set_fgen_type(self, args: Args, suffix: int = 1) -> None:
        self._ch(suffix).fgen_type = args.choice(0, _FGEN_TYPES)

    @command("FGEN[:CHANnel<n>]:TYPE", query=True)
    def _fgen_type(self, args: Args, suffix: int = 1) -> str:
        return self._ch(suffix).fgen_type

    # -- instrument-wide ------------------------------------------------------------------------
    @command("CLOCk:ECLock:FREQuency")
    def _set_external_clock(self, args: Args) -> None:
        self.external_clock_hz = args.number(
            low=EXTERNAL_CLOCK_RANGE[0], high=EXTERNAL_CLOCK_RANGE[1],
            units=("HZ", "KHZ", "MHZ", "GHZ"))

    @command("CLOCk:ECLock:FREQuency", query=True)
    def _external_clock(self, args: Args) -> str:
        return fmt(self.external_clock_hz)

    @command("OUTPut:OFF")
    def _set_all_off(self, args: Args) -> None:
        self.all_outputs_off = args.boolean()

    @command("OUTPut:OFF", query=True)
    def _all_off(self, args: Args) -> str:
        return "1" if self.all_outputs_off else "0"

    @command("[SOURce<n>]:JUMP:FORCe")
    def _force_jump(self, args: Args, suffix: int = 1) -> None:
        _channel(suffix)
        step = args.text().upper()
        if step not in ("FIRS", "FIRST", "CURR", "CURRENT", "LAST", "END"):
            args.integer(low=1, high=MAX_SEQUENCE_STEP)
        self.jumps.append(int(step) if step.isdigit() else 0)

    @command("TRIGger[:SEQuence][:IMMediate]")
    def _force_trigger(self, args: Args) -> None:
        self.triggers.append(args.choice(0, _TRIGGERS))

