"""An analysis that cannot proceed is a bad verdict with its reason, never a traceback
(issue 11 item 8).

`Analysis.run` turns a failing fit into a bad verdict (``analysis failed``) naming the error,
and failing figures into a bad verdict that keeps the fitted values; ``qnetlab analyze``
exits 1 for both (2 only when the run or database cannot be found). The fridge-load figure
no longer draws negative error bars for a fitted equilibrium temperature below 0 K, and that
temperature is a bad verdict of its own. Runs are real fridge-load scans on the simulated
bench (the in-process VISA backend), each test with its own database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qnetlab.cli import main
from qnetlab.instruments.station import LabStation, load_station
from qnetlab.sequences.analysis import AnalysisResult, Reason, analyze_run
from qnetlab.sequences.data import load_run
from qnetlab.sequences.transducer import fridge_load
from qnetlab.sequences.transducer.fridge_load import FridgeFit, FridgeLoadAnalysis, FridgeLoadScan

from conftest import BENCH_CONFIG


@pytest.fixture(scope="module")
def fridge_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A good fridge-load scan: (database, run id)."""
    db = tmp_path_factory.mktemp("analysis_failures") / "lab.db"
    station: LabStation
    with load_station(BENCH_CONFIG) as station:
        result = FridgeLoadScan(pump_powers=(0.0, 2e-3, 4e-3), readings=20).run(
            station, db, quiet=True)
    assert result.analysis is not None and result.analysis.verdict.good, result.analysis
    yield db, result.run_id


def test_a_fit_that_raises_is_a_bad_verdict_and_exit_1(
        fridge_run: tuple[Path, int], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    db, run_id = fridge_run

    def broken(self: FridgeLoadAnalysis, run: object) -> AnalysisResult:
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(FridgeLoadAnalysis, "analyze", broken)
    result = analyze_run(run_id, db)
    assert not result.verdict.good and result.verdict.reason is Reason.ANALYSIS_FAILED
    assert "LinAlgError: Singular matrix" in result.verdict.detail
    assert result.proposed == {}
    stored = load_run(run_id, db).metadata["analysis"]
    assert stored["verdict"]["reason"] == "analysis failed"
    capsys.readouterr()
    assert main(["analyze", str(run_id), "--db", str(db)]) == 1
    out, err = capsys.readouterr()
    assert "analysis failed" in out and "Singular matrix" in out
    assert "Traceback" not in out + err


def test_figures_that_fail_keep_the_fitted_values(
        fridge_run: tuple[Path, int], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    db, run_id = fridge_run

    def broken(self: FridgeLoadAnalysis, run: object, result: object) -> dict[str, object]:
        raise ValueError("'yerr' must not contain negative values")

    monkeypatch.setattr(FridgeLoadAnalysis, "plot", broken)
    result = analyze_run(run_id, db)
    assert not result.verdict.good and result.verdict.reason is Reason.ANALYSIS_FAILED
    assert "figures could not be drawn" in result.verdict.detail
    assert "the fit said: good" in result.verdict.detail
    assert {"fridge_time_constant", "absorbed_fraction"} <= set(result.values)
    assert result.figures == [] and result.proposed == {}
    stored = load_run(run_id, db).metadata["analysis"]
    assert stored["values"]["absorbed_fraction"]["value"] == pytest.approx(
        result.values["absorbed_fraction"].value)
    capsys.readouterr()
    assert main(["analyze", str(run_id), "--db", str(db)]) == 1
    out, _ = capsys.readouterr()
    assert "absorbed_fraction" in out and "yerr" in out


def test_a_missing_database_or_run_is_a_usage_error(
        fridge_run: tuple[Path, int], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    db, run_id = fridge_run
    assert main(["analyze", "1", "--db", str(tmp_path / "nowhere.db")]) == 2
    assert "no database at" in capsys.readouterr().err
    assert main(["analyze", str(run_id + 99), "--db", str(db)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["analyze", str(run_id), "--db", str(db)]) == 0  # and the good run is good


def test_a_fridge_plot_with_an_equilibrium_below_zero_draws(
        fridge_run: tuple[Path, int]) -> None:
    """The issue's crash: T_eq fitted below 0 K gave a negative error bar on T_eq^2."""
    db, run_id = fridge_run
    run = load_run(run_id, db)
    analysis = FridgeLoadAnalysis()
    result = analysis.analyze(run)
    table = result.tables["fridge_load"]
    table["equilibrium_temperature (K)"][1] = -0.004
    figures = analysis.plot(run, result)  # raised ValueError ('yerr' ... negative) before
    for fig in figures.values():
        fig.savefig(Path(db).with_name("negative_teq.png"))


def test_an_equilibrium_below_zero_is_a_bad_verdict() -> None:
    fit = FridgeFit(time_constant=20.0, time_constant_stderr=1.0,
                    powers=np.array([0.0, 2e-3, 4e-3]),
                    equilibrium=np.array([0.012, -0.004, 0.030]),
                    equilibrium_cov=np.diag([1e-8, 1e-4, 1e-8]), base_temperature=0.012,
                    base_temperature_stderr=1e-4, slope=0.2, slope_stderr=0.01,
                    line_chi2=1.0, line_dof=1, relative_noise=2e-4)
    d = {"temperature": np.array([0.012, 0.02]), "pump_power": np.array([0.0, 2e-3])}
    verdict = fridge_load._verdict(fit, d, ceiling=0.05, hold=300.0)
    assert not verdict.good and verdict.reason is Reason.POOR_FIT
    assert "2 mW" in verdict.detail and "not above 0 K" in verdict.detail
    assert json.dumps(verdict.detail)
