"""Each bridge path's arm delay and its calibration time, as records of the calibration
graph's parameter store (`sequences.calibration.store.ParameterStore`), read by the
orchestrator.

The single link keeps its arm delays in the link's store (scope ``link``, node
``link.arm_delay_<node>``, values ``arm_delay_<node>_det<d>``). The bridge keeps one record
per path (QNU, station) in its own store (the bridge config's ``calibration.database``): node
``bridge.arm_delay_<qnu>_<station>``, value ``arm_delay_<qnu>_<station>`` (s), committed by
a good calibrate event whose time is the calibration's.

- **Seeds.** A path with no record is seeded from the bridge config (``calibration.paths``:
  its arm delay, committed at now - age), the event saying it was seeded from the config and
  not measured. A path with a record keeps it: the store, not the config, is the lab's truth
  once it exists (edit the store, e.g. by a calibration, to change a path).
- **Reading.** The orchestrator builds its topology's calibration times from the records
  (`anchored`), on the run's clock (0 = the run's start).
- **Re-checks.** A path older than ``calibration.lifetime`` is re-checked before use (the
  scheduler's RECHECK, costing ``calibration.recheck_time``). With heralding-station
  processes the station measures where the path's photons arrive (its tagger, ungated for
  ``recheck_time``: `network.station_arms`) and the value is committed as a calibration of
  the path (`measured`). With the simulated link model nothing can measure an arm delay, so
  the re-check is a RECORDED step (`recheck`): a ``recheck`` event on the path's node ("not
  measured", with its cost), which renews the path's checked time; the stored arm delay is
  kept.

Times in the store are s since the epoch on the bridge's clock anchored at the run's start
(wall time at ``time_scale`` 1). Details: docs/bridge.md#per-path-calibrations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .topology import BridgeTopology

if TYPE_CHECKING:
    from qnetlab.sequences.calibration.store import ParameterStore

SCOPE = "bridge"
RECHECK = "recheck"
"""The operation of a path's recorded re-check event."""
NOT_MEASURED = "not measured"
"""Its outcome: a recorded step, no measurement (module docstring)."""


def path_node(qnu: str, station: str) -> str:
    """The calibration node of path (`qnu`, `station`)."""
    return f"{SCOPE}.arm_delay_{qnu}_{station}"


def path_value(qnu: str, station: str) -> str:
    """The store name of the path's arm delay (s)."""
    return f"arm_delay_{qnu}_{station}"


@dataclass(frozen=True)
class PathRecord:
    """A path's record (s; times since the epoch)."""

    qnu: str
    station: str
    arm_delay: float
    calibrated: float
    """When its arm delay was last calibrated (or seeded)."""
    checked: float
    """When it was last calibrated or re-checked: what its age is counted from."""


class PathCalibrations:
    """The bridge's per-path records in its calibration store (module docstring)."""

    def __init__(self, db_path: str | Path, seeds: Mapping[tuple[str, str], tuple[float, float]],
                 *, source: str = "the bridge config", recheck_time: float = 0.2,
                 now: Callable[[], float] = time.time) -> None:
        """`seeds`: (QNU, station) -> (age s, arm delay s) from the config; `source` names
        it in the seed events; `now`: s since the epoch."""
        from qnetlab.sequences.calibration.store import ParameterStore

        self.db_path = Path(db_path)
        self.seeds = dict(seeds)
        self.source, self.recheck_time, self.now = source, recheck_time, now
        self.store: ParameterStore = ParameterStore(self.db_path, now=now)
        self.run_start = now()
        """s since the epoch at the run's 0 (set again by `anchored`)."""

    # -- seeding and reading ---------------------------------------------------------------
    def seed(self) -> list[tuple[str, str]]:
        """Record the config's values for every path without a record; the paths seeded."""
        from qnetlab.sequences.calibration.graph import CalibrationOutcome
        from qnetlab.sequences.calibration.store import ParameterStore

        now = self.now()
        seeded = []
        for (qnu, station), (age, delay) in self.seeds.items():
            if self.store.current(path_value(qnu, station)) is not None:
                continue
            ParameterStore(self.db_path, now=_fixed(now - age)).record_calibration(
                path_node(qnu, station), CalibrationOutcome(
                    True, f"seeded from {self.source} (calibration.paths.{qnu}/{station}: "
                    f"age {age:g} s, arm delay {delay:g} s): NOT measured",
                    {path_value(qnu, station): (delay, "s")}))
            seeded.append((qnu, station))
        return seeded

    def record(self, qnu: str, station: str) -> PathRecord:
        """The path's record (seeding the store first if it has none)."""
        stored = self.store.current(path_value(qnu, station))
        if stored is None:
            self.seed()
            stored = self.store.current(path_value(qnu, station))
        if stored is None:
            raise KeyError(f"path {qnu}/{station} has no record in {self.db_path} and no "
                           "seed: add it to the bridge config's calibration.paths")
        checks = [e.time for e in self.store.events(path_node(qnu, station))
                  if e.operation == RECHECK and e.time >= stored.time]
        return PathRecord(qnu, station, stored.value, stored.time,
                          max([stored.time, *checks]))

    def anchored(self, topology: BridgeTopology) -> BridgeTopology:
        """`topology` with each path's calibration time from its record, on the run's clock
        (0 = now: `run_start`)."""
        self.seed()
        self.run_start = self.now()
        at = np.array([[self.record(q, s).checked - self.run_start for s in topology.stations]
                       for q in topology.qnus], dtype=float)
        return replace(topology, path_calibrated_at=at)

    # -- re-checks --------------------------------------------------------------------------
    def recheck(self, qnu: str, station: str, run_time: float) -> PathRecord:
        """Record the path's re-check, done at `run_time` (s on the run's clock): NOT a
        measurement (module docstring); its checked time is renewed, its arm delay kept."""
        record = self.record(qnu, station)
        age = self.run_start + run_time - record.checked
        self.store.record_step(
            path_node(qnu, station), RECHECK, NOT_MEASURED,
            f"re-check of path {qnu}-{station} before use, {age:.0f} s after it was last "
            f"checked: NOT measured (the simulated link model has no instrument that "
            f"measures an arm delay: no station process runs); a recorded step costing "
            f"{self.recheck_time:g} s of bridge time; arm delay {record.arm_delay:g} s kept",
            at=self.run_start + run_time)
        return self.record(qnu, station)


    def measured(self, qnu: str, station: str, run_time: float, arm_delay: float,
                 error: float, detail: str) -> PathRecord:
        """Commit the path's arm delay as its re-check at `run_time` (s on the run's clock)
        measured it: a good calibration of its node, the new value with its error."""
        from qnetlab.sequences.calibration.graph import CalibrationOutcome
        from qnetlab.sequences.calibration.store import ParameterStore

        name = path_value(qnu, station)
        ParameterStore(self.db_path, now=_fixed(self.run_start + run_time)).record_calibration(
            path_node(qnu, station), CalibrationOutcome(
                True, f"re-check of path {qnu}-{station} before use: {detail}",
                {name: (arm_delay, "s")}, errors={name: error}))
        return self.record(qnu, station)


def _fixed(at: float) -> Callable[[], float]:
    """A store clock stopped at `at` (s since the epoch): a seed is committed at its age."""
    return lambda: at
