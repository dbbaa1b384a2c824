"""Automated characterization of a microwave-to-optical transducer.

Each step is a sequence that also runs alone; `TransducerCharacterization` composes them.
Bench operations are in `transducer.bench`, the efficiency fits in
`transducer.efficiency_fits` (the efficiency map's in `transducer.efficiency_map_fits`), photon
counting in `transducer.counting` (docs/transducer.md).
"""

from .added_noise import AddedNoiseScan, AddedNoiseScanOptions
from .bandwidth import ConversionBandwidthOptions, ConversionBandwidthScan
from .characterization import (
    CharacterizationOptions,
    CharacterizationResult,
    TransducerCharacterization,
)
from .counting import DeadTimeModel, count_clicks
from .efficiency import EfficiencyMap, EfficiencyMapOptions
from .fridge_load import FridgeCeilingError, FridgeLoadScan, FridgeLoadScanOptions
from .heating import PumpHeatingScan, PumpHeatingScanOptions
from .operating_point import OperatingPoint, recommend
from .optical_resonance import OpticalResonanceOptions, OpticalResonanceScan

__all__ = [
    "AddedNoiseScan",
    "AddedNoiseScanOptions",
    "CharacterizationOptions",
    "CharacterizationResult",
    "ConversionBandwidthOptions",
    "ConversionBandwidthScan",
    "DeadTimeModel",
    "EfficiencyMap",
    "EfficiencyMapOptions",
    "FridgeCeilingError",
    "FridgeLoadScan",
    "FridgeLoadScanOptions",
    "OperatingPoint",
    "OpticalResonanceOptions",
    "OpticalResonanceScan",
    "PumpHeatingScan",
    "PumpHeatingScanOptions",
    "TransducerCharacterization",
    "count_clicks",
    "recommend",
]
