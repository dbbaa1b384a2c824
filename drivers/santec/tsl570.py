"""Santec TSL-570 full-band tunable laser.

No QCoDeS or qcodes_contrib_drivers driver exists for the TSL-570 (contrib has none for any
Santec model), so this one is written from the santec TSL-570 Instruction Manual, chapter
"Remote interface", in its SCPI command mode:

* ``:WAVelength <nm>`` / ``:WAVelength?``: wavelength in nm (0.1 pm resolution);
  ``:WAVelength:MINimum?`` / ``:MAXimum?`` give the range of the installed type.
* ``:POWer[:LEVel] <value>`` in the unit set by ``:POWer:UNIT`` (0 = dBm, 1 = mW).
* ``:POWer:STATe 0|1``: LD current (optical output) off / on.
* ``:SYSTem:ERRor?``: error queue, ``0,"No error"`` when empty.
* ``*OPC?``: 0 while an operation (tuning to a new wavelength) is in progress, 1 once it is
  complete; the manual's own meaning, not IEEE 488.2's (which would block until 1). Public
  TSL-570 drivers read it so too (NQCP's photonicdrivers); not checked against a stored copy
  of the manual.

Tuning. A wavelength (or frequency) set returns at once, while the laser is still tuning;
the ``wavelength`` and ``frequency`` parameters poll ``*OPC?`` until it reads 1, so a set
returns with the output at its new wavelength, as a measurement that follows needs. The polls
go back to back (one query's round trip apart); past `TUNING_TIMEOUT_S` of wall time the set
raises `TimeoutError`.

Units: the driver sets ``:POWer:UNIT 1`` (mW) at connect and again after every reconnect
(`connect_setup`: the laser comes back from a power cycle in dBm) so that power is linear and
the W <-> mW conversion is a plain factor 1e-3; if someone switches the front panel to dBm
meanwhile, call `set_power_unit_mw()` again. Ranges (data sheet, 1480-1640 nm type):
output power -15 dBm to +13 dBm, i.e. 0.04 mW to 20 mW as the manual states them in mW.
The wavelength validator uses the range the instrument reports, so every TSL-570 type
(O-, E-, S/C/L-band) is held to its own limits.
"""

from __future__ import annotations

import time
from typing import Any

from qcodes.parameters import Parameter, create_on_off_val_mapping
from qcodes.validators import Numbers

from qnetlab.instruments.laser import Laser

from ..visa import QnetVisaInstrument

MIN_POWER = 0.04e-3
"""W, lowest settable output power (-15 dBm, given as 0.04 mW in the manual)."""
MAX_POWER = 20e-3
"""W, highest settable output power (+13 dBm, given as 20 mW in the manual)."""
TUNING_TIMEOUT_S = 30.0
"""s of wall time a set waits for ``*OPC?`` to read 1 (a full-band move takes well under 1 s
of tuning)."""


class SantecTSL570(QnetVisaInstrument, Laser):
    """Santec TSL-570 tunable laser, as a qnetlab `Laser`.

    Parameters: ``wavelength`` (m), ``power`` (W, at the output), ``output`` (LD on/off),
    ``frequency`` (Hz, the same setting as the wavelength).
    """

    # CR is the TSL-570's default delimiter on GPIB and LAN.
    default_terminator = "\r"
    default_timeout = 5.0
    error_query = ":SYST:ERR?"

    def __init__(self, name: str, address: str, **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        min_nm = self.ask_parsed(":WAV:MIN?", float, "the shortest wavelength, nm")
        max_nm = self.ask_parsed(":WAV:MAX?", float, "the longest wavelength, nm")

        self.wavelength: Parameter = self.add_parameter(
            "wavelength",
            label="Wavelength",
            unit="m",
            get_cmd=":WAV?",
            get_parser=float,
            set_cmd=lambda nm: self._tune(f":WAV {nm:.4f}"),
            scale=1e9,  # the instrument speaks nm
            vals=Numbers(min_nm * 1e-9, max_nm * 1e-9),
        )
        self.frequency: Parameter = self.add_parameter(
            "frequency",
            label="Optical frequency",
            unit="Hz",
            get_cmd=":WAV:FREQ?",
            get_parser=float,
            set_cmd=lambda thz: self._tune(f":WAV:FREQ {thz:.5f}"),
            scale=1e-12,  # the instrument speaks THz
            vals=Numbers(299_792_458.0 / (max_nm * 1e-9), 299_792_458.0 / (min_nm * 1e-9)),
        )
        self.power: Parameter = self.add_parameter(
            "power",
            label="Output power",
            unit="W",
            get_cmd=":POW?",
            get_parser=float,
            set_cmd=":POW {:.4f}",
            scale=1e3,  # mW, set at connect
            vals=Numbers(MIN_POWER, MAX_POWER),
        )
        self.output: Parameter = self.add_parameter(
            "output",
            label="Output (LD current)",
            get_cmd=":POW:STAT?",
            set_cmd=":POW:STAT {}",
            val_mapping=create_on_off_val_mapping(on_val="1", off_val="0"),
        )
        self.connect_message()

    def _tune(self, command: str) -> None:
        """Write a wavelength setting, then wait (``*OPC?`` polls) until the tuning is done."""
        self.write(command)
        deadline = time.monotonic() + TUNING_TIMEOUT_S
        while self.ask_parsed("*OPC?", _operation_complete, "operation status, 0 or 1") == 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: still tuning {TUNING_TIMEOUT_S} s after "
                                   f"{command!r} (*OPC? kept reading 0)")

    def connect_setup(self) -> None:
        """At connect and after every reconnect: ``power`` assumes mW (see the module)."""
        self.set_power_unit_mw()

    def set_power_unit_mw(self) -> None:
        """Make ``:POWer`` values mW (``:POWer:UNIT 1``), which the ``power`` scale assumes."""
        self.write(":POW:UNIT 1")


def _operation_complete(reply: str) -> int:
    """``*OPC?``'s reply: 0 (in progress) or 1 (complete)."""
    value = int(reply.strip())
    if value not in (0, 1):
        raise ValueError(f"not 0 or 1: {reply!r}")
    return value
