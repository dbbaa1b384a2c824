"""The SENSe subsystem of the Keysight P9374A emulator: frequency, sweep, IF bandwidth and
averaging of channel 1 (Keysight Network Analyzer Help, SCPI Command Tree, SENSe:FREQuency,
SENSe:SWEep, SENSe:BANDwidth and SENSe:AVERage), and the stimulus they define.

`SenseMixin` is inherited by `keysight_p9374a.KeysightP9374AEmulator`, which holds the state
(set by its reset()) and sweeps; the SCPI engine collects the @command handlers over the MRO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .scpi import (
    SETTINGS_CONFLICT,
    SUFFIX_OUT_OF_RANGE,
    Args,
    ScpiError,
    command,
    fmt,
    mnemonics,
    no_argument,
)

MIN_FREQUENCY, MAX_FREQUENCY = 300e3, 20e9
"""Hz: the P9374A's stimulus range (300 kHz to 20 GHz)."""
MIN_IFBW, MAX_IFBW = 1.0, 15e6
MAX_POINTS = 100_001
MAX_AVERAGES = 65_536

# The PNA family's IF bandwidth steps: an unlisted value is rounded up to the next step.
_IFBW_STEPS = tuple(sorted(
    {m * 10.0**e for e in range(0, 8) for m in (1, 1.5, 2, 3, 5, 7)} - {1.5}
))
_IFBW_STEPS = tuple(v for v in _IFBW_STEPS if v <= MAX_IFBW)

_SWEEP_MODES = mnemonics("HOLD", "CONTinuous", "GROups", "SINGle")
_SWEEP_TYPES = mnemonics("LINear", "LOGarithmic", "POWer", "CW", "SEGMent", "PHASe")


def check_channel(suffix: int) -> None:
    """Only channel 1 exists: any other channel suffix is a -114 error."""
    if suffix != 1:
        raise ScpiError(SUFFIX_OUT_OF_RANGE, f"channel {suffix} (only channel 1 exists)")


