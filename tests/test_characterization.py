"""The automated transducer characterization, end to end on the simulated bench.

Each sub-sequence has its own tests (per preset, coverage of its uncertainties, broken benches:
tests/test_transducer_*.py). Here the composite is held to the issue's promises: from a cold
bench it recovers every preset's true efficiency, cooperativity slope, bandwidth and added noise
within the uncertainties it reports; a broken bench gives a bad verdict naming the step and the
reason, never a wrong number presented as good; the stored runs re-analyze to the live result;
the report is one self-contained HTML page plus a JSON summary; Ctrl-C keeps the data and still
writes the report.

Tolerance: |value - truth| < 4.5 stated standard errors. The composite checks ~10 values per
preset over 6 presets; for Gaussian errors the chance that any of 60 exceeds 4.5 sigma is
60 x 6.8e-6 = 4e-4.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qnetlab.cli import main
from qnetlab.instruments.station import LabStation, load_station
from qnetlab.sequences.analysis import Reason, analyze_run
from qnetlab.sequences.transducer.characterization import (
    CharacterizationResult,
    TransducerCharacterization,
)
from qnetlab.sim_instruments.physics.presets import PRESETS
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import BENCH_CONFIG, bench_config

pytestmark = pytest.mark.slow

SIGMAS = 4.5


def truth(model: Any) -> dict[str, float]:
    """The fitted quantities' true values (see the spec in sequences/transducer/)."""
    om = model.kind == "optomechanical"
    c_em = model.em_cooperativity
    p1 = model.pump_power_at_unit_cooperativity * (1 + c_em if om else 1)
    return {
        "eta_max": model.external_efficiency * (c_em / (1 + c_em) if om else 1.0),
        "cooperativity_slope": 1.0 / p1,
        "optical_linewidth": model.optical_linewidth,
        "conversion_bandwidth": model.mw_linewidth,
        "resonance_frequency": model.mw_resonance_frequency,
        "added_noise_intrinsic": model.intrinsic_added_noise,
        "added_noise_slope": (model.heating_noise_fast + model.heating_noise_slow)
        * model.absorbed_fraction,
        "heating_tau_fast": model.heating_tau_fast,
        "heating_tau_slow": model.heating_tau_slow,
        "absorbed_fraction": model.absorbed_fraction,
    }


def characterize(config: Path, db: Path,
                 tweak: Any = None) -> tuple[CharacterizationResult, Any]:
    with load_station(config) as station:
        model = bench_of(station.instrument("vna")).world.transducer
        if tweak is not None:
            tweak(station)
        return TransducerCharacterization().run(station, db, quiet=True), model


def value(result: CharacterizationResult, key: str) -> Any:
    for run in result.runs.values():
        if run is not None and run.analysis is not None and key in run.analysis.values:
            return run.analysis.values[key]
    raise KeyError(key)


# A whole characterization per preset: piezo_om takes ~90 s on a busy 2-core machine.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_recovered_within_the_stated_errors(preset: str,
                                                            tmp_path: Path) -> None:
    # The clean lab: every preset against its exact truth (no drift, constants as stated).
    # On the realistic lab, against what the drifting world had: the coverage study
    # (tests/test_coverage_study.py) and tests/test_realistic_default.py for the presets the
    # shipped lab configs use.
    result, model = characterize(bench_config(tmp_path, preset, "ideal: true"),
                                 tmp_path / "lab.db")
    # Jiang 2023 (piezo_om): pump heating adds < 2 photons to N_add ~ 100, at the edge of
    # what the heating scan resolves; it must say so (an upper limit, or a time not
    # constrained), never report the times as measured.
    unseen = {"pump_heating_scan"} if preset == "piezo_om" else set()
    for name, run in result.runs.items():
        assert run is not None and run.analysis is not None, (name, result.notes)
        if name in unseen:
            verdict = run.analysis.verdict
            if verdict.good:  # not resolved: an upper limit, no times
                assert "heating_amplitude_upper_limit" in run.analysis.details, verdict
                assert not any(k.startswith("heating_tau") for k in run.analysis.values)
            else:
                assert verdict.reason in (Reason.NO_SIGNAL, Reason.POOR_FIT), verdict
            continue
        assert run.analysis.verdict.good, (name, run.analysis.verdict)
    unresolved = result.analysis("optical_resonance_scan")
    assert unresolved is not None
    optical_resolved = "optical_linewidth" in unresolved.values
    for key, true in truth(model).items():
        if key.startswith("heating_tau") and unseen:
            continue
        if key == "optical_linewidth" and not optical_resolved:
            # 3 MHz line under the laser's 12.5 MHz step: no width may be reported.
            assert model.optical_linewidth < 12.5e6
            continue
        fitted = value(result, key)
        assert fitted.stderr > 0, (key, fitted)
        assert abs(fitted.value - true) < SIGMAS * fitted.stderr, (preset, key, fitted, true)
    point = result.operating_point
    assert point is not None
    # The recommendation follows from the thresholds: an operating point exists exactly when
    # the device's true N_add at the lowest measured pump power is below 1.
    powers = result.analysis("efficiency_map").tables["map"]["pump_power (W)"]  # type: ignore
    lowest = model.intrinsic_added_noise + truth(model)["added_noise_slope"] * min(powers)
    assert point.found == (lowest < 0.95), (point, lowest)
    if point.found:
        assert point.added_noise <= 1.0 and point.absorbed_power <= 10e-6 * (1 + 1e-9)
    assert result.good == point.found


