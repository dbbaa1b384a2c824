"""Every sequence by name, for ``qnetlab run SEQUENCE`` and the calibration graph.

Imported lazily: naming a sequence imports only its module.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import typing
from typing import Any

from .framework import LabSequence

_SEQUENCES = {
    "microwave_resonance_scan": "qnetlab.sequences.resonance:MicrowaveResonanceScan",
    "dark_count_scan": "qnetlab.sequences.detectors:DarkCountScan",
    "efficiency_bias_scan": "qnetlab.sequences.detectors:EfficiencyBiasScan",
    "tagger_delay_calibration": "qnetlab.sequences.timing:TaggerDelayCalibration",
    "awg_skew_calibration": "qnetlab.sequences.timing:AwgSkewCalibration",
    "optical_resonance_scan": "qnetlab.sequences.transducer.optical_resonance:OpticalResonanceScan",
    "efficiency_map": "qnetlab.sequences.transducer.efficiency:EfficiencyMap",
    "conversion_bandwidth_scan": "qnetlab.sequences.transducer.bandwidth:ConversionBandwidthScan",
    "added_noise_scan": "qnetlab.sequences.transducer.added_noise:AddedNoiseScan",
    "pump_heating_scan": "qnetlab.sequences.transducer.heating:PumpHeatingScan",
    "fridge_load_scan": "qnetlab.sequences.transducer.fridge_load:FridgeLoadScan",
}


def sequence_names() -> list[str]:
    return sorted(_SEQUENCES)


def sequence_class(name: str) -> type[LabSequence[Any]]:
    """The sequence class called `name`; ValueError naming the known ones otherwise."""
    if name not in _SEQUENCES:
        close = difflib.get_close_matches(name, _SEQUENCES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown sequence {name!r}; {hint}known: {', '.join(sequence_names())}")
    module, _, cls = _SEQUENCES[name].partition(":")
    found: type[LabSequence[Any]] = getattr(importlib.import_module(module), cls)
    return found


def parse_options(cls: type[LabSequence[Any]], assignments: list[str]) -> Any:
    """Build `cls`'s options from ``name=value`` strings (numbers in SI units, true/false,
    comma-separated lists for tuple fields); errors name the option and list the known ones."""
    options_class = cls.options_class
    fields = {f.name: f for f in dataclasses.fields(options_class)}
    hints = typing.get_type_hints(options_class)
    values: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ValueError(f"{cls.name}: cannot use option {item!r}; write NAME=VALUE with "
                             f"NAME one of: {', '.join(fields)}")
        values[key] = _convert(cls.name, key, text.strip(), hints.get(key, float))
    try:
        return options_class(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{cls.name}: {exc}") from None


def _convert(sequence: str, key: str, text: str, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    try:
        if hint is bool:
            if text.lower() not in {"true", "false", "1", "0", "on", "off"}:
                raise ValueError(text)
            return text.lower() in {"true", "1", "on"}
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint is str:
            return text
        if origin is tuple:
            item = args[0] if args else float
            return tuple(_convert(sequence, key, t.strip(), item) for t in text.split(","))
        if args:  # X | None
            return None if text.lower() == "none" else _convert(sequence, key, text, args[0])
    except ValueError:
        raise ValueError(f"{sequence}: option {key}={text!r} is not a valid {hint}") from None
    return text
