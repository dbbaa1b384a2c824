"""The cables into a simulated time tagger: events taken from the bench's other emulators.

`BenchEvents` is an `EventSource` for the ID1000 emulator. Following the lab config's
``qnetlab.wiring``, a tagger input cabled to a detector (``snspd.ch1``) sees that SNSPD's
clicks, one cabled to an AWG marker (``awg.ch1.marker1``) the marker's rising edges, and an
uncabled input nothing. Clicks are Poisson at the SIM900 emulator's `click_rate(slot)` (drawing
every photon with `SnspdModel.clicks` is far too slow at a saturated detector); the tagger model
imposes its own dead time. A recording's window starting at 0 sets the epoch: world time now,
and the virtual clock stands still during a recording.

Details: docs/simulation.md#1-physics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .devices.idq_id1000 import N_INPUTS, IDQuantiqueID1000Emulator
from .devices.srs_sim900_quantum_opus import SIM900QuantumOpusEmulator
from .devices.tektronix_awg5208 import N_CHANNELS, N_MARKERS, TektronixAWG5208Emulator

if TYPE_CHECKING:
    from qnetlab.instruments.lab_config import LabConfig

    from .devices.scpi import ScpiDevice
    from .link_config import LinkSpec
    from .physics.world import LabWorld


@dataclass
class BenchEvents:
    """Tagger input events from the bench (see the module docstring)."""

    world: LabWorld
    detectors: dict[int, tuple[SIM900QuantumOpusEmulator, int]] = field(default_factory=dict)
    """Input -> (SIM900 emulator, slot)."""
    markers: dict[int, tuple[TektronixAWG5208Emulator, int, int]] = field(
        default_factory=dict)
    """Input -> (AWG emulator, channel from 1, marker from 1)."""
    epoch_ps: int = 0
    """World time (ps) of recording time 0."""

    def events(self, inputs: Sequence[int], start_ps: int, stop_ps: int,
               rng: np.random.Generator) -> dict[int, np.ndarray]:
        if start_ps == 0:
            self.epoch_ps = round(self.world.now() * 1e12)
        out: dict[int, np.ndarray] = {}
        for n in inputs:
            if n in self.detectors:
                sim900, slot = self.detectors[n]
                mean = sim900.click_rate(slot) * (stop_ps - start_ps) * 1e-12
                k = int(rng.poisson(mean)) if mean > 0 else 0
                # Given their number, Poisson arrivals are uniform order statistics.
                out[n] = np.sort(rng.integers(start_ps, stop_ps, k, dtype=np.int64))
            elif n in self.markers:
                out[n] = self._edges(*self.markers[n], start_ps, stop_ps)
            else:
                out[n] = np.empty(0, np.int64)
        return out

    def _edges(self, awg: TektronixAWG5208Emulator, channel: int, marker: int,
               start_ps: int, stop_ps: int) -> np.ndarray:
        lo, hi = self.epoch_ps + start_ps, self.epoch_ps + stop_ps
        # marker_edges counts from the start of the run; a long run makes this costlier,
        # which is fine for the recordings (ms to s) a bench test makes.
        run_s = (hi - awg.run_start_ps) * 1e-12
        if not awg.running or run_s <= 0:
            return np.empty(0, np.int64)
        edges = awg.marker_edges(run_s).get((channel, marker))
        if edges is None:
            return np.empty(0, np.int64)
        edges = np.asarray(edges, dtype=np.int64)
        return edges[(edges >= lo) & (edges < hi)] - self.epoch_ps


def wire_taggers(config: LabConfig, world: LabWorld, devices: dict[str, ScpiDevice],
                 link: LinkSpec | None = None) -> None:
    """Give each simulated tagger named in ``qnetlab.wiring`` a `BenchEvents` source, after
    checking every cable against the emulators on the bench (ConfigError naming the entry);
    with a simulated `link` (``qnetlab.simulation.link``), its tagger gets `LinkEvents`."""
    sources: dict[str, BenchEvents] = {}
    for tagger, wires in config.wiring.items():
        entry = f"qnetlab.wiring.{tagger}"
        device = devices.get(tagger)
        if device is None:
            continue  # no simulated twin (e.g. a real instrument only): nothing to route
        if not isinstance(device, IDQuantiqueID1000Emulator):
            raise config.error(entry, f"'{tagger}' is not a time tagger twin",
                               "key the wiring by the time tagger's instrument name")
        source = BenchEvents(world)
        for n, wire in wires.items():
            where = f"{entry}.{n}"
            if not 1 <= n <= N_INPUTS:
                raise config.error(where, f"the ID1000 has inputs 1-{N_INPUTS}, not {n}",
                                   f"use an input from 1 to {N_INPUTS}")
            other = devices.get(wire.instrument)
            if wire.marker is None:
                if not isinstance(other, SIM900QuantumOpusEmulator):
                    raise config.error(where, f"'{wire.instrument}' is not a simulated SNSPD "
                                       "(srs_sim900_quantum_opus)", "cable a detector "
                                       "channel as <snspd>.ch<slot>, a marker as "
                                       "<awg>.ch<n>.marker<m>")
                if wire.channel not in other.modules:
                    raise config.error(where, f"SIM900 slot {wire.channel} holds no module",
                                       f"use one of slots {sorted(other.modules)}")
                source.detectors[n] = (other, wire.channel)
            else:
                if not isinstance(other, TektronixAWG5208Emulator):
                    raise config.error(where, f"'{wire.instrument}' is not a simulated AWG "
                                       "(tektronix_awg5208)", "cable a marker from the AWG")
                if not (1 <= wire.channel <= N_CHANNELS and 1 <= wire.marker <= N_MARKERS):
                    raise config.error(where, f"the AWG5208 has channels 1-{N_CHANNELS} with "
                                       f"markers 1-{N_MARKERS}, not {wire}",
                                       "fix the channel or marker number")
                source.markers[n] = (other, wire.channel, wire.marker)
        device.source = source
        sources[tagger] = source
    if link is not None:
        from .link_events import attach_link  # only a station with a simulated link

        attach_link(config, link, devices, sources)
