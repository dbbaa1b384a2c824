"""The CALCulate, FORMat and DISPlay subsystems of the Keysight P9374A emulator: measurements
(CALCulate:PARameter), their format, electrical delay and data (CALCulate[:SELected]:FORMat,
:CORRection:EDELay, :DATA?), the data transfer format (FORMat[:DATA], FORMat:BORDer) and the
traces that show measurements (DISPlay[:WINDow<w>]:TRACe<t>), as in the Keysight Network
Analyzer Help's SCPI Command Tree.

`CalculateMixin` is inherited by `keysight_p9374a.KeysightP9374AEmulator`, which holds the
state (set by its reset()) and takes the sweeps; the SCPI engine collects the @command
handlers over the MRO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._p9374a_sense import check_channel
from .scpi import (
    ILLEGAL_PARAMETER_VALUE,
    SETTINGS_CONFLICT,
    Args,
    ScpiError,
    command,
    definite_length_block,
    fmt,
    mnemonics,
    no_argument,
)

PORTS = 2
S_PARAMETERS = tuple(f"S{i}{j}" for i in (1, 2) for j in (1, 2))

_FORMATS = mnemonics("MLINear", "MLOGarithmic", "PHASe", "UPHase", "IMAGinary", "REAL",
                      "POLar", "SMITh", "SWR", "GDELay")
_TWO_VALUE_FORMATS = ("POL", "SMIT")
_BYTE_ORDERS = mnemonics("NORMal", "SWAPped")
_DATA_KINDS = mnemonics("FDATa", "SDATa")


class Measurement:
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


class CalculateMixin:
    """CALCulate<ch> measurement commands, FORMat and DISPlay."""

    # State set by KeysightP9374AEmulator.reset() and its sweeps.
    measurements: dict[int, Measurement]
    selected: int | None
    _data: dict[int, np.ndarray]
    points: int
    sweep_mode: str
    trigger_source: str
    data_format: str
    data_bits: int
    byte_order: str

    if TYPE_CHECKING:
        # Provided by KeysightP9374AEmulator and SenseMixin.
        def _clear_data(self) -> None: ...
        def take_sweeps(self, count: int, *, advance_time: bool = True) -> None: ...
        def frequencies(self) -> np.ndarray: ...

    def _measurement(self) -> Measurement:
        if self.selected is None or self.selected not in self.measurements:
            raise ScpiError(SETTINGS_CONFLICT, "no measurement selected")
        return self.measurements[self.selected]

    # -- CALCulate: measurements ------------------------------------------------------------------
    @command("CALCulate<ch>:PARameter:CATalog:EXTended", query=True)
    @command("CALCulate<ch>:PARameter:CATalog", query=True)
    def _catalog(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        if not self.measurements:
            return '"NO CATALOG"'
        items = (f"{m.name},{m.parameter}" for _, m in sorted(self.measurements.items()))
        return '"' + ",".join(items) + '"'

    @command("CALCulate<ch>:PARameter:DEFine:EXTended")
    @command("CALCulate<ch>:PARameter[:DEFine]")
    def _define(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        name, parameter = args.text(0), _s_parameter(args, 1)
        if any(m.name == name for m in self.measurements.values()):
            raise ScpiError(SETTINGS_CONFLICT, f"measurement {name!r} exists")
        number = next(n for n in range(1, len(self.measurements) + 2)
                      if n not in self.measurements)
        self.measurements[number] = Measurement(name, parameter)

    @command("CALCulate<ch>:PARameter:DELete[:NAME]")
    def _delete(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        number = self._number_of(args.text())
        del self.measurements[number]
        self._data.pop(number, None)
        if self.selected == number:
            self.selected = None

    @command("CALCulate<ch>:PARameter:DELete:ALL")
    @no_argument
    def _delete_all(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self.measurements.clear()
        self.selected = None
        self._clear_data()

    @command("CALCulate<ch>:PARameter:SELect")
    def _select(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self.selected = self._number_of(args.text())

    @command("CALCulate<ch>:PARameter:SELect", query=True)
    def _get_selected(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return f'"{self._measurement().name}"'

    @command("CALCulate<ch>:PARameter:MNUMber[:SELect]")
    def _select_number(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        number = args.integer(low=1, high=200)
        if number not in self.measurements:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"no measurement number {number}")
        self.selected = number

    @command("CALCulate<ch>:PARameter:MNUMber[:SELect]", query=True)
    def _get_number(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        self._measurement()
        return str(self.selected)

    @command("CALCulate<ch>:PARameter:MODify:EXTended")
    @command("CALCulate<ch>:PARameter:MODify")
    def _modify(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
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
        check_channel(suffix)
        self._measurement().format = args.choice(0, _FORMATS)

    @command("CALCulate<ch>[:SELected]:FORMat", query=True)
    def _get_format(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return self._measurement().format

    @command("CALCulate<ch>[:SELected]:CORRection:EDELay[:TIME]")
    def _set_delay(self, args: Args, suffix: int) -> None:
        check_channel(suffix)
        self._measurement().electrical_delay = args.number(low=-10.0, high=10.0,
                                                           units=("S", "MS", "US", "NS", "PS"))

    @command("CALCulate<ch>[:SELected]:CORRection:EDELay[:TIME]", query=True)
    def _get_delay(self, args: Args, suffix: int) -> str:
        check_channel(suffix)
        return fmt(self._measurement().electrical_delay)

    @command("CALCulate<ch>[:SELected]:DATA", query=True)
    def _get_data(self, args: Args, suffix: int) -> str | bytes:
        check_channel(suffix)
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

    def _formatted(self, meas: Measurement, data: np.ndarray) -> np.ndarray:
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
            meas = self.measurements[suffix] = Measurement(f"CH1_S11_{suffix}", "S11")
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
        self.measurements[number] = Measurement(f"CH1_S11_{number}", "S11")
