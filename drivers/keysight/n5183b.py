"""Keysight N5183B MXG microwave analog signal generator.

Reuses QCoDeS's `KeysightN51x1` driver (its commands follow the Keysight X-Series Signal
Generators SCPI Command Reference, N5180-90056) and adds the qnetlab VISA base and the
`MicrowaveSource` role. Power limits are those of the N5183B data sheet (5991-0038EN).
"""

from __future__ import annotations

from typing import Any

from qcodes.instrument_drivers.Keysight.N51x1 import KeysightN51x1

from qnetlab.instruments.microwave_source import MicrowaveSource

from ..visa import QnetVisaInstrument


class KeysightN5183B(KeysightN51x1, QnetVisaInstrument, MicrowaveSource):
    """Keysight N5183B MXG, as a qnetlab `MicrowaveSource`."""

    def __init__(self, name: str, address: str, **kwargs: Any) -> None:
        super().__init__(name, address, min_power=-20, max_power=19, **kwargs)
