"""qnetlab: hardware-in-the-loop control for quantum-networking labs.

The command line lives in `qnetlab.cli` (`main`, and `exit_code`: the exit code of an error's
family); the packages are `instruments` (roles, station loading, safety), `drivers` (vendor
QCoDeS drivers), `sim_instruments` (physics and emulators), `sequences` and `network`, each
with its public names in its ``__all__``. The error families are here too, so a script can
catch by kind (``except qnetlab.InstrumentCommunicationError``).

Every ``import qnetlab.<package>`` runs this file first, and ``qnetlab --help`` must stay
fast: names load on first use (`__getattr__`), nothing is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy_exports import lazy_attributes

if TYPE_CHECKING:
    from .cli import exit_code, main
    from .instruments.errors import (
        ConfigError,
        InstrumentCommunicationError,
        InstrumentError,
        InstrumentRefusedError,
        Interrupted,
        QnetlabError,
        VerdictError,
    )

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, ...]] = {
    ".cli": ("exit_code", "main"),
    # the families of `qnetlab.instruments.errors`, each mapped to an exit code by the CLI
    ".instruments.errors": ("ConfigError", "InstrumentCommunicationError", "InstrumentError",
                            "InstrumentRefusedError", "Interrupted", "QnetlabError",
                            "VerdictError"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "ConfigError",
    "InstrumentCommunicationError",
    "InstrumentError",
    "InstrumentRefusedError",
    "Interrupted",
    "QnetlabError",
    "VerdictError",
    "__version__",
    "exit_code",
    "main",
]


__getattr__, __dir__ = lazy_attributes(__name__, _MODULE_OF, __all__, globals())
