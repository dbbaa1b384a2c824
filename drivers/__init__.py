"""Vendor QCoDeS drivers implementing the roles of `qnetlab.instruments`, and their bases.

The drivers, one per supported model, live in a subpackage per vendor
(``qnetlab.drivers.keysight.KeysightN5183B`` is how a lab config names one); each is also
importable from here. A new driver subclasses the vendor's QCoDeS driver where one exists,
then `QnetVisaInstrument` (or `ZmqInstrument` for a text-over-ZeroMQ instrument) and the role
last; `parse_reply` turns a reply its own code parses into a named `InstrumentReplyError`.
Names load on first use (`__getattr__`): a station that loads one driver does not import the
others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qnetlab.lazy_exports import lazy_attributes

if TYPE_CHECKING:
    from ._replies import parse_reply
    from .idquantique import IDQuantiqueID1000
    from .keysight import KeysightN5183B, KeysightP9374A
    from .lakeshore import LakeshoreModel372
    from .polatis import PolatisSeries6000
    from .quantum_opus import QuantumOpusSIM900
    from .santec import SantecTSL570
    from .tektronix import TektronixAWG5208
    from .thorlabs import ThorlabsPM100D
    from .visa import STANDARD_ESR_ERRORS, QnetVisaInstrument
    from .zmq_instrument import ZmqInstrument, ZmqRequester

_EXPORTS: dict[str, tuple[str, ...]] = {
    # the bases a driver builds on
    ".visa": ("STANDARD_ESR_ERRORS", "QnetVisaInstrument"),
    ".zmq_instrument": ("ZmqInstrument", "ZmqRequester"),
    "._replies": ("parse_reply",),
    # the drivers
    ".idquantique": ("IDQuantiqueID1000",),
    ".keysight": ("KeysightN5183B", "KeysightP9374A"),
    ".lakeshore": ("LakeshoreModel372",),
    ".polatis": ("PolatisSeries6000",),
    ".quantum_opus": ("QuantumOpusSIM900",),
    ".santec": ("SantecTSL570",),
    ".tektronix": ("TektronixAWG5208",),
    ".thorlabs": ("ThorlabsPM100D",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "STANDARD_ESR_ERRORS",
    "IDQuantiqueID1000",
    "KeysightN5183B",
    "KeysightP9374A",
    "LakeshoreModel372",
    "PolatisSeries6000",
    "QnetVisaInstrument",
    "QuantumOpusSIM900",
    "SantecTSL570",
    "TektronixAWG5208",
    "ThorlabsPM100D",
    "ZmqInstrument",
    "ZmqRequester",
    "parse_reply",
]


__getattr__, __dir__ = lazy_attributes(__name__, _MODULE_OF, __all__, globals())
