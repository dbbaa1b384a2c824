"""Emulator of the Santec TSL-570 full-band tunable laser (the transducer's optical pump).

Commands from the santec TSL-570 Instruction Manual, chapter "Remote interface", SCPI
command set (``:SYSTem:COMMunicate:CODe 1``): ``:WAVelength`` (nm), ``:WAVelength:UNIT``,
``:WAVelength:FREQuency`` (THz), ``:WAVelength:MINimum?/MAXimum?``, ``:POWer[:LEVel]`` in the
unit chosen with ``:POWer:UNIT`` (0 = dBm, 1 = mW), ``:POWer:STATe`` (LD current on/off),
``:COHControl``, ``:SYSTem:ERRor?``, ``:SYSTem:ALERt?`` and the IEEE 488.2 common commands.
Ranges are those of the TSL-570 data sheet for the 1480-1640 nm type: output power settable
from -15 dBm to +13 dBm (0.04 mW to 20 mW as the manual gives them in mW).

The laser pushes its output into the world: the pump reaches the transducer only while the
LD is on. Messages end with CR, the TSL-570's default delimiter.
"""

from __future__ import annotations

import math
from typing import ClassVar

from ._scpi import DATA_OUT_OF_RANGE, Args, ScpiDevice, ScpiError, command

_SPEED_OF_LIGHT = 299_792_458.0
# The TSL-570 lists -148 "Character data not allowed" in its error table for a word where a
# number is expected; it has no -224.
_CHARACTER_DATA_NOT_ALLOWED = (-148, "Character data not allowed")


def _dbm_to_mw(dbm: float) -> float:
    return 10 ** (dbm / 10)


def _mw_to_dbm(mw: float) -> float:
    return 10 * math.log10(mw)


class SantecTSL570Emulator(ScpiDevice):
    """A TSL-570 of the 1480-1640 nm type, in SCPI command mode."""

    identity = ("SANTEC", "TSL-570", "21020001", "0001.0000.0001")
    terminator = "\r"
    min_wavelength_nm: ClassVar[float] = 1480.0
    max_wavelength_nm: ClassVar[float] = 1640.0
    power_range_dbm: ClassVar[tuple[float, float]] = (-15.0, 13.0)
    power_range_mw: ClassVar[tuple[float, float]] = (0.04, 20.0)

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
        self.coherence_control = False
        self._push()

    def _push(self) -> None:
        self.world.set_pump(power=self.power_mw * 1e-3, wavelength=self.wavelength_nm * 1e-9,
                            on=self.ld_on)

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
    @command(":WAVelength")
    def _set_wavelength(self, args: Args) -> None:
        value = self._number(args, self.min_wavelength_nm, self.max_wavelength_nm)
        self.wavelength_nm = round(value, 4)  # setting resolution 0.1 pm
        self._push()

    @command(":WAVelength", query=True)
    def _get_wavelength(self, args: Args) -> str:
        return f"{self.wavelength_nm:.4f}"

    @command(":WAVelength:MINimum", query=True)
    def _get_min_wavelength(self, args: Args) -> str:
        return f"{self.min_wavelength_nm:.4f}"

    @command(":WAVelength:MAXimum", query=True)
    def _get_max_wavelength(self, args: Args) -> str:
        return f"{self.max_wavelength_nm:.4f}"

    @command(":WAVelength:UNIT")
    def _set_wavelength_unit(self, args: Args) -> None:
        # Display unit only (0 nm, 1 THz); :WAVelength stays in nm, :WAV:FREQ in THz.
        self.wavelength_unit = self._switch(args)

    @command(":WAVelength:UNIT", query=True)
    def _get_wavelength_unit(self, args: Args) -> str:
        return str(self.wavelength_unit)

    def _thz(self, nm: float) -> float:
        return _SPEED_OF_LIGHT / (nm * 1e-9) / 1e12

    @command(":WAVelength:FREQuency")
    def _set_frequency(self, args: Args) -> None:
        thz = self._number(args, self._thz(self.max_wavelength_nm),
                           self._thz(self.min_wavelength_nm))
        self.wavelength_nm = round(_SPEED_OF_LIGHT / (thz * 1e12) * 1e9, 4)
        self._push()

    @command(":WAVelength:FREQuency", query=True)
    def _get_frequency(self, args: Args) -> str:
        return f"{self._thz(self.wavelength_nm):.5f}"  # 10 MHz resolution

    @command(":WAVelength:FREQuency:MINimum", query=True)
    def _get_min_frequency(self, args: Args) -> str:
        return f"{self._thz(self.max_wavelength_nm):.5f}"

    @command(":WAVelength:FREQuency:MAXimum", query=True)
    def _get_max_frequency(self, args: Args) -> str:
        return f"{self._thz(self.min_wavelength_nm):.5f}"

    # -- power -----------------------------------------------------------------------------------
    @command(":POWer[:LEVel]")
    def _set_power(self, args: Args) -> None:
        if self.power_unit == 1:
            self.power_mw = self._number(args, *self.power_range_mw)
        else:
            self.power_mw = _dbm_to_mw(self._number(args, *self.power_range_dbm))
        self._push()

    @command(":POWer[:LEVel]", query=True)
    def _get_power(self, args: Args) -> str:
        if self.power_unit == 1:
            return f"{self.power_mw:.4f}"
        return f"{_mw_to_dbm(self.power_mw):.4f}"

    @command(":POWer:UNIT")
    def _set_power_unit(self, args: Args) -> None:
        word = args.text().upper()
        units = {"DBM": 0, "MW": 1}
        self.power_unit = units[word] if word in units else self._integer(args, 0, 1)

    @command(":POWer:UNIT", query=True)
    def _get_power_unit(self, args: Args) -> str:
        return str(self.power_unit)

    @command(":POWer:STATe")
    def _set_ld(self, args: Args) -> None:
        self.ld_on = bool(self._switch(args))
        self._push()

    @command(":POWer:STATe", query=True)
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
