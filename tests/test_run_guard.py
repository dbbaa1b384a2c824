"""The run loop's safety: interlock pause/resume or clean stop, and the finish hook.

A small sequence switches the pump on at each step and reads the mixing chamber. The fridge is
warmed by a heat load injected into the simulated world (as a failing heat switch would), so
the interlock of lab_configs/transducer_bench.yaml (pump refused above 50 mK) trips mid-run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from qnetlab.instruments.station import LabStation, load_station
from qnetlab.sequences.analysis import Analysis, AnalysisResult, Reason, Verdict
from qnetlab.sequences.data import StoredRun, load_run
from qnetlab.sequences.framework import DatasetParameter, LabSequence, Step
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import BENCH_CONFIG

CEILING = 0.050  # K, the bench config's interlock maximum
# Equilibrium under a load P is sqrt(T_base^2 + P / a) with a = 0.04 W/K^2 (physics/fridge.py):
HOT_LOAD = 0.04 * (0.070**2 - 0.010**2)  # W: settles at 70 mK, above the ceiling


@dataclass(frozen=True)
class _Options:
    steps: int = 6
    heat_at_step: int = 2
    """Step at which the test's heat load switches on (-1: never)."""
    recover_after: float = -1.0
    """Lab time (s) after the fridge got hot at which the heat load goes away (-1: never)."""


class _Analysis(Analysis):
    sequence = "pump_and_read"

    def analyze(self, run: StoredRun) -> AnalysisResult:
        return AnalysisResult(self.sequence, run.run_id, {}, Verdict.ok() if run.data.get(
            "mxc_temperature", np.empty(0)).size else Verdict.bad(Reason.NO_SIGNAL, "no data"))


class _PumpAndRead(LabSequence[_Options]):
    name: ClassVar[str] = "pump_and_read"
    options_class = _Options
    analysis_class = _Analysis
    interlock_guard: ClassVar[dict[str, float]] = {"timeout": 1200.0, "poll_period": 20.0}

    def __init__(self, options: _Options | None = None, **changes: Any) -> None:
        super().__init__(options, **changes)
        self.finished = 0
        self.heated = False

    def dataset_parameters(self) -> list[DatasetParameter]:
        return [DatasetParameter("step", "", "Step"),
                DatasetParameter("mxc_temperature", "K", "MXC", setpoints=("step",))]

    def steps(self) -> list[Step]:
        return [Step(i, f"step {i}") for i in range(self.options.steps)]

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        setup = station.setup
        assert setup is not None
        world = bench_of(setup.mw_source).world
        if step.index == self.options.heat_at_step and not self.heated:
            self.heated = True
            world.set_extra_heat_load(HOT_LOAD)
            world.advance(600.0)  # the fridge warms past the ceiling
            if self.options.recover_after >= 0:
                _heat_switch_recovers_after(world, self.options.recover_after)
        setup.pump_on(True)  # refused by the interlock while the fridge is warm
        return {"step": np.array([step.index]),
                "mxc_temperature": np.array([setup.mxc_temperature()])}

    def finish(self, station: LabStation) -> None:
        self.finished += 1
        assert station.setup is not None
        station.setup.pump_on(False)


@pytest.fixture
def station() -> Iterator[LabStation]:
    with load_station(BENCH_CONFIG) as st:
        yield st


def _heat_switch_recovers_after(world: Any, seconds: float) -> None:
    """Remove the heat load once `seconds` of lab time have passed (polled by the guard's
    sleeps through the world's clock)."""
    clock = world.clock
    original = clock.advance
    deadline = world.now() + seconds

    def advance(dt: float) -> None:
        original(dt)
        if world.now() >= deadline:
            world.set_extra_heat_load(0.0)

    clock.advance = advance


