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

The realistic lab (`LabWorld.ideal` False) adds the background a real calibrated VNA and its
cable leave on S11, fixed per instance (`CableBackground`, drawn once from the instrument's
own generator): a mismatch (an adaptor or connector of reflection |r| up to
`MISMATCH_REFLECTION`) a cable length L away makes a slowly varying complex ripple,
S11 * (1 + r exp(-2j 2 pi f L / v)); an uncalibrated electrical delay tau adds a linear phase,
exp(-2j pi f tau); the residual directivity d (up to `RESIDUAL_DIRECTIVITY`) adds a constant
that interferes with the resonance into a Fano-like asymmetry. A fit of the pure resonance
model then sees a structured background, as on a real bench.

The subsystems live in private mixins: SENSe in `_p9374a_sense`, CALCulate, FORMat and
DISPlay in `_p9374a_calculate`; this module holds the state, the sweeps, SOURce, OUTPut,
TRIGger, INITiate and SYSTem.

Deliberately left out (neither the QCoDeS driver nor the `VNA` role uses them): channels
other than 1, calibration (SENSe:CORRection:COLLect, cal kits, CSET), markers
(CALCulate:MARKer), limit and ripple tests, segment sweeps, time-domain transforms, fixture
de-embedding, MMEMory and the DISPlay layout beyond trace visibility. They queue -113
Undefined header and, as queries, get no reply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..physics.instrument_errors import error_rng
from ._p9374a_calculate import PORTS, S_PARAMETERS, CalculateMixin, Measurement
from ._p9374a_sense import (
    MAX_AVERAGES,
    MAX_FREQUENCY,
    MAX_IFBW,
    MAX_POINTS,
    MIN_FREQUENCY,
    MIN_IFBW,
    SenseMixin,
    check_channel,
)
from .scpi import (
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

# The stimulus and port constants stay importable from here, where they always were.
__all__ = [
    "MAX_AVERAGES", "MAX_FREQUENCY", "MAX_IFBW", "MAX_POINTS", "MAX_POWER", "MIN_FREQUENCY",
    "MIN_IFBW", "MIN_POWER", "PORTS", "REFERENCE_IFBW", "S_PARAMETERS", "KeysightP9374AEmulator",
]

MIN_POWER, MAX_POWER = -43.0, 20.0
"""dBm: settable port power, as in the QCoDeS P9374A driver."""
REFERENCE_IFBW = 1e3
"""The IF bandwidth (Hz) at which `WorldSettings.vna_noise` is the trace noise."""

_TRIGGER_SOURCES = mnemonics("EXTernal", "IMMediate", "MANual")

# The realistic lab's cable and mismatch background (module docstring). Typical values, not
# from a data sheet: the Keysight P937xA Streamline USB VNA data sheet states corrected
# directivity and source match per calibration kit, which these stand in for.
MISMATCH_REFLECTION = 0.03
"""Largest |r| of the mismatch a cable length away (an adaptor of about 30 dB return loss)."""
CABLE_LENGTH_RANGE = (1.0, 2.0)
"""m, the cable length between the mismatch and the device (drawn uniformly)."""
CABLE_VELOCITY = 0.7 * 299_792_458.0
"""m/s, the signal speed in the coax (velocity factor 0.7, typical of PTFE coax)."""
ELECTRICAL_DELAY = 20e-12
"""s, rms of the uncalibrated electrical delay (a few mm of reference-plane error)."""
RESIDUAL_DIRECTIVITY = 0.01
"""Largest |d| of the residual directivity after calibration (about 40 dB)."""


@dataclass(frozen=True)
class CableBackground:
    """One instance's fixed S11 background: measured = S11 * tracking(f) + directivity."""

    reflection: complex
    """r of the mismatch a cable length away."""
    cable_length: float
    """m"""
    delay: float
    """s, uncalibrated electrical delay."""
    directivity: complex
    """Residual directivity, added to S11."""

    @classmethod
    def draw(cls, rng: np.random.Generator) -> CableBackground:
        def phasor(largest: float) -> complex:
            # Magnitude between half the bound and the bound: a background is always there.
            magnitude = largest * rng.uniform(0.5, 1.0)
            return complex(magnitude * np.exp(1j * rng.uniform(0.0, 2 * math.pi)))

        reflection = phasor(MISMATCH_REFLECTION)
        return cls(reflection=reflection, cable_length=float(rng.uniform(*CABLE_LENGTH_RANGE)),
                   delay=float(rng.normal(0.0, ELECTRICAL_DELAY)),
                   directivity=phasor(RESIDUAL_DIRECTIVITY))

    def apply(self, s11: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        """S11 as the VNA sees it through this background."""
        ripple = 1 + self.reflection * np.exp(
            -2j * 2 * np.pi * freqs * self.cable_length / CABLE_VELOCITY)
        tracking = ripple * np.exp(-2j * np.pi * freqs * self.delay)
        return np.asarray(s11 * tracking + self.directivity, complex)


class KeysightP9374AEmulator(SenseMixin, CalculateMixin, ScpiDevice):
    identity = ("Keysight Technologies", "P9374A", "MY00000001", "A.13.95.06")
    options = '"010"'  # the PNA family answers *OPT? with a quoted list; 010 = time domain

    def __init__(self, world: LabWorld, name: str) -> None:
        # One generator for the instrument's life: *RST must not replay the same noise.
        self._rng = world.rng(name)
        self._background: CableBackground | None = None
        super().__init__(world, name)

    @property
    def background(self) -> CableBackground:
        """This instance's fixed cable and mismatch background (used when not ideal)."""
        if self._background is None:
            self._background = CableBackground.draw(
                error_rng(self.world, self.name, "cable background"))
        return self._background

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
        self.measurements: dict[int, Measurement] = {1: Measurement("CH1_S11_1", "S11")}
        self.selected: int | None = 1
        self._clear_data()

    def _clear_data(self) -> None:
        # Per measurement number: the averaged complex trace and how many sweeps are in it.
        self._data: dict[int, np.ndarray] = {}
        self._averaged: dict[int, int] = {}

    # -- the sweeps ------------------------------------------------------------------------------
    @property
    def noise_sigma(self) -> float:
        """Complex noise of one sweep's points, (E|n|^2)^(1/2), linear."""
        return self.world.settings.vna_noise * math.sqrt(self.if_bandwidth / REFERENCE_IFBW)

    def _true_s(self, parameter: str, freqs: np.ndarray) -> np.ndarray:
        if not self.output:  # no stimulus: the receivers see only noise
            return np.zeros(freqs.size, complex)
        if parameter == "S11":
            s11 = np.asarray(self.world.mw_reflection(freqs), complex)
            return s11 if self.world.ideal else self.background.apply(s11, freqs)
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
        check_channel(suffix)
        self.power_coupled = args.boolean()
        if self.power_coupled:
            self.port_power = [self.port_power[0]] * PORTS

    @command("SOURce<ch>:POWer:COUPle", query=True)
    def _get_power_coupled(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
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
        check_channel(suffix)
        if self.sweep_mode == "HOLD":
            # A trigger sent to a channel in hold takes one sweep and leaves it in hold.
            self.take_sweeps(1)
        else:
            self._trigger()

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

