"""The simulated lab: a bench of emulated instruments on one physics world, and its transports.

`build_bench` makes a `SimulatedBench` from a lab config; the drivers reach it through the
in-process VISA backend (`QnetlabVisaLibrary`, selected by the station's ``sim`` profile) or
through the TCP servers of ``qnetlab sim serve`` (`BenchServer`, `ControlClient` for its
JSON control port; `ID1000Server` for the ZeroMQ time tagger). Faults: `FaultPlan` on a
connection, the `faults_world` functions on the physics. The models are in `physics`, the
emulators in `devices`. Names load on first use (`__getattr__`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qnetlab.lazy_exports import lazy_attributes

if TYPE_CHECKING:
    from .bench import IDEAL_DEFAULT, SimulatedBench, build_bench, build_world
    from .faults import Fault, FaultPlan
    from .faults_world import (
        drift_optical_resonance,
        drop_detector_efficiency,
        heat_mixing_chamber,
        shift_tagger_input_delay,
        simulated_bench,
    )
    from .ports import free_port_run
    from .server import BenchServer, ControlClient
    from .visa_backend import QnetlabVisaLibrary, bench_of
    from .zmq_server import ID1000Server

_EXPORTS: dict[str, tuple[str, ...]] = {
    ".bench": ("IDEAL_DEFAULT", "SimulatedBench", "build_bench", "build_world"),
    ".visa_backend": ("QnetlabVisaLibrary", "bench_of"),
    ".server": ("BenchServer", "ControlClient"),
    ".zmq_server": ("ID1000Server",),
    ".ports": ("free_port_run",),
    ".faults": ("Fault", "FaultPlan"),
    ".faults_world": ("drift_optical_resonance", "drop_detector_efficiency",
                      "heat_mixing_chamber", "shift_tagger_input_delay", "simulated_bench"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "IDEAL_DEFAULT",
    "BenchServer",
    "ControlClient",
    "Fault",
    "FaultPlan",
    "ID1000Server",
    "QnetlabVisaLibrary",
    "SimulatedBench",
    "bench_of",
    "build_bench",
    "build_world",
    "drift_optical_resonance",
    "drop_detector_efficiency",
    "free_port_run",
    "heat_mixing_chamber",
    "shift_tagger_input_delay",
    "simulated_bench",
]


__getattr__, __dir__ = lazy_attributes(__name__, _MODULE_OF, __all__, globals())