def test_a_warm_fridge_pauses_the_pump_and_the_run_resumes(station: LabStation,
                                                           tmp_path: Path) -> None:
    seq = _PumpAndRead(heat_at_step=2, recover_after=60.0)
    result = seq.run(station, tmp_path / "lab.db", quiet=True)
    assert result.status == "completed" and result.points == 6
    (event,) = result.interlock_events
    assert event["outcome"] == "resumed" and event["step"] == 2
    assert event["reading"] > CEILING and event["waited"] > 0
    # Every step after the pause ran with the fridge back under 90 % of the ceiling.
    temps = load_run(result.run_id, tmp_path / "lab.db").data["mxc_temperature"]
    assert np.all(temps[2:] <= 0.9 * CEILING), temps
    stored = load_run(result.run_id, tmp_path / "lab.db").metadata["interlock_events"]
    assert stored == result.interlock_events
    assert seq.finished == 1 and station.setup is not None and not station.setup.pump_on()


def test_a_fridge_that_does_not_recover_stops_the_run_cleanly(station: LabStation,
                                                              tmp_path: Path) -> None:
    seq = _PumpAndRead(heat_at_step=2)  # the load is never removed
    result = seq.run(station, tmp_path / "lab.db", quiet=True)
    assert result.status == "interrupted" and result.points == 2  # steps 0 and 1 kept
    assert result.stopped_at is not None and result.stopped_at["label"] == "step 2"
    assert "InterlockTimeoutError" in result.stopped_at["cause"]
    (event,) = result.interlock_events
    assert event["outcome"] == "stopped" and event["waited"] == pytest.approx(1200.0)
    assert result.analysis is not None and result.analysis.verdict.reason == Reason.INTERRUPTED
    assert seq.finished == 1 and station.setup is not None and not station.setup.pump_on()


def test_finish_runs_after_ctrl_c_and_the_points_are_kept(station: LabStation,
                                                          tmp_path: Path) -> None:
    class _Interrupted(_PumpAndRead):
        def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
            if step.index == 4:
                raise KeyboardInterrupt
            return super().measure(station, step)

    seq = _Interrupted(heat_at_step=-1)
    with pytest.raises(KeyboardInterrupt):
        seq.run(station, tmp_path / "lab.db", quiet=True)
    assert seq.finished == 1 and seq.last_run is not None and seq.last_run.points == 4
    assert station.setup is not None and not station.setup.pump_on()


def test_a_failing_finish_is_raised_after_the_data_are_saved(station: LabStation,
                                                             tmp_path: Path) -> None:
    class _BrokenFinish(_PumpAndRead):
        def finish(self, station: LabStation) -> None:
            raise RuntimeError("pump laser did not answer")

    seq = _BrokenFinish(heat_at_step=-1, steps=3)
    with pytest.raises(RuntimeError, match="pump laser"):
        seq.run(station, tmp_path / "lab.db", quiet=True)
    assert seq.last_run is not None and seq.last_run.points == 3
    stored = load_run(seq.last_run.run_id, tmp_path / "lab.db")
    assert stored.data["step"].tolist() == [0, 1, 2]
    assert "pump laser" in stored.metadata["finish_error"]


def test_a_paused_run_says_so_on_its_progress_and_when_it_resumes(
        station: LabStation, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    seq = _PumpAndRead(heat_at_step=2, recover_after=60.0)
    result = seq.run(station, tmp_path / "lab.db")
    assert result.status == "completed"
    err = capfd.readouterr().err
    paused = [line for line in err.splitlines() if "PAUSED" in line]
    resumed = [line for line in err.splitlines() if "RESUMED" in line]
    assert len(paused) == 1 and len(resumed) == 1, err
    assert "before step 2" in paused[0] and "no_pump_on_warm_fridge" in paused[0]
    assert " K > " in paused[0] and "pump off" in paused[0]
    assert "pump on again" in resumed[0]
    # the pause comes between the progress lines of the steps around it
    lines = err.splitlines()
    assert lines.index(paused[0]) < lines.index(resumed[0])


def test_a_fridge_that_does_not_recover_says_stopped(station: LabStation, tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    _PumpAndRead(heat_at_step=2).run(station, tmp_path / "lab.db")
    err = capfd.readouterr().err
    assert "PAUSED before step 2" in err and "STOPPED:" in err and "RESUMED" not in err