@pytest.fixture(scope="module")
def main_job(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, str]]:
    """`qnetlab characterize lab_configs/transducer_bench.yaml --quiet` into a temp database."""
    folder = tmp_path_factory.mktemp("main_job")
    db = folder / "lab.db"
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["characterize", str(BENCH_CONFIG), "--db", str(db), "--quiet"])
    yield db, code, out.getvalue() + "\n--stderr--\n" + err.getvalue()


def test_the_main_job_reports_an_operating_point(main_job: tuple[Path, int, str]) -> None:
    db, code, output = main_job
    assert code == 0, output
    assert "good: operate at" in output and "Connected to" not in output
    assert "\r" not in output  # --quiet: no progress bars
    (report_json,) = db.parent.glob("lab_report_run*.json")
    (report_html,) = db.parent.glob("lab_report_run*.html")
    summary = json.loads(report_json.read_text())
    assert summary["good"] is True and summary["operating_point"]["found"] is True
    assert summary["summary"]["eta_max"]["stderr"] > 0
    titles = [run["title"] for run in summary["runs"]]
    assert titles == ["microwave resonance scan", "optical resonance scan", "efficiency map",
                      "conversion bandwidth scan", "added noise scan", "pump heating scan",
                      "fridge load scan"]
    assert all(run["analysis"]["verdict"]["good"] for run in summary["runs"])
    page = report_html.read_text()
    # Self-contained: every figure embedded, nothing fetched from elsewhere.
    assert page.count("data:image/png;base64,") == len(
        [f for run in summary["runs"] for f in run["analysis"]["figures"]]) >= 7
    assert not re.search(r"(src|href)=['\"](?!data:|#)", page)  # '#': the contents


def test_stored_runs_reanalyze_to_the_live_result(main_job: tuple[Path, int, str]) -> None:
    db, _, _ = main_job
    (report_json,) = db.parent.glob("lab_report_run*.json")
    for run in json.loads(report_json.read_text())["runs"]:
        live = run["analysis"]
        again = analyze_run(run["run_id"], db, save=False).to_json()
        again["figures"] = live["figures"]  # save=False draws none
        assert again == live, run["title"]


