"""Keysight P9374A Streamline USB vector network analyzer (2 ports, 300 kHz to 20 GHz).

Reuses QCoDeS's `KeysightP9374A` driver (base `qcodes.instrument_drivers.Keysight.N52xx`,
`KeysightPNABase`), whose commands follow the Keysight Network Analyzer Help, the SCPI
command reference of the PNA family that the Streamline P937xA shares
(na.support.keysight.com/pna/help, "SCPI Command Tree"), and adds the qnetlab VISA base and
the `VNA` role. The QCoDeS parameters already match the role: ``start``, ``stop`` and
``if_bandwidth`` in Hz, ``power`` in dBm, ``points``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qcodes.instrument_drivers.Keysight import KeysightP9374A as QcodesKeysightP9374A
from qcodes.validators import Numbers

from qnetlab.instruments.errors import InstrumentReplyError
from qnetlab.instruments.vna import VNA

from ..visa import QnetVisaInstrument

_OTHER_SWEEP_TYPES = frozenset({"POW", "CW", "SEGM", "PHAS"})
"""Sweep types of the P937xA that have no frequency axis (programming guide, SENS:SWE:TYPE)."""

MIN_FREQUENCY, MAX_FREQUENCY = 300e3, 20e9
"""Hz: the P9374A's frequency range (Streamline P937xA data sheet)."""


class KeysightP9374A(QcodesKeysightP9374A, QnetVisaInstrument, VNA):
    """Keysight P9374A, as a qnetlab `VNA`.

    `sweep()` measures trace 1 (the preset's S11 measurement ``CH1_S11_1``) through the QCoDeS
    trace machinery: one single sweep (or a group of ``averages`` sweeps when averaging is
    on), then ``CALC:DATA? FDATA`` in polar format, a binary block of (real, imaginary)
    float32 pairs.
    """

    def __init__(self, name: str, address: str, **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        # QCoDeS limits the stimulus to 300 MHz..20 GHz; the P9374A starts at 300 kHz.
        for param in (self.start, self.stop, self.center, self.cw):
            param.vals = Numbers(MIN_FREQUENCY, MAX_FREQUENCY)

    def connect_setup(self) -> None:
        """At connect and after every reconnect: traces as big-endian float32 blocks
        (``FORM REAL,32``, ``FORM:BORD NORM``), which the QCoDeS trace parsing assumes (it
        sends them in its ``__init__`` only)."""
        self.write("FORM REAL,32")
        self.write("FORM:BORD NORM")

    def sweep(self) -> tuple[np.ndarray, np.ndarray]:
        """Run one sweep of trace 1: frequencies (Hz) and complex S-parameter (linear).

        Only frequency sweeps (linear or logarithmic) have a frequency axis; a CW or power
        sweep raises ValueError.
        """
        sweep_type = self.sweep_type()
        if sweep_type == "LIN":
            axis = self.frequency_axis
        elif sweep_type == "LOG":
            axis = self.frequency_log_axis
        elif sweep_type in _OTHER_SWEEP_TYPES:
            raise ValueError(f"{self.name}: sweep() needs a LIN or LOG sweep, not {sweep_type}")
        else:  # not a sweep type at all: the reply is garbled, the session out of step
            self._needs_reconnect = True
            raise InstrumentReplyError(
                f"{self.name} at {self.address}: 'SENS:SWE:TYPE?' gave {sweep_type!r}, which "
                "is no sweep type of the P937xA (LIN, LOG, POW, CW, SEGM, PHAS). The session "
                "is reopened before the next command")
        s = np.asarray(self.polar(), dtype=complex)
        return np.asarray(axis(), dtype=float), s
