"""The simulated lab's physics: transducer, fridge, detectors, time tagger, AWG, link, world.

Each emulator of a bench reads and drives one shared `LabWorld`; the models are usable on
their own (the tests hold them to their papers' numbers). Names load on first use
(`__getattr__`), so a bench without a link does not import the link simulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qnetlab.lazy_exports import lazy_attributes

if TYPE_CHECKING:
    from .awg import AwgModel, SequenceStep, Waveform
    from .clock import Clock, PacedClock, VirtualClock, WallClock
    from .fridge import FridgeModel
    from .link import node_optics_from_preset
    from .photons import DetectionPath, PhotonRates, incident_photon_rates, noise_bandwidth
    from .presets import PRESETS, TransducerPreset, get_preset
    from .snspd import SnspdChannel, SnspdModel
    from .time_tagger import TaggerChannel, TaggerStream, TimeTaggerModel, apply_dead_time
    from .transducer import PLANCK, SPEED_OF_LIGHT, TransducerModel, lorentzian
    from .world import LabWorld, MicrowaveDrive, PumpLaser, WorldSettings

_EXPORTS: dict[str, tuple[str, ...]] = {
    ".world": ("LabWorld", "MicrowaveDrive", "PumpLaser", "WorldSettings"),
    ".clock": ("Clock", "PacedClock", "VirtualClock", "WallClock"),
    ".transducer": ("PLANCK", "SPEED_OF_LIGHT", "TransducerModel", "lorentzian"),
    ".presets": ("PRESETS", "TransducerPreset", "get_preset"),
    ".fridge": ("FridgeModel",),
    ".photons": ("DetectionPath", "PhotonRates", "incident_photon_rates", "noise_bandwidth"),
    ".snspd": ("SnspdChannel", "SnspdModel"),
    # (the model's own `TagBlock` stays in `time_tagger`: the drivers' is
    # `qnetlab.instruments.TagBlock`)
    ".time_tagger": ("TaggerChannel", "TaggerStream", "TimeTaggerModel", "apply_dead_time"),
    ".awg": ("AwgModel", "SequenceStep", "Waveform"),
    ".link": ("node_optics_from_preset",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "PLANCK",
    "PRESETS",
    "SPEED_OF_LIGHT",
    "AwgModel",
    "Clock",
    "DetectionPath",
    "FridgeModel",
    "LabWorld",
    "MicrowaveDrive",
    "PacedClock",
    "PhotonRates",
    "PumpLaser",
    "SequenceStep",
    "SnspdChannel",
    "SnspdModel",
    "TaggerChannel",
    "TaggerStream",
    "TimeTaggerModel",
    "TransducerModel",
    "TransducerPreset",
    "VirtualClock",
    "WallClock",
    "Waveform",
    "WorldSettings",
    "apply_dead_time",
    "get_preset",
    "incident_photon_rates",
    "lorentzian",
    "node_optics_from_preset",
    "noise_bandwidth",
]


__getattr__, __dir__ = lazy_attributes(__name__, _MODULE_OF, __all__, globals())
