"""The coverage study's record of what a simulated bench's world had (`tools/coverage_study.py`):
the drifting truths sampled at every step's edges while the characterization runs
(`recording_drift`), and `WorldTruth`, the device, fridge and that drift log."""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DriftSample:
    """The drifting truths at one lab time."""

    time: float
    """Lab time, s."""
    optical_frequency: float
    """Optical resonance frequency, Hz (as drifted, photorefractive shift included)."""
    mw_frequency: float
    """Microwave resonance frequency, Hz (as drifted)."""
    pump_power: float = math.nan
    """Pump power the device gets while the pump is on, W (the laser's true output, the
    coupling and its drift; sampled whether the pump is on or not)."""


@dataclass
class DriftLog:
    """Per sequence run, in the order run: (sequence name, samples at its steps' edges)."""

    runs: list[tuple[str, list[DriftSample]]] = field(default_factory=list)
    steps: list[tuple[str, list[dict[str, float]]]] = field(default_factory=list)
    """Per run (where recorded), its steps' settings: step k's samples are ``2k, 2k + 1``."""

    def swept(self, sequence: str, frequency: float) -> list[DriftSample]:
        """The samples at the start of the last run's steps of `sequence` whose sweep
        window (settings 'start'..'stop', Hz) held `frequency`; [] if none was recorded."""
        if len(self.steps) != len(self.runs):  # a log made by hand: no step settings
            return []
        for (name, samples), (_, steps) in zip(reversed(self.runs), reversed(self.steps),
                                               strict=True):
            if name != sequence or not samples:
                continue
            return [samples[2 * k] for k, settings in enumerate(steps)
                    if 2 * k < len(samples) and "start" in settings and "stop" in settings
                    and settings["start"] <= frequency <= settings["stop"]]
        return []

    def samples(self, sequence: str) -> list[DriftSample]:
        """The samples of the last run of `sequence` (the characterization's microwave step
        may run twice, wide then fine; its result is the last), or [] if it never ran."""
        for name, samples in reversed(self.runs):
            if name == sequence and samples:
                return samples
        return []


def sample(world: Any) -> DriftSample:
    """The world's drifting resonances and pump delivery now (ideal world: the transducer's
    own, the pump undrifted)."""
    pump = float(world.pump.power * world.pump_coupling)
    if not world.ideal:
        pump *= float(world.drift_state().pump_factor)
    return DriftSample(world.now(), world.optical_resonance_frequency(),
                       world.mw_resonance_frequency(), pump)


@contextlib.contextmanager
def recording_drift(world: Any) -> Iterator[DriftLog]:
    """While active, every `LabSequence.run` in this process samples `world` before and
    after each of its steps. The sequence's own `measure` is wrapped on the instance only
    (the class is untouched), and `run` is restored on exit."""
    from qnetlab.sequences.framework import LabSequence

    log = DriftLog()
    original = LabSequence.run

    def run(self: Any, station: Any, db_path: Any, **options: Any) -> Any:
        samples: list[DriftSample] = []
        steps: list[dict[str, float]] = []
        log.runs.append((self.name, samples))
        log.steps.append((self.name, steps))
        measure = self.measure

        def measured(station: Any, step: Any) -> Any:
            steps.append(dict(step.settings))
            samples.append(sample(world))
            try:
                return measure(station, step)
            finally:
                samples.append(sample(world))

        self.measure = measured  # shadows the class's method on this instance
        try:
            return original(self, station, db_path, **options)
        finally:
            del self.measure

    LabSequence.run = run  # type: ignore[method-assign]
    try:
        yield log
    finally:
        LabSequence.run = original  # type: ignore[method-assign]


@dataclass(frozen=True)
class WorldTruth:
    """What one bench's simulated world had: its device, fridge and drift log."""

    transducer: Any
    """The world's `TransducerModel` (the preset, undrifted)."""
    fridge: Any
    """The world's `FridgeModel` (cooling coefficient as drawn)."""
    drift: DriftLog

    def mean_optical(self, sequence: str) -> float:
        samples = self.drift.samples(sequence)
        if not samples:
            return float(self.transducer.optical_resonance_frequency)
        return statistics.fmean(s.optical_frequency for s in samples)

    def mean_mw(self, sequence: str) -> float:
        samples = self.drift.samples(sequence)
        if not samples:
            return float(self.transducer.mw_resonance_frequency)
        return statistics.fmean(s.mw_frequency for s in samples)

    def mw_when_swept(self, sequence: str, frequency: float) -> float:
        """The microwave resonance when the VNA swept `frequency` (Hz): the mean over the
        sweeps whose window held it (both passes of an up-and-down scan), each at its
        trigger; `mean_mw` when no step settings were recorded."""
        samples = self.drift.swept(sequence, frequency)
        if not samples:
            return self.mean_mw(sequence)
        return statistics.fmean(s.mw_frequency for s in samples)

    def mean_pump_power(self, sequence: str) -> float:
        """The pump power at the device during the last run of `sequence` (mean over its
        steps' edges), W; NaN when none was recorded."""
        values = [s.pump_power for s in self.drift.samples(sequence)]
        return statistics.fmean(values) if values else math.nan

    def drift_span(self, sequence: str, kind: str) -> float:
        """How far a resonance (`kind` 'optical' or 'mw') moved during the run, Hz."""
        values = [s.optical_frequency if kind == "optical" else s.mw_frequency
                  for s in self.drift.samples(sequence)]
        return max(values) - min(values) if values else 0.0
