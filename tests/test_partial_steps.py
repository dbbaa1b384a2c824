"""Points measured inside a step that did not finish are kept (issue 11 item 2).

A step that measures point by point hands each point to `LabSequence.keep`; when the run stops
inside the step (an instrument timeout, Ctrl-C, an interlock pause that retries the step),
the framework writes those points and records which rows they are
(``qnetlab_partial_steps``). Writes stay batched: one ``add_result`` per step.
Each test drives the real drivers against the simulated bench over the in-process VISA
backend and has its own database in tmp_path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from qnetlab.instruments.errors import InstrumentTimeoutError, InterlockError
from qnetlab.instruments.station import LabStation, load_station
from qnetlab.sequences.analysis import Analysis, AnalysisResult, Verdict
from qnetlab.sequences.data import StoredRun, load_run
from qnetlab.sequences.framework import DatasetParameter, LabSequence, Step
from qnetlab.sequences.transducer.bandwidth import ConversionBandwidthScan
from qnetlab.sequences.transducer.efficiency import EfficiencyMap
from qnetlab.sequences.transducer.fridge_load import FridgeLoadScan
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import BENCH_CONFIG


@pytest.fixture
def station() -> Iterator[LabStation]:
    with load_station(BENCH_CONFIG) as st:
        yield st


def _stop_after(sequence: LabSequence[Any], step: int, kept: int, action: Any) -> None:
    """Call `action` once `sequence` has kept `kept` points of step `step` (the moment a
    fault or a Ctrl-C arrives between two points)."""
    original = sequence.keep
    seen: list[int] = []

    def keep(points: Any) -> None:
        original(points)
        if sequence._buffer.rows == kept and not seen and _current_step(sequence) == step:
            seen.append(1)
            action()

    sequence.keep = keep  # type: ignore[method-assign]


def _current_step(sequence: LabSequence[Any]) -> int:
    return int(getattr(sequence, "_step_index", -1))


def _track_steps(sequence: LabSequence[Any]) -> None:
    measure = sequence.measure

    def tracked(station: LabStation, step: Step) -> dict[str, np.ndarray]:
        sequence._step_index = step.index  # type: ignore[attr-defined]
        return measure(station, step)

    sequence.measure = tracked  # type: ignore[method-assign]


def test_a_timeout_inside_an_efficiency_map_step_keeps_its_detunings(
        station: LabStation, tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    meter = station.setup.power_meter  # type: ignore[union-attr]
    meter.timeout(0.5)
    faults = bench_of(meter).faults("power_meter")
    seq = EfficiencyMap(powers=4, averaging=10)
    per_step = seq.options.detunings().size
    _track_steps(seq)
    # Three powers done (the fit needs three), the fourth stopped after 7 detunings.
    _stop_after(seq, 3, 7, lambda: faults.inject("no_reply"))
    result = seq.run(station, db, quiet=True)  # an instrument error returns, not raises

    done = 3 * per_step
    assert result.interrupted and result.points == done + 7
    assert result.stopped_at is not None and result.stopped_at["step"] == 3
    assert result.stopped_at["points_of_unfinished_step"] == 7
    assert "InstrumentTimeoutError" in result.stopped_at["cause"]
    stored = load_run(result.run_id, db)
    assert stored.status == "interrupted"
    (partial,) = stored.partial_steps
    assert partial["step"] == 3 and partial["label"] == seq.steps()[3].label
    assert partial["first_row"] == done and partial["rows"] == 7
    assert partial["why"].startswith("unfinished")
    assert partial["columns"]["pump_detuning"] == [done, 7]
    for name, values in stored.data.items():
        assert values.size == done + 7, name
    # The kept rows are the first 7 detunings of step 3 (serpentine: reversed), at its power.
    rows = slice(done, done + 7)
    assert np.allclose(stored.data["pump_power"][rows], seq.steps()[3].settings["pump_power"],
                       rtol=1e-3)
    assert np.allclose(stored.data["pump_detuning"][rows],
                       seq.options.detunings()[::-1][:7], atol=20e6)
    # The efficiency map uses them (every row is a complete point) and says so.
    analysis = result.analysis
    assert analysis is not None and not analysis.verdict.good
    assert "used 7 points of the unfinished step" in analysis.verdict.detail
    assert len(analysis.tables["map"]["eta"]) == done + 7
    assert not station.setup.pump_on()  # type: ignore[union-attr]


def test_ctrl_c_inside_a_fridge_load_hold_keeps_its_readings(station: LabStation,
                                                             tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    seq = FridgeLoadScan(pump_powers=(0.0, 2e-3, 4e-3), readings=12, hold_time=120.0)
    _track_steps(seq)

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    _stop_after(seq, 1, 5, ctrl_c)
    with pytest.raises(KeyboardInterrupt) as info:
        seq.run(station, db, quiet=True)
    partial_run = seq.last_run
    assert partial_run is not None and partial_run.points == 12 + 5
    assert any(f"run {partial_run.run_id}" in n and "kept 17 points" in n
               for n in info.value.__notes__)
    stored = load_run(partial_run.run_id, db)
    assert stored.status == "interrupted"
    assert stored.metadata["stopped_at"]["points_of_unfinished_step"] == 5
    (partial,) = stored.partial_steps
    assert (partial["step"], partial["first_row"], partial["rows"]) == (1, 12, 5)
    assert stored.data["temperature"].size == 17
    assert np.all(stored.data["step"][12:] == 1)
    assert not station.setup.pump_on()  # type: ignore[union-attr]


def test_ctrl_c_inside_a_bandwidth_chunk_keeps_its_frequencies(station: LabStation,
                                                                tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    seq = ConversionBandwidthScan(points=40, segments=4, averaging=10)
    _track_steps(seq)

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    _stop_after(seq, 2, 3, ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        seq.run(station, db, quiet=True)
    stored = load_run(seq.last_run.run_id, db)  # type: ignore[union-attr]
    (partial,) = stored.partial_steps
    assert (partial["step"], partial["first_row"], partial["rows"]) == (2, 20, 3)
    assert np.allclose(stored.data["mw_frequency"],
                       seq.options.acquisition_order()[:23], rtol=0, atol=1.0)
    assert not station.setup.pump_on()  # type: ignore[union-attr]


def test_a_step_is_still_one_batched_write(station: LabStation, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from qcodes.dataset.measurements import DataSaver

    calls: list[int] = []
    original = DataSaver.add_result

    def counted(self: Any, *results: Any) -> None:
        calls.append(len(np.atleast_1d(results[0][1])))
        original(self, *results)

    monkeypatch.setattr(DataSaver, "add_result", counted)
    seq = FridgeLoadScan(pump_powers=(0.0, 2e-3), readings=10, hold_time=60.0)
    result = seq.run(station, tmp_path / "lab.db", quiet=True)
    assert result.status == "completed" and result.partial_steps == []
    assert calls == [10, 10]  # one add_result per step, never one per reading


# -- a toy sequence: the interlock retry, and how analyses treat partial steps ----------------
@dataclass(frozen=True)
class ToyOptions:
    points_per_step: int = 4
    steps: int = 3


class ToyAnalysis(Analysis):
    """Counts the rows it was given (in `details`), good otherwise."""

    sequence = "toy_scan"

    def analyze(self, run: StoredRun) -> AnalysisResult:
        return AnalysisResult(self.sequence, run.run_id, {}, Verdict.ok(),
                              details={"rows": float(run.data["x"].size)})


class ToyUsingPartial(ToyAnalysis):
    uses_partial_steps = True


class ToyScan(LabSequence[ToyOptions]):
    """Keeps one point at a time; step 1's first attempt is refused by an interlock after
    two points (`fail_first_attempt`), or step `stop_at` raises `error` after two points."""

    name: ClassVar[str] = "toy_scan"
    options_class: ClassVar[type] = ToyOptions
    analysis_class: ClassVar[type[Analysis]] = ToyAnalysis

    def __init__(self, *, fail_first_attempt: bool = False, stop_at: int | None = None,
                 error: BaseException | None = None) -> None:
        super().__init__()
        self.fail_first_attempt, self.stop_at, self.error = fail_first_attempt, stop_at, error
        self.attempts: list[int] = []
        self.finished = False

    def dataset_parameters(self) -> list[DatasetParameter]:
        return [DatasetParameter("x", "", "x"), DatasetParameter("y", "", "y", ("x",))]

    def steps(self) -> list[Step]:
        return [Step(i, f"step {i}") for i in range(self.options.steps)]

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        self.attempts.append(step.index)
        for i in range(self.options.points_per_step):
            x = step.index * self.options.points_per_step + i
            self.keep({"x": float(x), "y": float(self.attempts.count(step.index))})
            if i == 1 and step.index == 1 and self.fail_first_attempt \
                    and self.attempts.count(1) == 1:
                raise InterlockError("pump refused: the fridge is warm (test)")
            if i == 1 and step.index == self.stop_at and self.error is not None:
                raise self.error
        return {}

    def finish(self, station: LabStation) -> None:
        self.finished = True


def test_an_interlock_retry_keeps_the_first_attempt_and_marks_it(station: LabStation,
                                                                 tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    seq = ToyScan(fail_first_attempt=True)
    result = seq.run(station, db, quiet=True)
    assert result.status == "completed" and seq.attempts == [0, 1, 1, 2]
    assert result.points == 12 + 2
    stored = load_run(result.run_id, db)
    (partial,) = stored.partial_steps
    assert (partial["step"], partial["first_row"], partial["rows"]) == (1, 4, 2)
    assert partial["why"].startswith("paused by an interlock")
    assert stored.data["y"][4:6].tolist() == [1.0, 1.0]  # the first attempt's points
    assert stored.data["y"][6:10].tolist() == [2.0] * 4  # the retry's
    # Never analyzed twice: the retried step's first attempt is left out, with a note.
    analysis = result.analysis
    assert analysis is not None and analysis.verdict.good
    assert analysis.details["rows"] == 12
    assert "left out 2 points of first attempts" in analysis.verdict.detail


@pytest.mark.parametrize("uses", [False, True])
def test_analyses_leave_out_or_use_the_unfinished_step_and_say_so(
        station: LabStation, tmp_path: Path, uses: bool) -> None:
    db = tmp_path / "lab.db"
    seq = ToyScan(stop_at=2, error=InstrumentTimeoutError("no answer (test)"))
    result = seq.run(station, db, quiet=True)
    assert result.interrupted and result.points == 8 + 2 and seq.finished
    cls = ToyUsingPartial if uses else ToyAnalysis
    analysis = cls().run(result.run_id, db, save=False)
    assert analysis.details["rows"] == (10 if uses else 8)
    word = "used" if uses else "left out"
    assert f"{word} 2 points of the unfinished step step 2 (rows 8-9)" in \
        analysis.verdict.detail
    assert not analysis.verdict.good  # interrupted: never good


def test_keep_refuses_inconsistent_points() -> None:
    seq = ToyScan()
    seq.keep({"x": 1.0, "y": 2.0})
    with pytest.raises(ValueError, match="same columns"):
        seq.keep({"x": 1.0})
    with pytest.raises(ValueError, match="same number of points"):
        ToyScan().keep({"x": [1.0, 2.0], "y": [1.0]})

