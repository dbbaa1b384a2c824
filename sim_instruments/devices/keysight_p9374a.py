"""Emulator of the Keysight P9374A Streamline USB vector network analyzer (2 ports, 20 GHz).

The P937xA runs the PNA family's firmware, so it speaks the SCPI of the Keysight Network
Analyzer Help ("PNA/PNA-X/Streamline SCPI command reference", the SCPI Command Tree of
na.support.keysight.com/pna/help): measurements (CALCulate:PARameter), data formats and
transfer (CALCulate:FORMat, CALCulate:DATA?, FORMat), the stimulus (SENSe:FREQuency,
SENSe:SWEep, SENSe:BANDwidth, SENSe:AVERage, SOURce:POWer), triggering (TRIGger,
INITiate) and traces (DISPlay). Only channel 1 exists here; other channel numbers give a
-114 "Header suffix out of range". The window node of DISPlay:WINDow<w>:TRACe<t> is
optional here because the QCoDeS driver sends DISP:TRAC<t>:STAT; trace t shows measurement
number t. Replies are text, except CALCulate:DATA? after FORMat REAL,32|64: an IEEE 488.2
definite-length block, big-endian after FORMat:BORDer NORMal, little-endian after SWAPped.

Physics: port 1 sees the transducer's microwave mode (`LabWorld.mw_reflection`, the line
calibrated out); port 2 is left open, so S22 = 1 and S21 = S12 = 0. Every point carries
complex Gaussian receiver noise of standard deviation (E|n|^2)^(1/2) = ``vna_noise *
sqrt(IF bandwidth / 1 kHz)``, drawn from the instrument's own seeded generator; averaging N
sweeps divides it by sqrt(N). A triggered sweep takes points / IF bandwidth of virtual time
(or the sweep time set, if longer), which the world's clock advances by.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ._scpi import (
    ILLEGAL_PARAMETER_VALUE,
    SETTINGS_CONFLICT,
    SUFFIX_OUT_OF_RANGE,
    Args,
    ScpiDevice,
    ScpiError,
    command,
    definite_length_block,
    fmt,
    mnemonics,
    no_argument,
)

if TYPE_CHECKING:
    from ..physics.world import LabWorld

MIN_FREQUENCY, MAX_FREQUENCY = 300e3, 20e9
"""Hz: the P9374A's stimulus range (300 kHz to 20 GHz)."""
MIN_POWER, MAX_POWER = -43.0, 20.0
"""dBm: settable port power, as in the QCoDeS P9374A driver."""
MIN_IFBW, MAX_IFBW = 1.0, 15e6
MAX_POINTS = 100_001
MAX_AVERAGES = 65_536
REFERENCE_IFBW = 1e3
"""The IF bandwidth (Hz) at which `WorldSettings.vna_noise` is the trace noise."""
PORTS = 2
S_PARAMETERS = tuple(f"S{i}{j}" for i in (1, 2) for j in (1, 2))

# The PNA family's IF bandwidth steps: an unlisted value is rounded up to the next step.
_IFBW_STEPS = tuple(sorted(
    {m * 10.0**e for e in range(0, 8) for m in (1, 1.5, 2, 3, 5, 7)} - {1.5}
))
_IFBW_STEPS = tuple(v for v in _IFBW_STEPS if v <= MAX_IFBW)



_SWEEP_MODES = mnemonics("HOLD", "CONTinuous", "GROups", "SINGle")
_SWEEP_TYPES = mnemonics("LINear", "LOGarithmic", "POWer", "CW", "SEGMent", "PHASe")
_TRIGGER_SOURCES = mnemonics("EXTernal", "IMMediate", "MANual")
_FORMATS = mnemonics("MLINear", "MLOGarithmic", "PHASe", "UPHase", "IMAGinary", "REAL",
                      "POLar", "SMITh", "SWR", "GDELay")
