"""`DarkCountScan` and `EfficiencyBiasScan` on the simulated detection chain.

Statistics: the tagger counts are Poisson with the SnspdModel's mean click rate (virtual
time: a 1 s counter window costs no wall time). The reported standard errors are Poisson
(dark counts: sqrt(N)/T) and the sigmoid fit's covariance with model Poisson weights, so a
true value within 5 of them fails by chance with probability ~6e-7 per value. Seeds are
fixed by the lab config, so each test is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qnetlab.instruments.station import LabStation, load_station
from qnetlab.sequences.analysis import Reason, analyze_run
from qnetlab.sequences.data import load_run
from qnetlab.sequences.detectors import (
    DarkCountScan,
    EfficiencyBiasAnalysis,
    EfficiencyBiasScan,
)
from qnetlab.sim_instruments.physics.photons import DetectionPath
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import REPO

CONFIG = REPO / "lab_configs" / "detection_chain.yaml"
BIAS = 10.5e-6  # A, the SnspdModel's operating current
SIGMAS = 5.0


@pytest.fixture
def station() -> Iterator[LabStation]:
    with load_station(CONFIG) as st:
        tagger = st.instrument("tagger")
        tagger.input1.enabled(True)
        tagger.input2.enabled(True)
        yield st


def emulator(station: LabStation) -> Any:
    """The SIM900 emulator behind the detector driver (its modules hold the true models)."""
    return bench_of(station.instrument("snspd")).device("snspd")


def module(station: LabStation, slot: int) -> Any:
    return emulator(station).module(slot)


def test_dark_counts_recover_the_true_rate_and_restore_the_light(
        station: LabStation, tmp_path: Path) -> None:
    snspd, setup = station.instrument("snspd"), station.setup
    assert setup is not None
    snspd.ch1.bias_current(BIAS)
    snspd.ch2.bias_current(11.0e-6)
    setup.pump_power(1e-3)
    setup.pump_on(True)  # the scan must switch the light off itself
    db = tmp_path / "lab.db"
    result = DarkCountScan(integration_time=20.0, repeats=5).run(station, db, quiet=True)
    analysis = result.analysis
    assert analysis is not None and analysis.verdict.good, analysis
    for c in (1, 2):
        m = module(station, c)
        true = m.model.dark_count_rate(m.bias)
        fitted = analysis.values[f"dark_count_rate_ch{c}"]
        assert fitted.stderr < 0.1 * true
        assert abs(fitted.value - true) < SIGMAS * fitted.stderr, (c, fitted, true)
        assert analysis.proposed[f"dark_count_rate_ch{c}"] == fitted.value
    assert setup.pump_on() is True  # restored
    assert len(analysis.figures) == 1 and Path(analysis.figures[0]).is_file()
    # Re-analysis from the stored dataset alone gives the same result.
    station.close()
    again = analyze_run(result.run_id, db)
    assert again.to_json() == analysis.to_json()


def test_dead_disabled_and_latched_channels_are_bad_not_numbers(
        station: LabStation, tmp_path: Path) -> None:
    snspd, tagger = station.instrument("snspd"), station.instrument("tagger")
    snspd.ch1.bias_current(BIAS)
    tagger.input1.trigger_level(1.5)  # above the pulses: the channel counts nothing
    snspd.ch2.bias_current(0.0)  # disabled
    result = DarkCountScan(integration_time=5.0, repeats=2).run(
        station, tmp_path / "lab.db", quiet=True)
    analysis = result.analysis
    assert analysis is not None and not analysis.verdict.good
    assert analysis.verdict.reason is Reason.NO_SIGNAL
    assert "ch1 is dead" in analysis.verdict.detail
    assert "ch2 is not biased" in analysis.verdict.detail
    assert analysis.proposed == {}

    snspd.ch2.bias_current(12.5e-6)  # above switching: latched
    assert snspd.ch2.latched()
    result = DarkCountScan(channels=(2,), integration_time=5.0, repeats=1).run(
        station, tmp_path / "lab.db", quiet=True)
    assert result.analysis is not None and not result.analysis.verdict.good
    assert "ch2 is latched" in result.analysis.verdict.detail


def test_efficiency_scan_recovers_the_sigmoid_and_recommends_a_plateau_bias(
        station: LabStation, tmp_path: Path) -> None:
    snspd, setup = station.instrument("snspd"), station.setup
    assert setup is not None
    setup.pump_power(1e-3)
    snspd.ch1.bias_current(9.0e-6)
    m = module(station, 1)
    # The bench's known input: the emulator's photon rate at the detector with the pump on,
    # standing for an independently calibrated source (stored with the run's options).
    setup.pump_on(True)
    phi = emulator(station).photon_rate(1)
    setup.pump_on(False)
    db = tmp_path / "lab.db"
    scan = EfficiencyBiasScan(channel=1, bias_start=4e-6, bias_stop=12.4e-6, points=43,
                              integration_time=1.0, incident_photon_rate=phi)
    result = scan.run(station, db, quiet=True)
    a = result.analysis
    assert a is not None and a.verdict.good, a
    model = m.model
    for name, true in (("plateau_efficiency", model.max_efficiency),
                       ("midpoint_current", model.midpoint_current),
                       ("sigmoid_width", model.sigmoid_width)):
        fitted = a.values[name]
        assert 0 < fitted.stderr < 0.05 * true, (name, fitted)
        assert abs(fitted.value - true) < SIGMAS * fitted.stderr, (name, fitted, true)
    # It latched at the first bias at or above the switching current (12.0 uA).
    i_sw = a.values["switching_current"].value
    assert model.switching_current <= i_sw < model.switching_current + 0.21e-6
    i_rec = a.values["recommended_bias"]
    assert model.detection_efficiency(i_rec.value) > 0.97 * model.max_efficiency
    assert i_rec.value < model.switching_current - 0.5e-6
    assert a.proposed == {"bias_current_ch1": i_rec.value,
                          "detection_efficiency_ch1": a.values["plateau_efficiency"].value}
    # Settings restored: the bias the channel had, the light off, no latch.
    assert snspd.ch1.bias_current() == pytest.approx(9.0e-6, abs=1e-9)
    assert setup.pump_on() is False and not snspd.ch1.latched()
    stored = load_run(result.run_id, db)
    assert stored.options["incident_photon_rate"] == phi
    assert stored.data["latched"].sum() >= 1
    station.close()
    again = EfficiencyBiasAnalysis().run(result.run_id, db, save=False)
    assert again.values == a.values and again.verdict == a.verdict
    assert analyze_run(result.run_id, db).to_json() == a.to_json()


def test_relative_efficiency_without_a_reference(station: LabStation,
                                                 tmp_path: Path) -> None:
    result = EfficiencyBiasScan(bias_start=5e-6, bias_stop=11.6e-6, points=34,
                                pump_power=1e-3).run(station, tmp_path / "lab.db", quiet=True)
    a = result.analysis
    assert a is not None and a.verdict.good, a
    assert "plateau_efficiency" not in a.values and a.details["absolute"] == 0.0
    assert set(a.proposed) == {"bias_current_ch1"}
    assert "switching_current" not in a.values  # stopped below switching
    m = module(station, 1).model
    mid = a.values["midpoint_current"]
    assert abs(mid.value - m.midpoint_current) < SIGMAS * mid.stderr


def test_no_light_is_no_signal(station: LabStation, tmp_path: Path) -> None:
    module(station, 1).path = DetectionPath(collection_efficiency=0.0)  # fibre unplugged
    result = EfficiencyBiasScan(bias_start=5e-6, bias_stop=11.6e-6, points=12,
                                pump_power=1e-3).run(station, tmp_path / "lab.db", quiet=True)
    a = result.analysis
    assert a is not None and not a.verdict.good
    assert a.verdict.reason is Reason.NO_SIGNAL and "no light signal" in a.verdict.detail
    assert a.proposed == {}


def test_dead_channel_is_no_signal(station: LabStation, tmp_path: Path) -> None:
    station.instrument("tagger").input1.trigger_level(1.5)
    result = EfficiencyBiasScan(bias_start=5e-6, bias_stop=11.6e-6, points=12,
                                pump_power=1e-3).run(station, tmp_path / "lab.db", quiet=True)
    a = result.analysis
    assert a is not None and not a.verdict.good
    assert a.verdict.reason is Reason.NO_SIGNAL and "ch1 is dead" in a.verdict.detail


def test_a_sweep_that_stops_below_the_plateau_is_bad(station: LabStation,
                                                     tmp_path: Path) -> None:
    result = EfficiencyBiasScan(bias_start=5e-6, bias_stop=8.5e-6, points=15,
                                pump_power=1e-3).run(station, tmp_path / "lab.db", quiet=True)
    a = result.analysis
    assert a is not None and not a.verdict.good
    assert a.verdict.reason in (Reason.OUT_OF_RANGE, Reason.POOR_FIT)
    assert "plateau" in a.verdict.detail
    assert a.proposed == {}


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="bias_start"):
        EfficiencyBiasScan(bias_start=10e-6, bias_stop=5e-6)
    with pytest.raises(ValueError, match="plateau_fraction"):
        EfficiencyBiasScan(plateau_fraction=1.2)
    with pytest.raises(ValueError, match="counter window"):
        DarkCountScan(integration_time=0.5)