def test_analyze_verb_reruns_a_stored_run(main_job: tuple[Path, int, str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    db, _, _ = main_job
    assert main(["analyze", "1", "--db", str(db)]) == 0
    assert "microwave_resonance_scan run 1: good" in capsys.readouterr().out
    assert main(["analyze", "999", "--db", str(db)]) == 2
    assert main(["analyze", "1", "--db", str(db.with_name("missing.db"))]) == 2


def test_a_detuned_laser_stops_at_the_optical_scan(tmp_path: Path) -> None:
    # The setup believes the optical resonance is 60 GHz (0.48 nm) from where it is.
    config = bench_config(tmp_path, setup={"optical_resonance_wavelength": "1550.60e-9"})
    result, _ = characterize(config, tmp_path / "lab.db")
    optical = result.analysis("optical_resonance_scan")
    assert optical is not None and optical.verdict.reason is Reason.NO_SIGNAL
    assert not result.good and "optical_resonance_scan" in result.verdict
    for later in ("efficiency_map", "added_noise_scan", "fridge_load_scan"):
        assert result.runs[later] is None and "skipped" in result.notes[later]
    assert result.operating_point is None


def test_a_dead_detector_channel_gives_no_noise_figure_and_no_recommendation(
        tmp_path: Path) -> None:
    def kill_channel(station: LabStation) -> None:
        station.instrument("tagger").input1.trigger_level(1.5)  # above the SNSPD's pulses

    result, _ = characterize(bench_config(tmp_path), tmp_path / "lab.db", kill_channel)
    for name in ("added_noise_scan", "pump_heating_scan"):
        analysis = result.analysis(name)
        assert analysis is not None and analysis.verdict.reason is Reason.NO_SIGNAL, name
    efficiency = result.analysis("efficiency_map")
    assert efficiency is not None and efficiency.verdict.good  # unaffected: power meter
    assert not result.good and result.operating_point is None
    assert "added_noise_scan" in result.verdict


def test_a_fridge_that_heats_too_fast_is_reported_not_hidden(tmp_path: Path) -> None:
    # A tenth of the cooling power: the mixing chamber passes its 50 mK interlock at ~2 mW.
    config = bench_config(tmp_path, simulation="fridge: {cooling_coefficient: 0.004}")
    result, _ = characterize(config, tmp_path / "lab.db")
    fridge = result.analysis("fridge_load_scan")
    assert fridge is not None and not fridge.verdict.good
    assert fridge.verdict.reason in (Reason.OUT_OF_RANGE, Reason.INTERRUPTED)
    assert "fridge" in fridge.verdict.detail or "ceiling" in fridge.verdict.detail
    assert not result.good and "fridge_load_scan" in result.verdict
    # The other steps paused the pump while the fridge was warm (also before their first
    # step) and resumed: they completed rather than stopping on the interlock.
    for name in ("conversion_bandwidth_scan", "added_noise_scan", "pump_heating_scan"):
        run = result.runs[name]
        assert run is not None and run.status == "completed", (name, run)
    # Whatever ran with the pump paused by the interlock recorded it.
    events = [e for run in result.runs.values() if run is not None
              for e in run.interlock_events]
    assert all(e["reading"] > 0.050 for e in events)


def test_ctrl_c_keeps_the_data_and_writes_the_report(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from qnetlab.sequences.transducer.added_noise import AddedNoiseScan

    original = AddedNoiseScan.measure
    calls = []

    def interrupted(self: Any, station: Any, step: Any) -> dict[str, np.ndarray]:
        calls.append(step.index)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, station, step)

    monkeypatch.setattr(AddedNoiseScan, "measure", interrupted)
    db = tmp_path / "lab.db"
    with load_station(bench_config(tmp_path)) as station, pytest.raises(KeyboardInterrupt):
        TransducerCharacterization().run(station, db, quiet=True)
    (report_json,) = tmp_path.glob("lab_report_run*.json")
    summary = json.loads(report_json.read_text())
    runs = {run["title"]: run for run in summary["runs"]}
    noise = runs["added noise scan"]
    assert noise["status"] == "interrupted" and noise["points"] > 0
    assert "Ctrl-C" in noise["stopped_at"]["cause"]
    assert runs["efficiency map"]["analysis"]["verdict"]["good"] is True
    assert summary["good"] is False


def test_ctrl_c_in_a_steps_analysis_says_measured_and_how_to_analyze(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11 item 7: a complete run whose analysis was interrupted is not 'no data'."""
    from qnetlab.sequences.transducer.optical_resonance import OpticalResonanceAnalysis

    def ctrl_c(self: Any, run: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(OpticalResonanceAnalysis, "analyze", ctrl_c)
    db = tmp_path / "lab.db"
    with load_station(bench_config(tmp_path)) as station, \
            pytest.raises(KeyboardInterrupt) as info:
        TransducerCharacterization().run(station, db, quiet=True)
    (report_json,) = tmp_path.glob("lab_report_run*.json")
    notes = info.value.__notes__
    assert f"report: {report_json.with_suffix('.html')}" in notes
    assert any("analysis was interrupted: re-run it with qnetlab analyze" in n for n in notes)
    summary = json.loads(report_json.read_text())
    optical = {run["title"]: run for run in summary["runs"]}["optical resonance scan"]
    assert optical["status"] == "completed" and optical["points"] > 0
    assert optical["analysis"] is None
    expected = (f"optical_resonance_scan run {optical['run_id']}: measured, analysis "
                f"interrupted; re-run with qnetlab analyze {optical['run_id']} --db {db}")
    assert optical["note"] == expected
    assert expected in summary["verdict"] and "no data" not in summary["verdict"]
    assert summary["good"] is False
    # ... and the stored run analyzes offline as the note says
    monkeypatch.undo()
    assert analyze_run(optical["run_id"], db).verdict.good


def test_run_verb_runs_one_sequence_and_checks_its_options(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "lab.db")
    config = str(BENCH_CONFIG)
    assert main(["run", "fridge_load_scan", config, "--db", db, "--quiet",
                 "--set", "pump_powers=0,2e-3,4e-3", "--set", "readings=20"]) == 0
    assert "fridge_load_scan run 1: good" in capsys.readouterr().out
    assert main(["run", "fridge_load_scan", config, "--db", db, "--set", "pump_power=1"]) == 2
    assert "pump_powers" in capsys.readouterr().err  # names the options it knows
    assert main(["run", "fridge_lod_scan", config, "--db", db]) == 2
    assert "did you mean 'fridge_load_scan'" in capsys.readouterr().err
