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

from instruments.vna import VNA

from .._visa import QnetVisaInstrument

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
        else:
            raise ValueError(f"{self.name}: sweep() needs a LIN or LOG sweep, not {sweep_type}")
        s = np.asarray(self.polar(), dtype=complex)
        return np.asarray(axis(), dtype=float), s