_TWO_VALUE_FORMATS = ("POL", "SMIT")
_BYTE_ORDERS = mnemonics("NORMal", "SWAPped")
_DATA_KINDS = mnemonics("FDATa", "SDATa")


class _Measurement:
    """One measurement (a 'parameter' in PNA terms): a name, an S-parameter, its format."""

    def __init__(self, name: str, parameter: str) -> None:
        self.name = name
        self.parameter = parameter
        self.format = "MLOG"
        self.electrical_delay = 0.0
        self.displayed = True


def _s_parameter(args: Args, i: int) -> str:
    value = args.text(i).upper()
    if value not in S_PARAMETERS:
        raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"{value} is not an S-parameter of a "
                        f"{PORTS}-port analyzer")
    return value


def _channel(suffix: int) -> None:
    if suffix != 1:
        raise ScpiError(SUFFIX_OUT_OF_RANGE, f"channel {suffix} (only channel 1 exists)")


class KeysightP9374AEmulator(ScpiDevice):
    identity = ("Keysight Technologies", "P9374A", "MY00000001", "A.13.95.06")
    options = '"010"'  # the PNA family answers *OPT? with a quoted list; 010 = time domain

    def __init__(self, world: LabWorld, name: str) -> None:
        # One generator for the instrument's life: *RST must not replay the same noise.
        self._rng = world.rng(name)
        super().__init__(world, name)

    # -- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        """The instrument preset (*RST, SYSTem:PRESet): one S11 measurement on channel 1,
        sweeping the full frequency range continuously."""
        self.start = MIN_FREQUENCY
        self.stop = MAX_FREQUENCY
        self.cw = 1e9
        self.points = 201
        self.if_bandwidth = 100e3
        self.port_power = [0.0] * PORTS
        self.power_coupled = True
        self.output = True
        self.averaging = False
        self.average_count = 1
        self.sweep_mode = "CONT"
        self.sweep_type = "LIN"
        self.group_count = 1
        self.sweep_time_auto = True
        self.sweep_time_set = 0.0
        self.trigger_source = "IMM"
        self.data_format = "ASC"
        self.data_bits = 0
        self.byte_order = "NORM"
        self.measurements: dict[int, _Measurement] = {1: _Measurement("CH1_S11_1", "S11")}
        self.selected: int | None = 1
        self._clear_data()

    def _clear_data(self) -> None:
        # Per measurement number: the averaged complex trace and how many sweeps are in it.
        self._data: dict[int, np.ndarray] = {}
        self._averaged: dict[int, int] = {}

    def _measurement(self) -> _Measurement:
        if self.selected is None or self.selected not in self.measurements:
            raise ScpiError(SETTINGS_CONFLICT, "no measurement selected")
        return self.measurements[self.selected]

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

    @property
    def noise_sigma(self) -> float:
        """Complex noise of one sweep's points, (E|n|^2)^(1/2), linear."""
        return self.world.settings.vna_noise * math.sqrt(self.if_bandwidth / REFERENCE_IFBW)

    def _true_s(self, parameter: str, freqs: np.ndarray) -> np.ndarray:
        if not self.output:  # no stimulus: the receivers see only noise
            return np.zeros(freqs.size, complex)
        if parameter == "S11":
            return np.asarray(self.world.mw_reflection(freqs), complex)
        if parameter == "S22":  # port 2 is left open
            return np.ones(freqs.size, complex)
        return np.zeros(freqs.size, complex)  # nothing connects port 1 to port 2

    def _noise(self, rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
        scale = sigma / math.sqrt(2)  # per quadrature, so that E|n|^2 = sigma^2
        return rng.normal(0.0, scale, n) + 1j * rng.normal(0.0, scale, n)

    def take_sweeps(self, count: int, *, advance_time: bool = True) -> None:
        """Run `count` sweeps: every measurement's data is updated and, unless the sweeps
        ran in the background (continuous mode), lab time advances by their duration."""
        freqs = self.frequencies()
        rng = self._rng
        sigma = self.noise_sigma
        for number, meas in self.measurements.items():
            true = self._true_s(meas.parameter, freqs)
            if not self.averaging:
                self._data[number] = true + self._noise(rng, freqs.size, sigma)
                self._averaged[number] = 1
                continue
            have = self._averaged.get(number, 0)
            old = self._data.get(number)
            if old is None or old.size != freqs.size:
                have, old = 0, np.zeros(freqs.size, complex)
            # Until the count is reached the PNA keeps the plain mean of the sweeps so far;
            # the mean of k fresh sweeps has noise sigma / sqrt(k), so they are drawn at once.
            fresh = min(count, max(self.average_count - have, 0))
            if fresh:
                mean_new = true + self._noise(rng, freqs.size, sigma / math.sqrt(fresh))
                old = (have * old + fresh * mean_new) / (have + fresh)
                have += fresh
            # Past the count it is a running average: A <- A + (S - A) / count.
            for _ in range(count - fresh):
                sweep = true + self._noise(rng, freqs.size, sigma)
                old = old + (sweep - old) / self.average_count
            self._data[number] = old
            self._averaged[number] = have
        if advance_time:
            self.world.advance(count * self.sweep_time)

    def _trigger(self) -> None:
        """What a trigger does in the present sweep mode (one trigger = one sweep group)."""
        if self.sweep_mode == "SING":
            self.take_sweeps(1)
            self.sweep_mode = "HOLD"
        elif self.sweep_mode == "GRO":
            self.take_sweeps(self.group_count)
            self.sweep_mode = "HOLD"
        else:
            self.take_sweeps(1)

    def _arm(self) -> None:
        # With the internal (immediate) trigger a single or group sweep starts at once; with a
        # manual or external trigger it waits for INITiate (or for a trigger that never comes).
        if self.sweep_mode in ("SING", "GRO") and self.trigger_source == "IMM":
            self._trigger()

    def _settings_changed(self) -> None:
        # A changed stimulus invalidates the data and restarts averaging, as on the PNA.
        self._clear_data()

    # -- SENSe: frequency -------------------------------------------------------------------------
    def _frequency(self, args: Args) -> float:
        return args.number(low=MIN_FREQUENCY, high=MAX_FREQUENCY, default=1e9,
                           units=("HZ", "KHZ", "MHZ", "GHZ"))

    @command("SENSe<ch>:FREQuency:STARt")
    def _set_start(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self.start = self._frequency(args)
        self.stop = max(self.stop, self.start)
        self._settings_changed()

    @command("SENSe<ch>:FREQuency:STARt", query=True)
    def _get_start(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return fmt(self.start)

    @command("SENSe<ch>:FREQuency:STOP")
    def _set_stop(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self.stop = self._frequency(args)
        self.start = min(self.start, self.stop)
        self._settings_changed()

    @command("SENSe<ch>:FREQuency:STOP", query=True)
    def _get_stop(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return fmt(self.stop)

    @command("SENSe<ch>:FREQuency:CENTer")
    def _set_center(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        center, half = self._frequency(args), (self.stop - self.start) / 2
        # The span shrinks if it no longer fits around the new center.
        half = min(half, center - MIN_FREQUENCY, MAX_FREQUENCY - center)
        self.start, self.stop = center - half, center + half
        self._settings_changed()

    @command("SENSe<ch>:FREQuency:CENTer", query=True)
    def _get_center(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return fmt((self.start + self.stop) / 2)

    @command("SENSe<ch>:FREQuency:SPAN")
    def _set_span(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        span = args.number(low=0.0, high=MAX_FREQUENCY - MIN_FREQUENCY,
                           units=("HZ", "KHZ", "MHZ", "GHZ"))
        center = (self.start + self.stop) / 2
        half = min(span / 2, center - MIN_FREQUENCY, MAX_FREQUENCY - center)
        self.start, self.stop = center - half, center + half
        self._settings_changed()

    @command("SENSe<ch>:FREQuency:SPAN", query=True)
    def _get_span(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return fmt(self.stop - self.start)

    @command("SENSe<ch>:FREQuency:CW")
    @command("SENSe<ch>:FREQuency:FIXed")
    def _set_cw(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self.cw = self._frequency(args)
        self._settings_changed()

    @command("SENSe<ch>:FREQuency:CW", query=True)
    @command("SENSe<ch>:FREQuency:FIXed", query=True)
    def _get_cw(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return fmt(self.cw)

    # -- SENSe: sweep -----------------------------------------------------------------------------
    @command("SENSe<ch>:SWEep:POINts")
    def _set_points(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self.points = args.integer(low=1, high=MAX_POINTS)
        self._settings_changed()

    @command("SENSe<ch>:SWEep:POINts", query=True)
    def _get_points(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return str(self.points)

    @command("SENSe<ch>:SWEep:TIME")
    def _set_sweep_time(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self.sweep_time_set = args.number(low=0.0, high=86400.0, units=("S", "MS", "US"))
        self.sweep_time_auto = False

    @command("SENSe<ch>:SWEep:TIME", query=True)
    def _get_sweep_time(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return fmt(self.sweep_time)

    @command("SENSe<ch>:SWEep:TIME:AUTO")
    def _set_sweep_time_auto(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self.sweep_time_auto = args.boolean()

    @command("SENSe<ch>:SWEep:TIME:AUTO", query=True)
    def _get_sweep_time_auto(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return "1" if self.sweep_time_auto else "0"

    @command("SENSe<ch>:SWEep:MODE")
    def _set_sweep_mode(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self.sweep_mode = args.choice(0, _SWEEP_MODES)
        self._arm()

    @command("SENSe<ch>:SWEep:MODE", query=True)
    def _get_sweep_mode(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return self.sweep_mode

    @command("SENSe<ch>:SWEep:TYPE")
    def _set_sweep_type(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        kind = args.choice(0, _SWEEP_TYPES)
        if kind in ("SEGM", "PHAS"):
            # Segment sweeps need a segment table and phase sweeps a PNA-X source option;
            # this emulator has neither.
            raise ScpiError(SETTINGS_CONFLICT, f"{kind} sweep not available")
        self.sweep_type = kind
        self._settings_changed()

    @command("SENSe<ch>:SWEep:TYPE", query=True)
    def _get_sweep_type(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return self.sweep_type

    @command("SENSe<ch>:SWEep:GROups:COUNt")
    def _set_group_count(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self.group_count = args.integer(low=1, high=2_000_000)

    @command("SENSe<ch>:SWEep:GROups:COUNt", query=True)
    def _get_group_count(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return str(self.group_count)

    # -- SENSe: IF bandwidth and averaging ------------------------------------------------------
    @command("SENSe<ch>:BANDwidth[:RESolution]")
    @command("SENSe<ch>:BWIDth[:RESolution]")
    def _set_if_bandwidth(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        value = args.number(low=MIN_IFBW, high=MAX_IFBW, units=("HZ", "KHZ", "MHZ"))
        self.if_bandwidth = next(step for step in _IFBW_STEPS if step >= value * (1 - 1e-9))
        self._settings_changed()

    @command("SENSe<ch>:BANDwidth[:RESolution]", query=True)
    @command("SENSe<ch>:BWIDth[:RESolution]", query=True)
    def _get_if_bandwidth(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return fmt(self.if_bandwidth)

    @command("SENSe<ch>:AVERage[:STATe]")
    def _set_averaging(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self.averaging = args.boolean()
        self._clear_data()

    @command("SENSe<ch>:AVERage[:STATe]", query=True)
    def _get_averaging(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return "1" if self.averaging else "0"

    @command("SENSe<ch>:AVERage:COUNt")
    def _set_average_count(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self.average_count = args.integer(low=1, high=MAX_AVERAGES)
        self._clear_data()

    @command("SENSe<ch>:AVERage:COUNt", query=True)
    def _get_average_count(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return str(self.average_count)

    @command("SENSe<ch>:AVERage:CLEar")
    @no_argument
    def _clear_averages(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self._clear_data()

    # -- SOURce and OUTPut ----------------------------------------------------------------------
    @command("SOURce<ch>:POWer<port>[:LEVel][:IMMediate][:AMPLitude]")
    def _set_power(self, args: Args, suffix: int) -> None:
        # The engine hands over the last numeric suffix in the header: the port number.
        port = self._port(suffix)
        level = args.number(low=MIN_POWER, high=MAX_POWER, units=("DBM",))
        if self.power_coupled:
            self.port_power = [level] * PORTS
        else:
            self.port_power[port - 1] = level

    @command("SOURce<ch>:POWer<port>[:LEVel][:IMMediate][:AMPLitude]", query=True)
    def _get_power(self, args: Args, suffix: int) -> str:
        return fmt(self.port_power[self._port(suffix) - 1])

    @command("SOURce<ch>:POWer:COUPle")
    def _set_power_coupled(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self.power_coupled = args.boolean()
        if self.power_coupled:
            self.port_power = [self.port_power[0]] * PORTS

    @command("SOURce<ch>:POWer:COUPle", query=True)
    def _get_power_coupled(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return "1" if self.power_coupled else "0"

    def _port(self, port: int) -> int:
        if not 1 <= port <= PORTS:
            raise ScpiError(SUFFIX_OUT_OF_RANGE, f"port {port}")
        return port

    @command("OUTPut[:STATe]")
    def _set_output(self, args: Args) -> None:
        self.output = args.boolean()

    @command("OUTPut[:STATe]", query=True)
    def _get_output(self, args: Args) -> str:
        return "1" if self.output else "0"

    # -- TRIGger and INITiate ---------------------------------------------------------------------
    @command("TRIGger[:SEQuence]:SOURce")
    def _set_trigger_source(self, args: Args) -> None:
        self.trigger_source = args.choice(0, _TRIGGER_SOURCES)
        self._arm()

    @command("TRIGger[:SEQuence]:SOURce", query=True)
    def _get_trigger_source(self, args: Args) -> str:
        return self.trigger_source

    @command("INITiate<ch>[:IMMediate]")
    @no_argument
    def _initiate(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        if self.sweep_mode == "HOLD":
            # A trigger sent to a channel in hold takes one sweep and leaves it in hold.
            self.take_sweeps(1)
        else:
            self._trigger()

    # -- CALCulate: measurements ------------------------------------------------------------------
    @command("CALCulate<ch>:PARameter:CATalog:EXTended", query=True)
    @command("CALCulate<ch>:PARameter:CATalog", query=True)
    def _catalog(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        if not self.measurements:
            return '"NO CATALOG"'
        items = (f"{m.name},{m.parameter}" for _, m in sorted(self.measurements.items()))
        return '"' + ",".join(items) + '"'

    @command("CALCulate<ch>:PARameter:DEFine:EXTended")
    @command("CALCulate<ch>:PARameter[:DEFine]")
    def _define(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        name, parameter = args.text(0), _s_parameter(args, 1)
        if any(m.name == name for m in self.measurements.values()):
            raise ScpiError(SETTINGS_CONFLICT, f"measurement {name!r} exists")
        number = next(n for n in range(1, len(self.measurements) + 2)
                      if n not in self.measurements)
        self.measurements[number] = _Measurement(name, parameter)

    @command("CALCulate<ch>:PARameter:DELete[:NAME]")
    def _delete(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        number = self._number_of(args.text())
        del self.measurements[number]
        self._data.pop(number, None)
        if self.selected == number:
            self.selected = None

    @command("CALCulate<ch>:PARameter:DELete:ALL")
    @no_argument
    def _delete_all(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self.measurements.clear()
        self.selected = None
        self._clear_data()

    @command("CALCulate<ch>:PARameter:SELect")
    def _select(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self.selected = self._number_of(args.text())

    @command("CALCulate<ch>:PARameter:SELect", query=True)
    def _get_selected(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return f'"{self._measurement().name}"'

    @command("CALCulate<ch>:PARameter:MNUMber[:SELect]")
    def _select_number(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        number = args.integer(low=1, high=200)
        if number not in self.measurements:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"no measurement number {number}")
        self.selected = number

    @command("CALCulate<ch>:PARameter:MNUMber[:SELect]", query=True)
    def _get_number(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        self._measurement()
        return str(self.selected)

    @command("CALCulate<ch>:PARameter:MODify:EXTended")
    @command("CALCulate<ch>:PARameter:MODify")
    def _modify(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self._measurement().parameter = _s_parameter(args, 0)
        assert self.selected is not None
        self._data.pop(self.selected, None)

    def _number_of(self, name: str) -> int:
        for number, meas in self.measurements.items():
            if meas.name == name:
                return number
        raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"no measurement named {name!r}")

    # -- CALCulate: format, delay, data -----------------------------------------------------------
    @command("CALCulate<ch>[:SELected]:FORMat")
    def _set_format(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self._measurement().format = args.choice(0, _FORMATS)

    @command("CALCulate<ch>[:SELected]:FORMat", query=True)
    def _get_format(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return self._measurement().format

    @command("CALCulate<ch>[:SELected]:CORRection:EDELay[:TIME]")
    def _set_delay(self, args: Args, suffix: int) -> None:
        _channel(suffix)
        self._measurement().electrical_delay = args.number(low=-10.0, high=10.0,
                                                           units=("S", "MS", "US", "NS", "PS"))

    @command("CALCulate<ch>[:SELected]:CORRection:EDELay[:TIME]", query=True)
    def _get_delay(self, args: Args, suffix: int) -> str:
        _channel(suffix)
        return fmt(self._measurement().electrical_delay)

    @command("CALCulate<ch>[:SELected]:DATA", query=True)
    def _get_data(self, args: Args, suffix: int) -> str | bytes:
        _channel(suffix)
        kind = args.choice(0, _DATA_KINDS)
        meas = self._measurement()
        assert self.selected is not None
        if self.sweep_mode == "CONT" and self.trigger_source == "IMM":
            # Sweeping continuously: the reply holds the sweep that has just finished. The
            # instrument sweeps in the background, so no lab time is charged to the query.
            self.take_sweeps(1, advance_time=False)
        data = self._data.get(self.selected)
        if data is None:
            # Nothing measured since the stimulus changed (in hold): the trace is blank.
            data = np.full(self.points, np.nan + 0j)
        if kind == "SDAT":
            values = np.column_stack([data.real, data.imag]).ravel()
        else:
            values = self._formatted(meas, data)
        return self._encode(values)

    def _formatted(self, meas: _Measurement, data: np.ndarray) -> np.ndarray:
        """FDATA: one value a point, or (real, imaginary) pairs for polar and Smith formats."""
        freqs = self.frequencies()
        if meas.electrical_delay:
            data = data * np.exp(2j * np.pi * freqs * meas.electrical_delay)
        f = meas.format
        if f in _TWO_VALUE_FORMATS:
            return np.column_stack([data.real, data.imag]).ravel()
        magnitude = np.abs(data)
        with np.errstate(divide="ignore", invalid="ignore"):
            if f == "MLIN":
                return magnitude
            if f == "MLOG":
                return 20 * np.log10(magnitude)
            if f == "PHAS":
                return np.degrees(np.angle(data))
            if f == "UPH":
                return np.degrees(np.unwrap(np.angle(data)))
            if f == "REAL":
                return data.real
            if f == "IMAG":
                return data.imag
            if f == "SWR":
                return (1 + magnitude) / (1 - magnitude)
            # GDEL: group delay = -d(phase)/d(omega), s.
            if data.size < 2 or freqs[-1] == freqs[0]:
                return np.zeros(data.size)
            return -np.gradient(np.unwrap(np.angle(data)), 2 * np.pi * freqs)

    def _encode(self, values: np.ndarray) -> str | bytes:
        if self.data_format == "ASC":
            return ",".join(fmt(v) for v in values)
        order = ">" if self.byte_order == "NORM" else "<"
        dtype = f"{order}f{self.data_bits // 8}"
        return definite_length_block(np.asarray(values, dtype=dtype).tobytes())

    # -- FORMat -----------------------------------------------------------------------------------
    @command("FORMat[:DATA]")
    def _set_data_format(self, args: Args) -> None:
        kind = args.choice(0, mnemonics("ASCii", "REAL"))
        if kind == "ASC":
            self.data_format, self.data_bits = "ASC", 0
            return
        bits = args.integer(1, low=32, high=64) if len(args) > 1 else 64
        if bits not in (32, 64):
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"REAL,{bits}")
        self.data_format, self.data_bits = "REAL", bits

    @command("FORMat[:DATA]", query=True)
    def _get_data_format(self, args: Args) -> str:
        return f"{self.data_format},{self.data_bits:+d}"

    @command("FORMat:BORDer")
    def _set_byte_order(self, args: Args) -> None:
        self.byte_order = args.choice(0, _BYTE_ORDERS)

    @command("FORMat:BORDer", query=True)
    def _get_byte_order(self, args: Args) -> str:
        return self.byte_order

    # -- DISPlay ----------------------------------------------------------------------------------
    @command("DISPlay[:WINDow<w>]:TRACe<t>[:STATe]")
    def _set_trace_state(self, args: Args, suffix: int) -> None:
        on = args.boolean()
        meas = self.measurements.get(suffix)
        if meas is None:
            if not on:
                return
            # Showing a trace that has no measurement creates an S11 measurement for it.
            meas = self.measurements[suffix] = _Measurement(f"CH1_S11_{suffix}", "S11")
        meas.displayed = on

    @command("DISPlay[:WINDow<w>]:TRACe<t>[:STATe]", query=True)
    def _get_trace_state(self, args: Args, suffix: int) -> str:
        meas = self.measurements.get(suffix)
        return "1" if meas is not None and meas.displayed else "0"

    @command("DISPlay[:WINDow<w>]:TRACe<t>:FEED")
    def _feed(self, args: Args, suffix: int) -> None:
        number = self._number_of(args.text())
        self.measurements[number].displayed = True

    @command("DISPlay[:WINDow<w>]:TRACe:NEW")
    def _new_trace(self, args: Args, suffix: int = 1) -> None:
        number = next(n for n in range(1, len(self.measurements) + 2)
                      if n not in self.measurements)
        self.measurements[number] = _Measurement(f"CH1_S11_{number}", "S11")

    # -- SYSTem -----------------------------------------------------------------------------------
    @command("SYSTem:PRESet")
    @no_argument
    def _preset(self, args: Args) -> None:
        self.reset()

    @command("SYSTem:FPReset")
    @no_argument
    def _fast_preset(self, args: Args) -> None:
        # The fast preset leaves the analyzer empty: no measurements, nothing displayed.
        self.reset()
        self.measurements.clear()
        self.selected = None

    @command("SYSTem:ERRor:COUNt", query=True)
    def _error_count(self, args: Args) -> str:
        return str(len(self._errors))

    @command("SYSTem:CAPability:FREQuency:MINimum", query=True)
    def _min_frequency(self, args: Args) -> str:
        return fmt(MIN_FREQUENCY)

    @command("SYSTem:CAPability:FREQuency:MAXimum", query=True)
    def _max_frequency(self, args: Args) -> str:
        return fmt(MAX_FREQUENCY)