class SenseMixin:
    """SENSe<ch> commands and the stimulus of one sweep."""

    # State set by KeysightP9374AEmulator.reset().
    start: float
    stop: float
    cw: float
    points: int
    if_bandwidth: float
    averaging: bool
    average_count: int
    sweep_mode: str
    sweep_type: str
    group_count: int
    sweep_time_auto: bool
    sweep_time_set: float

    if TYPE_CHECKING:
        # Provided by KeysightP9374AEmulator.
        def _clear_data(self) -> None: ...
        def _arm(self) -> None: ...

    # -- the stimulus ------------------------------------------------------------------------
    def frequencies(self) -> np.ndarray:
        """The stimulus frequencies of one sweep, Hz."""
        if self.sweep_type == "LIN":
            return np.linspace(self.start, self.stop, self.points)
        if self.sweep_type == "LOG":
            return np.geomspace(self.start, self.stop, self.points)
        return np.full(self.points, self.cw)  # CW time and power sweeps stay at cw

    @property
    def sweep_time(self) -> float:
        """One sweep, s: a point takes one IF period (1 / IF bandwidth)."""
        minimum = self.points / self.if_bandwidth
        return minimum if self.sweep_time_auto else max(minimum, self.sweep_time_set)

    def _settings_changed(self) -> None:
        # A changed stimulus invalidates the data and restarts averaging, as on the PNA.
        self._clear_data()

    # -- SENSe: frequency -------------------------------------------------------------------------
    def _frequency(self, args: Args) -> float:
        return args.number(low=MIN_FREQUENCY, high=MAX_FREQUENCY, default=1e9,
                           units=("HZ", "KHZ", "MHZ", "GHZ"))

    @command("SENSe<ch>:FREQuency:STARt")
    def _set_start(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self.start = self._frequency(args)
        self.stop = max(self.stop, self.start)
        self._settings_changed()

    @command("SENSe<ch>:FREQuency:STARt", query=True)
    def _get_start(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return fmt(self.start)

    @command("SENSe<ch>:FREQuency:STOP")
    def _set_stop(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self.stop = self._frequency(args)
        self.start = min(self.start, self.stop)
        self._settings_changed()

    @command("SENSe<ch>:FREQuency:STOP", query=True)
    def _get_stop(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return fmt(self.stop)

    @command("SENSe<ch>:FREQuency:CENTer")
    def _set_center(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        center, half = self._frequency(args), (self.stop - self.start) / 2
        # The span shrinks if it no longer fits around the new center.
        half = min(half, center - MIN_FREQUENCY, MAX_FREQUENCY - center)
        self.start, self.stop = center - half, center + half
        self._settings_changed()

    @command("SENSe<ch>:FREQuency:CENTer", query=True)
    def _get_center(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return fmt((self.start + self.stop) / 2)

    @command("SENSe<ch>:FREQuency:SPAN")
    def _set_span(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        span = args.number(low=0.0, high=MAX_FREQUENCY - MIN_FREQUENCY,
                           units=("HZ", "KHZ", "MHZ", "GHZ"))
        center = (self.start + self.stop) / 2
        half = min(span / 2, center - MIN_FREQUENCY, MAX_FREQUENCY - center)
        self.start, self.stop = center - half, center + half
        self._settings_changed()

    @command("SENSe<ch>:FREQuency:SPAN", query=True)
    def _get_span(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return fmt(self.stop - self.start)

    @command("SENSe<ch>:FREQuency:CW")
    @command("SENSe<ch>:FREQuency:FIXed")
    def _set_cw(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self.cw = self._frequency(args)
        self._settings_changed()

    @command("SENSe<ch>:FREQuency:CW", query=True)
    @command("SENSe<ch>:FREQuency:FIXed", query=True)
    def _get_cw(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return fmt(self.cw)

    # -- SENSe: sweep -----------------------------------------------------------------------------
    @command("SENSe<ch>:SWEep:POINts")
    def _set_points(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self.points = args.integer(low=1, high=MAX_POINTS)
        self._settings_changed()

    @command("SENSe<ch>:SWEep:POINts", query=True)
    def _get_points(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return str(self.points)

    @command("SENSe<ch>:SWEep:TIME")
    def _set_sweep_time(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self.sweep_time_set = args.number(low=0.0, high=86400.0, units=("S", "MS", "US"))
        self.sweep_time_auto = False

    @command("SENSe<ch>:SWEep:TIME", query=True)
    def _get_sweep_time(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return fmt(self.sweep_time)

    @command("SENSe<ch>:SWEep:TIME:AUTO")
    def _set_sweep_time_auto(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self.sweep_time_auto = args.boolean()

    @command("SENSe<ch>:SWEep:TIME:AUTO", query=True)
    def _get_sweep_time_auto(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return "1" if self.sweep_time_auto else "0"

    @command("SENSe<ch>:SWEep:MODE")
    def _set_sweep_mode(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self.sweep_mode = args.choice(0, _SWEEP_MODES)
        self._arm()

    @command("SENSe<ch>:SWEep:MODE", query=True)
    def _get_sweep_mode(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return self.sweep_mode

    @command("SENSe<ch>:SWEep:TYPE")
    def _set_sweep_type(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        kind = args.choice(0, _SWEEP_TYPES)
        if kind in ("SEGM", "PHAS"):
            # Segment sweeps need a segment table and phase sweeps a PNA-X source option;
            # this emulator has neither.
            raise ScpiError(SETTINGS_CONFLICT, f"{kind} sweep not available")
        self.sweep_type = kind
        self._settings_changed()

    @command("SENSe<ch>:SWEep:TYPE", query=True)
    def _get_sweep_type(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return self.sweep_type

    @command("SENSe<ch>:SWEep:GROups:COUNt")
    def _set_group_count(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self.group_count = args.integer(low=1, high=2_000_000)

    @command("SENSe<ch>:SWEep:GROups:COUNt", query=True)
    def _get_group_count(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return str(self.group_count)

    # -- SENSe: IF bandwidth and averaging ------------------------------------------------------
    @command("SENSe<ch>:BANDwidth[:RESolution]")
    @command("SENSe<ch>:BWIDth[:RESolution]")
    def _set_if_bandwidth(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        value = args.number(low=MIN_IFBW, high=MAX_IFBW, units=("HZ", "KHZ", "MHZ"))
        self.if_bandwidth = next(step for step in _IFBW_STEPS if step >= value * (1 - 1e-9))
        self._settings_changed()

    @command("SENSe<ch>:BANDwidth[:RESolution]", query=True)
    @command("SENSe<ch>:BWIDth[:RESolution]", query=True)
    def _get_if_bandwidth(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return fmt(self.if_bandwidth)

    @command("SENSe<ch>:AVERage[:STATe]")
    def _set_averaging(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self.averaging = args.boolean()
        self._clear_data()

    @command("SENSe<ch>:AVERage[:STATe]", query=True)
    def _get_averaging(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return "1" if self.averaging else "0"

    @command("SENSe<ch>:AVERage:COUNt")
    def _set_average_count(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self.average_count = args.integer(low=1, high=MAX_AVERAGES)
        self._clear_data()

    @command("SENSe<ch>:AVERage:COUNt", query=True)
    def _get_average_count(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return str(self.average_count)

    @command("SENSe<ch>:AVERage:CLEar")
    @no_argument
    def _clear_averages(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self._clear_data()
