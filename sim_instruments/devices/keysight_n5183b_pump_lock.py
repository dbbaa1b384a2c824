"""Emulator of a Keysight N5183B driving the pump laser's offset sideband lock.

The same instrument and command set as `keysight_n5183b` (the qnetlab driver is the same);
only where its tone goes differs: it drives the phase modulator whose sideband is locked to
the transducer's optical cavity, so its frequency sets the pump's detuning from the drifting
resonance and its output state engages the lock (`physics.pump_lock`). The realistic lab's
timebase error applies to the emitted offset as to any N5183B tone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..physics.pump_lock import PumpLock, PumpLockSettings
from .keysight_n5183b import KeysightN5183BEmulator

if TYPE_CHECKING:
    from ..physics.world import LabWorld


class KeysightN5183BPumpLockEmulator(KeysightN5183BEmulator):
    """An N5183B whose tone is the pump lock's offset (twin ``keysight_n5183b_pump_lock``)."""

    def __init__(self, world: LabWorld, name: str) -> None:
        if world.pump_lock is None:  # the bench may have set the lab's settings already
            world.pump_lock = PumpLock(PumpLockSettings(), world.rng, ideal=world.ideal)
        super().__init__(world, name)

    def _push(self) -> None:
        lock = self.world.pump_lock
        assert lock is not None
        frequency = self.frequency
        if not self.world.ideal:
            frequency *= 1 + self.accuracy_errors()[0]
        lock.set_offset_source(frequency=frequency, on=self.output)
