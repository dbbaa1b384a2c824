"""The sequence framework and `MicrowaveResonanceScan` on the simulated transducer bench.

The fitted uncertainties are the least-squares covariance scaled by the residual noise
(sequences/resonance.py); the simulated VNA adds white complex Gaussian receiver noise with
its own seeded generator, so these are the honest one-sigma errors of one scan. Each test
has its own database in tmp_path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qnetlab.instruments.errors import InstrumentTimeoutError, QnetlabError
from qnetlab.instruments.station import LabStation, load_station
from qnetlab.sequences.analysis import AnalysisResult, Reason, analyze_run, stored_analysis
from qnetlab.sequences.data import load_run
from qnetlab.sequences.resonance import MicrowaveResonanceAnalysis, MicrowaveResonanceScan
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import BENCH_CONFIG

SIGMAS = 5.0


@pytest.fixture
def station() -> Iterator[LabStation]:
    with load_station(BENCH_CONFIG) as st:
        yield st


def truth(station: LabStation) -> Any:
    return bench_of(station.instrument("vna")).world.transducer


def test_scan_recovers_the_resonance_within_its_uncertainties(
        station: LabStation, tmp_path: Path) -> None:
    model = truth(station)
    db = tmp_path / "lab.db"
    # Off-centre on purpose: the fit must find the resonance, not be handed it.
    scan = MicrowaveResonanceScan(center=model.mw_resonance_frequency + 7e6, span=8e6 * 10)
    result = scan.run(station, db, quiet=True)
    assert result.status == "completed" and result.points == scan.options.points
    analysis = result.analysis
    assert analysis is not None and analysis.verdict.good, analysis
    for name, true in (("resonance_frequency", model.mw_resonance_frequency),
                       ("linewidth", model.mw_linewidth), ("eta_e", model.mw_coupling_ratio)):
        fitted = analysis.values[name]
        assert 0 < fitted.stderr < abs(true) * 1e-2, (name, fitted)
        assert abs(fitted.value - true) < SIGMAS * fitted.stderr, (name, fitted, true)
    assert analysis.proposed == {
        "mw_resonance_frequency": analysis.values["resonance_frequency"].value,
        "mw_linewidth": analysis.values["linewidth"].value}
    assert len(analysis.figures) == 1
    png = Path(analysis.figures[0])
    assert png.parent == tmp_path / "lab_figures"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    stored = load_run(result.run_id, db)
    assert stored.status == "completed"
    assert stored.options["span"] == 80e6
    assert "vna" in stored.snapshot["station"]["instruments"]  # type: ignore[index]
    assert stored.units["frequency"] == "Hz"


def test_analysis_reruns_from_the_stored_dataset_alone(station: LabStation,
                                                       tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    live = MicrowaveResonanceScan(center=8.0e9, span=60e6, points=201).run(
        station, db, quiet=True)
    station.close()  # offline: no instrument is left
    assert live.analysis is not None
    again = analyze_run(live.run_id, db)
    direct = MicrowaveResonanceAnalysis().run(live.run_id, db, save=False)
    assert again.to_json() == live.analysis.to_json()
    assert direct.values == live.analysis.values and direct.verdict == live.analysis.verdict
    stored = stored_analysis(live.run_id, db)
    assert stored is not None
    assert stored.to_json() == live.analysis.to_json()
    assert AnalysisResult.from_json(stored.to_json()) == stored


@pytest.mark.parametrize("offset", [1e9, 70e6])  # far away; only the resonance's tail seen
def test_a_window_that_misses_the_resonance_is_bad_and_keeps_its_data(
        station: LabStation, tmp_path: Path, offset: float) -> None:
    db = tmp_path / "lab.db"
    center = truth(station).mw_resonance_frequency + offset
    result = MicrowaveResonanceScan(center=center, span=80e6, points=201).run(
        station, db, quiet=True)
    analysis = result.analysis
    assert analysis is not None and not analysis.verdict.good
    assert analysis.verdict.reason is Reason.NO_SIGNAL
    assert "no resonance dip in the scan window" in analysis.verdict.detail
    assert analysis.proposed == {}
    stored = load_run(result.run_id, db)
    assert stored.data["frequency"].size == stored.data["s11"].size == 201
    assert stored.metadata["analysis"]["verdict"]["good"] is False
    assert Path(analysis.figures[0]).is_file()  # the failed fit still shows its data


class _SweepStopsAt:
    """Wraps `vna.sweep` so that call number `at` (1-based) misbehaves."""

    def __init__(self, vna: Any, at: int, action: Any) -> None:
        self.original, self.at, self.action, self.calls = vna.sweep, at, action, 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.calls == self.at:
            self.action()
        return self.original()


def test_an_instrument_timeout_keeps_the_points_so_far(station: LabStation, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "lab.db"
    vna = station.setup.vna  # type: ignore[union-attr]
    faults = bench_of(vna).faults("vna")
    monkeypatch.setattr(vna, "sweep", _SweepStopsAt(vna, 4, lambda: faults.inject("no_reply")))
    scan = MicrowaveResonanceScan(center=8.0e9, span=80e6, points=200, segments=10)
    result = scan.run(station, db, quiet=True)  # an instrument error returns, not raises
    assert result.interrupted and result.points == 60
    assert result.stopped_at is not None
    assert result.stopped_at["step"] == 3 and result.stopped_at["steps_done"] == 3
    assert "segment 4/10" in result.stopped_at["label"]
    assert "InstrumentTimeoutError" in result.stopped_at["cause"]
    stored = load_run(result.run_id, db)
    assert stored.status == "interrupted"
    assert stored.metadata["stopped_at"] == result.stopped_at
    assert stored.data["s11"].size == 60
    assert np.all(np.diff(stored.data["frequency"]) > 0)
    analysis = result.analysis
    assert analysis is not None and not analysis.verdict.good and analysis.proposed == {}
    assert issubclass(InstrumentTimeoutError, QnetlabError)


def test_ctrl_c_keeps_the_points_so_far_and_reraises(station: LabStation, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "lab.db"
    vna = station.setup.vna  # type: ignore[union-attr]

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(vna, "sweep", _SweepStopsAt(vna, 6, ctrl_c))
    scan = MicrowaveResonanceScan(center=8.0e9, span=80e6, points=200, segments=10)
    with pytest.raises(KeyboardInterrupt) as info:
        scan.run(station, db, quiet=True)
    partial = scan.last_run
    assert partial is not None and partial.interrupted and partial.points == 100
    assert any(f"run {partial.run_id}" in note for note in info.value.__notes__)
    stored = load_run(partial.run_id, db)
    assert stored.status == "interrupted"
    assert stored.metadata["stopped_at"]["label"].startswith("segment 6/10")
    assert "Ctrl-C" in stored.metadata["stopped_at"]["cause"]
    assert stored.data["s11"].size == 100
    # The kept points can still be analyzed offline; an incomplete run is never "good".
    assert not analyze_run(partial.run_id, db).verdict.good


def test_quiet_prints_nothing_and_the_default_shows_progress(
        station: LabStation, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    MicrowaveResonanceScan(center=8.0e9, span=60e6, points=101, segments=5).run(
        station, tmp_path / "lab.db", quiet=True)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    MicrowaveResonanceScan(center=8.0e9, span=60e6, points=101, segments=5).run(
        station, tmp_path / "lab.db")
    out, err = capfd.readouterr()
    # not a terminal: a plain line per step, with the time taken and left, no \r frames
    assert "microwave_resonance_scan: 5/5" in err and "\r" not in err
    assert "elapsed" in err and "left]" in err


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="points >= 2 \\* segments"):
        MicrowaveResonanceScan(center=8e9, points=10, segments=10)
    with pytest.raises(ValueError, match="span"):
        MicrowaveResonanceScan(center=8e9, span=-1.0)


# -- any error a driver can raise ends the run cleanly (issue 11 item 4) ----------------------
def test_a_garbage_reply_mid_run_ends_the_run_as_interrupted(
        station: LabStation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "lab.db"
    vna = station.setup.vna  # type: ignore[union-attr]
    faults = bench_of(vna).faults("vna")
    monkeypatch.setattr(vna, "sweep", _SweepStopsAt(vna, 4,
                                                    lambda: faults.inject("garbage_reply")))
    scan = MicrowaveResonanceScan(center=8.0e9, span=80e6, points=200, segments=10)
    try:
        # A driver that says what it could not parse raises a QnetlabError: the partial
        # result is returned. One that lets a bare ValueError out is a bug: the same
        # bookkeeping, then the error again, with a note naming the run.
        result = scan.run(station, db, quiet=True)
    except Exception as exc:  # either outcome is checked below
        assert not isinstance(exc, QnetlabError)
        assert any(f"run {scan.last_run.run_id} of {db}" in n  # type: ignore[union-attr]
                   and "marked interrupted" in n for n in exc.__notes__)
        result = scan.last_run  # type: ignore[assignment]
    assert result is not None and result.interrupted and result.points == 60
    assert result.stopped_at is not None and result.stopped_at["step"] == 3
    stored = load_run(result.run_id, db)
    assert stored.status == "interrupted"
    assert stored.metadata["stopped_at"] == result.stopped_at
    assert stored.data["s11"].size == 60
    # analyzed on the points kept, and never good
    assert result.analysis is not None and not result.analysis.verdict.good
    assert stored_analysis(result.run_id, db) is not None
    assert vna.start() > 0  # the session recovered: the next query is answered


def test_a_bug_in_measure_marks_the_run_interrupted_and_reraises(
        station: LabStation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "lab.db"
    vna = station.setup.vna  # type: ignore[union-attr]
    finished: list[bool] = []

    def bug() -> None:
        raise ValueError("could not convert string to float: 'garbage'")

    monkeypatch.setattr(vna, "sweep", _SweepStopsAt(vna, 3, bug))
    scan = MicrowaveResonanceScan(center=8.0e9, span=80e6, points=200, segments=10)
    monkeypatch.setattr(scan, "finish", lambda st: finished.append(True))
    with pytest.raises(ValueError, match="could not convert") as info:
        scan.run(station, db, quiet=True)
    partial = scan.last_run
    assert partial is not None and partial.interrupted and partial.points == 40
    assert finished == [True]
    notes = info.value.__notes__
    assert len(notes) == 1 and f"run {partial.run_id} of {db}" in notes[0]
    assert "kept 40 points" in notes[0] and "segment 3/10" in notes[0]
    stored = load_run(partial.run_id, db)
    assert stored.status == "interrupted"  # never left "running"
    assert stored.metadata["stopped_at"]["cause"].startswith("ValueError: could not convert")
    assert partial.analysis is not None and not partial.analysis.verdict.good
    assert stored.metadata["analysis"]["verdict"]["good"] is False
