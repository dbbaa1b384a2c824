"""Emulator of the Santec TSL-570 full-band tunable laser (the transducer's optical pump).

Commands from the santec TSL-570 Instruction Manual, chapter "Remote interface", SCPI
command set (``:SYSTem:COMMunicate:CODe 1``): ``:WAVelength`` (nm), ``:WAVelength:UNIT``,
``:WAVelength:FREQuency`` (THz), ``:WAVelength:MINimum?/MAXimum?``, ``:POWer[:LEVel]`` in the
unit chosen with ``:POWer:UNIT`` (0 = dBm, 1 = mW), ``:POWer:STATe`` (LD current on/off),
``:COHControl``, ``:SYSTem:ERRor?``, ``:SYSTem:ALERt?`` and the IEEE 488.2 common commands.
Also, from the same command reference, what the public libraries that drive a TSL-570 use:
``:POWer:ACTual[:LEVel]?`` (the monitored output power, in the ``:POWer:UNIT``),
``:POWer:SHUTter`` (0 open, 1 closed), the sweep settings ``:WAVelength:SWEep:STARt``,
``:STOP`` (nm), ``:MODe`` (0 step one-way, 1 continuous one-way, 2 step two-way, 3 continuous
two-way), ``:SPEed`` (nm/s), ``:STEP[:WIDTh]`` (nm), ``:DWELl`` (s), ``:CYCLes``,
``:STATe`` (1 starts, 0 stops; the query reads 1 while a sweep runs), ``:COUNt?``, and the
trigger output ``:TRIGger:OUTPut`` (0 none, 1 stop, 2 start, 3 step) with
``:TRIGger:OUTPut:STEP`` (nm) and ``:TRIGger:INPut:EXTernal``.
Ranges are those of the TSL-570 data sheet for the 1480-1640 nm type: output power settable
from -15 dBm to +13 dBm (0.04 mW to 20 mW as the manual gives them in mW), sweep speed
0.5 to 200 nm/s.

The laser pushes its output into the world: the pump reaches the transducer only while the
LD is on and the shutter open. Messages end with CR, the TSL-570's default delimiter.

Deliberately left out: a sweep runs on the world's clock (``:WAV:SWE:STAT?`` reads 1 until
its cycles are over, ``:COUNt?`` counts finished cycles) but does not move the pump's
wavelength, and the trigger output produces no pulses; the attenuator (``:POWer:ATTenuation``),
fine tuning (``:WAVelength:FINetuning``), the logging functions (``:READout...``), the
network and GP-IB settings of ``:SYSTem:COMMunicate`` and the Santec legacy command set.
With the LD off or the shutter closed ``:POW:ACT?`` reads 0 mW, or the monitor's floor of
-40 dBm in dBm (a choice of the emulator: the manual gives no figure).

The realistic lab (`LabWorld.ideal` False): the light that reaches the world differs from the
settings the way the data sheet allows, while every query (:WAV?, :POW?, :POW:ACT?) still
reads the setting, as on the real laser, which cannot see its own error. The emitted
wavelength is off by a fixed per-instance offset (`WAVELENGTH_ACCURACY_PM`) plus one within
the repeatability (`WAVELENGTH_REPEATABILITY_PM`), drawn afresh only by a coarse move: a
setting farther than `FINE_TUNING_RANGE_PM` from where the last coarse move landed. The
repeatability is that of the grating (the external cavity's coarse tuning); a step within
the fine-tuning range moves the cavity length only (piezo), which lands far more precisely,
so a fine scan keeps its one repeatability error as a common offset; the
emitted power has a fixed gain error (`POWER_ACCURACY_DB`) and, every time the output changes
(a new setting, LD or shutter), a fresh relative fluctuation within the power stability
(`POWER_STABILITY_DB`). Slow drifts in time belong to the world (issue 13, item 2).

Tuning takes lab time (realistic lab; ideal tunes at once, as before): a wavelength setting
reaches the world's pump `tuning_time` after the command (`physics.tuning.TuningPump`).
``*OPC?`` answers as the TSL-570 manual defines it, not IEEE 488.2's blocking form: 0 while an
operation (the tuning) is in progress, 1 once complete (so public TSL-570 drivers read it, e.g.
NQCP's photonicdrivers; not checked against a stored copy of the manual). A controller polls
it (the qnetlab driver does), each exchange made while tuning taking `OPC_EXCHANGE_S` of lab
time.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from ..physics.instrument_errors import (
    db_bound_to_relative,
    error_rng,
    fixed_error,
    relative_noise,
    sigma_of_bound,
)
from ..physics.tuning import TuningPump
from .scpi import DATA_OUT_OF_RANGE, Args, ScpiDevice, ScpiError, command

if TYPE_CHECKING:
    from ..physics.world import LabWorld

_SPEED_OF_LIGHT = 299_792_458.0
# The TSL-570 lists -148 "Character data not allowed" in its error table for a word where a
# number is expected; it has no -224.
_CHARACTER_DATA_NOT_ALLOWED = (-148, "Character data not allowed")
SWEEP_SPEED_RANGE = (0.5, 200.0)
"""nm/s"""
MAX_SWEEP_CYCLES = 999
MONITOR_FLOOR_DBM = -40.0
"""What :POW:ACT? reads in dBm with no light out (the emulator's choice)."""

# The realistic lab's errors (module docstring). Sources: santec TSL-570 data sheet and
# Instruction Manual, "Specifications" (optical characteristics); the values below were not
# checked against a stored copy of either, so treat them as the data sheet's order of magnitude.
WAVELENGTH_ACCURACY_PM = 1.5
"""+-pm, absolute wavelength accuracy (TSL-570 specifications)."""
WAVELENGTH_REPEATABILITY_PM = 0.5
"""+-pm, wavelength repeatability: re-setting a wavelength lands within this of the last
time (TSL-570 specifications)."""
FINE_TUNING_RANGE_PM = 80.0
"""pm, how far a setting may move from the last coarse landing and still be a fine step
(about +-10 GHz at 1550 nm): typical of the fine (piezo) tuning range of external-cavity
tunable lasers such as the TSL series' ``:WAVelength:FINetuning``, not from the data sheet."""
POWER_STABILITY_DB = 0.01
"""+-dB, output power stability (TSL-570 specifications, short term at constant
temperature)."""
POWER_ACCURACY_DB = 0.3
"""+-dB, the emitted power's fixed error against its setting; the data sheet states power
flatness and linearity rather than one absolute accuracy (typical, not from a data sheet)."""

# Tuning (realistic lab; module docstring). The data sheet states the sweep speed (up to
# 200 nm/s, `SWEEP_SPEED_RANGE`) but no settling time of a step to a new setting.
TUNING_SPEED_NM_S = SWEEP_SPEED_RANGE[1]
"""nm/s, how fast a set wavelength moves: the top sweep speed (TSL-570 data sheet); that a
step moves at it is a modelling choice."""
TUNING_SETTLE_S = 0.1
"""s, the settling after every move before ``*OPC?`` reads 1 (typical, not stated in the data
sheet or manual)."""
OPC_EXCHANGE_S = 0.01
"""s of lab time one ``*OPC?`` exchange takes while the laser tunes: a query's round trip
over LAN or GP-IB with the controller's turn-around (typical, not from the manual)."""


def _dbm_to_mw(dbm: float) -> float:
    return 10 ** (dbm / 10)


def _mw_to_dbm(mw: float) -> float:
    return 10 * math.log10(mw)


def tuning_time(from_nm: float, to_nm: float) -> float:
    """s from a wavelength setting to a settled output, for a move from `from_nm` to `to_nm`
    (0 for no move)."""
    if to_nm == from_nm:
        return 0.0
    return TUNING_SETTLE_S + abs(to_nm - from_nm) / TUNING_SPEED_NM_S


class SantecTSL570Emulator(ScpiDevice):
    """A TSL-570 of the 1480-1640 nm type, in SCPI command mode."""

    identity = ("SANTEC", "TSL-570", "21020001", "0001.0000.0001")
    terminator = "\r"
    min_wavelength_nm: ClassVar[float] = 1480.0
    max_wavelength_nm: ClassVar[float] = 1640.0
    power_range_dbm: ClassVar[tuple[float, float]] = (-15.0, 13.0)
    power_range_mw: ClassVar[tuple[float, float]] = (0.04, 20.0)

    def __init__(self, world: LabWorld, name: str) -> None:
        # The realistic lab's draws, from generators of their own (ideal stays as it was).
        self._repeatability_rng = error_rng(world, name, "wavelength repeatability")
        self._stability_rng = error_rng(world, name, "power stability")
        self._repeatability_pm = 0.0
        """pm: where the last coarse move landed, within the repeatability."""
        self._coarse_nm: float | None = None
        """nm: the setting of the last coarse move (None: none yet since power-up)."""
        self._tuning: TuningPump | None = None
        if not world.ideal:  # the ideal lab tunes at once, as before
            pump = world.pump
            self._tuning = pump if isinstance(pump, TuningPump) else TuningPump(pump,
                                                                                 world.clock)
            world.pump = self._tuning
        super().__init__(world, name)

    def reset(self) -> None:
        # *RST on the TSL-570 only aborts standby operation and clears the input and error
        # queues (manual, common commands); the laser keeps its settings. The first call, from
        # the constructor, is the power-up: the laser comes up with the settings it had, which
        # here are what the world holds (clamped into this model's ranges), LD off.
        if hasattr(self, "wavelength_nm"):
            self._errors.clear()
            return
        pump = self.world.pump
        self.wavelength_nm = min(max(pump.wavelength * 1e9, self.min_wavelength_nm),
                                 self.max_wavelength_nm)
        low, high = self.power_range_mw
        self.power_mw = min(max(pump.power * 1e3, low), high)
        self.power_unit = 1 if pump.power > 0 else 0
        self.wavelength_unit = 0
        self.ld_on = False
        self.shutter_closed = False
        self.coherence_control = False
        self.sweep_start_nm = self.min_wavelength_nm
        self.sweep_stop_nm = self.max_wavelength_nm
        self.sweep_mode = 1
        self.sweep_speed = 10.0
        """nm/s"""
        self.sweep_step_nm = 1.0
        self.sweep_dwell_s = 0.5
        self.sweep_cycles = 1
        self.sweep_started_at: float | None = None
        """World time (s) of the last :WAV:SWE:STAT 1; None when stopped."""
        self.trigger_output = 0
        self.trigger_step_nm = 1.0
        self.trigger_input_external = False
        self._push()

    def power_on(self) -> None:
        # Switched off and on, the laser keeps its wavelength and power setting but comes up
        # with the LD off and :POWer in the factory unit, dBm: a driver must set its unit
        # again (what the `restart` fault shows).
        super().power_on()
        self.power_unit = 0
        self.ld_on = False
        self.sweep_started_at = None
        self._push()

    def _push(self, tuning_s: float = 0.0) -> None:
        """Send the output to the world; a wavelength move takes `tuning_s` of lab time to
        arrive (realistic lab)."""
        power, wavelength = self.power_mw * 1e-3, self.wavelength_nm * 1e-9
        if self._tuning is None:
            self.world.set_pump(power=power, wavelength=wavelength, on=self.emitting)
            return
        power, wavelength = self.emitted(power, wavelength)
        self.world.set_pump(power=power, on=self.emitting)
        if tuning_s > 0:
            self._tuning.tune(wavelength, tuning_s)
        elif not self.tuning:
            self._tuning.wavelength = wavelength  # no move under way: the setting stands

    @property
    def tuning(self) -> bool:
        """An operation (a wavelength move) is in progress: ``*OPC?`` reads 0."""
        return self._tuning is not None and self.world.now() < self._tuning.tuned_at

    def _common(self, header: str, is_query: bool, rest: str) -> str | None:
        if header == "*OPC" and is_query:
            # TSL-570 manual: 0 while an operation is in progress, 1 once it is complete.
            if not self.tuning:
                return "1"
            self.world.advance(OPC_EXCHANGE_S)
            return "1" if not self.tuning else "0"
        return super()._common(header, is_query, rest)

    def _set_wavelength_nm(self, nm: float) -> None:
        """A new wavelength setting (nm, 0.1 pm resolution), tuned to in lab time."""
        before = self.wavelength_nm
        self.wavelength_nm = round(nm, 4)
        self._land_wavelength()
        self._push(tuning_time(before, self.wavelength_nm))

    def accuracy_errors(self) -> tuple[float, float]:
        """This instance's fixed errors: (wavelength offset in pm, power error in dB), drawn
        from `WAVELENGTH_ACCURACY_PM` and `POWER_ACCURACY_DB` (the same on every call)."""
        return (fixed_error(self.world, self.name, "wavelength accuracy", WAVELENGTH_ACCURACY_PM),
                fixed_error(self.world, self.name, "power accuracy", POWER_ACCURACY_DB))

    def emitted(self, power: float, wavelength: float) -> tuple[float, float]:
        """The (power W, wavelength m) the laser emits for a setting of (`power`,
        `wavelength`) in the realistic lab; draws the power stability's fluctuation."""
        offset_pm, power_error_db = self.accuracy_errors()
        stability = sigma_of_bound(db_bound_to_relative(POWER_STABILITY_DB))
        fluctuation = relative_noise(self._stability_rng, stability)
        return (power * 10 ** (power_error_db / 10) * fluctuation,
                wavelength + (offset_pm + self._repeatability_pm) * 1e-12)

    def _land_wavelength(self) -> None:
        """A coarse move (beyond the fine-tuning range of the last one) lands somewhere
        within the repeatability; a fine step keeps the last coarse move's error."""
        if self.world.ideal:
            return
        last = self._coarse_nm
        if last is not None and abs(self.wavelength_nm - last) * 1e3 <= FINE_TUNING_RANGE_PM:
            return
        self._coarse_nm = self.wavelength_nm
        self._repeatability_pm = float(self._repeatability_rng.normal(
            0.0, sigma_of_bound(WAVELENGTH_REPEATABILITY_PM)))

    @property
    def emitting(self) -> bool:
        """Light leaves the fibre: LD on and shutter open."""
        return self.ld_on and not self.shutter_closed

    def format_error(self, code: int, message: str) -> str:
        # The TSL-570 answers '0,"No error"': no sign on the code.
        return f'{code},"{message}"'

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _number(args: Args, low: float, high: float) -> float:
        """A plain number (the TSL-570 takes no unit suffixes) or MIN/MAX, within [low, high]."""
        if args.text().upper() not in ("MIN", "MINIMUM", "MAX", "MAXIMUM") and not any(
            c.isdigit() for c in args.text()
        ):
            raise ScpiError(_CHARACTER_DATA_NOT_ALLOWED, args.text())
        # units=("",) rejects any suffix with -131 Invalid suffix.
        return args.number(low=low, high=high, units=("",))

    @classmethod
    def _switch(cls, args: Args) -> int:
        """A 0/1 setting; ON/OFF are accepted as well."""
        word = args.text().upper()
        if word in ("ON", "OFF"):
            return int(word == "ON")
        return int(cls._integer(args, 0, 1))

    @classmethod
    def _integer(cls, args: Args, low: int, high: int) -> int:
        value = cls._number(args, low, high)
        if value != int(value):
            raise ScpiError(DATA_OUT_OF_RANGE, args.text())
        return int(value)

    # -- wavelength ------------------------------------------------------------------------------
    @command("[:SOURce]:WAVelength")
    def _set_wavelength(self, args: Args) -> None:
        self._set_wavelength_nm(self._number(args, self.min_wavelength_nm,
                                             self.max_wavelength_nm))

    @command("[:SOURce]:WAVelength", query=True)
    def _get_wavelength(self, args: Args) -> str:
        return f"{self.wavelength_nm:.4f}"

    @command("[:SOURce]:WAVelength:MINimum", query=True)
    def _get_min_wavelength(self, args: Args) -> str:
        return f"{self.min_wavelength_nm:.4f}"

    @command("[:SOURce]:WAVelength:MAXimum", query=True)
    def _get_max_wavelength(self, args: Args) -> str:
        return f"{self.max_wavelength_nm:.4f}"

    @command("[:SOURce]:WAVelength:UNIT")
    def _set_wavelength_unit(self, args: Args) -> None:
        # Display unit only (0 nm, 1 THz); :WAVelength stays in nm, :WAV:FREQ in THz.
        self.wavelength_unit = self._switch(args)

    @command("[:SOURce]:WAVelength:UNIT", query=True)
    def _get_wavelength_unit(self, args: Args) -> str:
        return str(self.wavelength_unit)

    def _thz(self, nm: float) -> float:
        return _SPEED_OF_LIGHT / (nm * 1e-9) / 1e12

    @command("[:SOURce]:WAVelength:FREQuency")
    def _set_frequency(self, args: Args) -> None:
        thz = self._number(args, self._thz(self.max_wavelength_nm),
                           self._thz(self.min_wavelength_nm))
        self._set_wavelength_nm(_SPEED_OF_LIGHT / (thz * 1e12) * 1e9)

    @command("[:SOURce]:WAVelength:FREQuency", query=True)
    def _get_frequency(self, args: Args) -> str:
        return f"{self._thz(self.wavelength_nm):.5f}"  # 10 MHz resolution

    @command("[:SOURce]:WAVelength:FREQuency:MINimum", query=True)
    def _get_min_frequency(self, args: Args) -> str:
        return f"{self._thz(self.max_wavelength_nm):.5f}"

    @command("[:SOURce]:WAVelength:FREQuency:MAXimum", query=True)
    def _get_max_frequency(self, args: Args) -> str:
        return f"{self._thz(self.min_wavelength_nm):.5f}"

    # -- power -----------------------------------------------------------------------------------
    @command("[:SOURce]:POWer[:LEVel]")
    def _set_power(self, args: Args) -> None:
        if self.power_unit == 1:
            self.power_mw = self._number(args, *self.power_range_mw)
        else:
            self.power_mw = _dbm_to_mw(self._number(args, *self.power_range_dbm))
        self._push()

    @command("[:SOURce]:POWer[:LEVel]", query=True)
    def _get_power(self, args: Args) -> str:
        if self.power_unit == 1:
            return f"{self.power_mw:.4f}"
        return f"{_mw_to_dbm(self.power_mw):.4f}"

    @command("[:SOURce]:POWer:UNIT")
    def _set_power_unit(self, args: Args) -> None:
        word = args.text().upper()
        units = {"DBM": 0, "MW": 1}
        self.power_unit = units[word] if word in units else self._integer(args, 0, 1)

    @command("[:SOURce]:POWer:UNIT", query=True)
    def _get_power_unit(self, args: Args) -> str:
        return str(self.power_unit)

    @command("[:SOURce]:POWer:STATe")
    def _set_ld(self, args: Args) -> None:
        self.ld_on = bool(self._switch(args))
        self._push()

    @command("[:SOURce]:POWer:STATe", query=True)
    def _get_ld(self, args: Args) -> str:
        return "1" if self.ld_on else "0"

    @command(":COHControl")
    def _set_coherence_control(self, args: Args) -> None:
        self.coherence_control = bool(self._switch(args))

    @command(":COHControl", query=True)
    def _get_coherence_control(self, args: Args) -> str:
        return "1" if self.coherence_control else "0"

    # -- system ----------------------------------------------------------------------------------
    @command(":SYSTem:ALERt", query=True)
    def _get_alert(self, args: Args) -> str:
        return "No alerts."

    # -- output monitor and shutter --------------------------------------------------------------
    @command("[:SOURce]:POWer:ACTual[:LEVel]", query=True)
    def _get_actual_power(self, args: Args) -> str:
        if self.power_unit == 1:
            return f"{self.power_mw if self.emitting else 0.0:.4f}"
        return f"{_mw_to_dbm(self.power_mw) if self.emitting else MONITOR_FLOOR_DBM:.4f}"

    @command("[:SOURce]:POWer:SHUTter")
    def _set_shutter(self, args: Args) -> None:
        self.shutter_closed = bool(self._switch(args))
        self._push()

    @command("[:SOURce]:POWer:SHUTter", query=True)
    def _get_shutter(self, args: Args) -> str:
        return "1" if self.shutter_closed else "0"

    # -- sweep -----------------------------------------------------------------------------------
    @command("[:SOURce]:WAVelength:SWEep:STARt")
    def _set_sweep_start(self, args: Args) -> None:
        self.sweep_start_nm = round(
            self._number(args, self.min_wavelength_nm, self.max_wavelength_nm), 4)

    @command("[:SOURce]:WAVelength:SWEep:STARt", query=True)
    def _get_sweep_start(self, args: Args) -> str:
        return f"{self.sweep_start_nm:.4f}"

    @command("[:SOURce]:WAVelength:SWEep:STOP")
    def _set_sweep_stop(self, args: Args) -> None:
        self.sweep_stop_nm = round(
            self._number(args, self.min_wavelength_nm, self.max_wavelength_nm), 4)

    @command("[:SOURce]:WAVelength:SWEep:STOP", query=True)
    def _get_sweep_stop(self, args: Args) -> str:
        return f"{self.sweep_stop_nm:.4f}"

    @command("[:SOURce]:WAVelength:SWEep:MODe")
    def _set_sweep_mode(self, args: Args) -> None:
        self.sweep_mode = self._integer(args, 0, 3)

    @command("[:SOURce]:WAVelength:SWEep:MODe", query=True)
    def _get_sweep_mode(self, args: Args) -> str:
        return str(self.sweep_mode)

    @command("[:SOURce]:WAVelength:SWEep:SPEed")
    def _set_sweep_speed(self, args: Args) -> None:
        self.sweep_speed = round(self._number(args, *SWEEP_SPEED_RANGE), 1)

    @command("[:SOURce]:WAVelength:SWEep:SPEed", query=True)
    def _get_sweep_speed(self, args: Args) -> str:
        return f"{self.sweep_speed:.1f}"

    @command("[:SOURce]:WAVelength:SWEep:STEP[:WIDTh]")
    def _set_sweep_step(self, args: Args) -> None:
        span = self.max_wavelength_nm - self.min_wavelength_nm
        self.sweep_step_nm = round(self._number(args, 0.0001, span), 4)

    @command("[:SOURce]:WAVelength:SWEep:STEP[:WIDTh]", query=True)
    def _get_sweep_step(self, args: Args) -> str:
        return f"{self.sweep_step_nm:.4f}"

    @command("[:SOURce]:WAVelength:SWEep:DWELl")
    def _set_sweep_dwell(self, args: Args) -> None:
        self.sweep_dwell_s = round(self._number(args, 0.0, 999.9), 1)

    @command("[:SOURce]:WAVelength:SWEep:DWELl", query=True)
    def _get_sweep_dwell(self, args: Args) -> str:
        return f"{self.sweep_dwell_s:.1f}"

    @command("[:SOURce]:WAVelength:SWEep:CYCLes")
    def _set_sweep_cycles(self, args: Args) -> None:
        self.sweep_cycles = self._integer(args, 0, MAX_SWEEP_CYCLES)

    @command("[:SOURce]:WAVelength:SWEep:CYCLes", query=True)
    def _get_sweep_cycles(self, args: Args) -> str:
        return str(self.sweep_cycles)

    def _cycle_duration(self) -> float:
        """One sweep cycle, s: continuous at the speed, or stepped with the dwell per step;
        a two-way sweep goes there and back."""
        span = abs(self.sweep_stop_nm - self.sweep_start_nm)
        if self.sweep_mode in (1, 3):
            one_way = span / self.sweep_speed
        else:
            one_way = (math.floor(span / self.sweep_step_nm) + 1) * self.sweep_dwell_s
        return one_way * (2 if self.sweep_mode in (2, 3) else 1)

    def _cycles_done(self) -> int:
        if self.sweep_started_at is None:
            return 0
        elapsed = self.world.now() - self.sweep_started_at
        duration = self._cycle_duration()
        cycles = max(self.sweep_cycles, 1)  # CYCLes 0 runs one sweep here
        if duration <= 0:
            return cycles
        return min(int(elapsed // duration), cycles)

    def _sweeping(self) -> bool:
        return self.sweep_started_at is not None and self._cycles_done() < max(
            self.sweep_cycles, 1)

    @command("[:SOURce]:WAVelength:SWEep[:STATe]")
    def _set_sweep_state(self, args: Args) -> None:
        start = bool(self._switch(args))
        self.sweep_started_at = self.world.now() if start else None

    @command("[:SOURce]:WAVelength:SWEep[:STATe]", query=True)
    def _get_sweep_state(self, args: Args) -> str:
        return "1" if self._sweeping() else "0"

    @command("[:SOURce]:WAVelength:SWEep:COUNt", query=True)
    def _get_sweep_count(self, args: Args) -> str:
        return str(self._cycles_done())

    # -- triggers --------------------------------------------------------------------------------
    @command(":TRIGger:OUTPut")
    def _set_trigger_output(self, args: Args) -> None:
        self.trigger_output = self._integer(args, 0, 3)

    @command(":TRIGger:OUTPut", query=True)
    def _get_trigger_output(self, args: Args) -> str:
        return str(self.trigger_output)

    @command(":TRIGger:OUTPut:STEP")
    def _set_trigger_step(self, args: Args) -> None:
        span = self.max_wavelength_nm - self.min_wavelength_nm
        self.trigger_step_nm = round(self._number(args, 0.0001, span), 4)

    @command(":TRIGger:OUTPut:STEP", query=True)
    def _get_trigger_step(self, args: Args) -> str:
        return f"{self.trigger_step_nm:.4f}"

    @command(":TRIGger:INPut:EXTernal")
    def _set_trigger_input(self, args: Args) -> None:
        self.trigger_input_external = bool(self._switch(args))

    @command(":TRIGger:INPut:EXTernal", query=True)
    def _get_trigger_input(self, args: Args) -> str:
        return "1" if self.trigger_input_external else "0"
