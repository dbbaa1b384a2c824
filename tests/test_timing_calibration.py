"""`TaggerDelayCalibration` and `AwgSkewCalibration` on the simulated detection chain.

The chain is lab_configs/detection_chain.yaml with a test-local wiring (written to tmp_path;
the shipped file is not touched): the AWG's ch1 markers 1-4 on tagger inputs 1-4, one
marker each (the four markers of one channel share its skew and rise at the
same programmed sample: a common signal for a delay calibration; the config refuses one
source cabled to two inputs). For the skew calibration the test then
re-cables inputs 2-4 to the markers of AWG channels 2-4, as a technician would, by changing
the bench's cabling (`BenchEvents.markers`).

Statistics. The emulated ID1000 adds 5 ps rms jitter per tag (rounded to whole ps), so a
coincidence peak is about 7.1 ps rms; a 5 ms recording of the 960 ns marker train gives
about 5200 pairs, hence a standard error of about 0.1 ps on a peak centre. Every recovered
value must lie within 5 standard errors (as the fit reports them) of the truth, and the
errors must be picosecond-class (< 1 ps). The AWG emulator rounds each edge time to a whole
ps after adding the skew, so what the tagger can see of a skew difference is
rint(s_ch) - rint(s_ref): that is the value checked to 5 sigma, and the hidden skew
difference itself to 5 sigma plus that 1 ps of rounding (the tagger's resolution).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qnetlab.instruments.station import LabStation, load_station
from qnetlab.sequences.analysis import Reason, Verdict, analyze_run
from qnetlab.sequences.fitting import fit_peak
from qnetlab.sequences.timetags import TagBlock, correlate
from qnetlab.sequences.timing import AwgSkewCalibration, TaggerDelayCalibration
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import REPO

pytestmark = pytest.mark.slow

SIGMAS = 5.0
INPUTS = (1, 2, 3, 4)
CHANNELS = (1, 2, 3, 4)


@pytest.fixture
def station(tmp_path: Path) -> Iterator[LabStation]:
    text = (REPO / "lab_configs" / "detection_chain.yaml").read_text()
    start, end = text.index("  wiring:\n"), text.index("\ninstruments:")
    wiring = "  wiring:\n    tagger:\n" + "".join(
        f"      {n}: awg.ch1.marker{n}\n" for n in INPUTS)
    config = tmp_path / "timing_chain.yaml"
    config.write_text(text[:start] + wiring + text[end:])
    with load_station(config) as st:
        for n in INPUTS:
            st.instrument("tagger").tagger_channels[n].enabled(True)
        yield st


def emulators(station: LabStation) -> tuple[Any, Any]:
    """(ID1000 emulator, AWG5208 emulator) of the station's bench."""
    bench = bench_of(station.instrument("awg"))
    return bench.zmq_devices["tagger"], bench.device("awg")


def hidden_delays_ps(station: LabStation) -> dict[int, int]:
    """Each input's hidden delay as the tagger tags now: in the realistic lab (the default)
    it has drifted with lab time (`LabWorld.tagger_delay_drift_ps`, a few ps)."""
    tagger_emu, _ = emulators(station)
    model = tagger_emu.tagging_model()
    return {n: int(model.channels[n - 1].delay_ps) for n in INPUTS}


def recable_to_channels(station: LabStation) -> None:
    """Input n <- AWG channel n, marker 1 (the skew calibration's cabling)."""
    tagger_emu, awg_emu = emulators(station)
    for n, ch in zip(INPUTS, CHANNELS, strict=True):
        tagger_emu.source.markers[n] = (awg_emu, ch, 1)


def switch_outputs(station: LabStation, on: bool = True) -> None:
    for ch in CHANNELS:
        station.instrument("awg").awg_channels[ch].output(on)


def test_delays_are_recovered_within_their_uncertainty(station: LabStation,
                                                       tmp_path: Path) -> None:
    switch_outputs(station)
    run = TaggerDelayCalibration(inputs=INPUTS).run(station, tmp_path / "lab.db", quiet=True)
    result = run.analysis
    assert result is not None and result.verdict.good, result and result.verdict
    truth = hidden_delays_ps(station)
    for n in INPUTS[1:]:
        v = result.values[f"delay_input{n}"]
        expected = (truth[n] - truth[1]) * 1e-12
        assert v.stderr < 1e-12  # picosecond class: sigma/sqrt(N) ~ 0.1 ps
        assert abs(v.value - expected) < SIGMAS * v.stderr, (n, v, expected)
        # The peak width is the two inputs' jitter: 5 ps rms each (whole-ps rounding).
        assert result.values[f"jitter_input{n}"].value == pytest.approx(
            math.sqrt(2 * (25 + 1 / 12)) * 1e-12, rel=0.1)
    # Applying the proposal aligns every input on the latest one (delays stay >= 0).
    proposed = result.proposed
    assert min(proposed.values()) == pytest.approx(0.0, abs=1e-15)
    for n in INPUTS:
        station.instrument("tagger").tagger_channels[n].delay(proposed[f"tagger.input{n}.delay"])
    tagger_emu, _ = emulators(station)
    user = tagger_emu.user_delays_ps()
    arrival = {n: truth[n] + user[n] for n in INPUTS}
    assert len(set(arrival.values())) == 1  # aligned to the ps (5 sigma << 0.5 ps)

    # Re-analysis from the stored dataset alone gives the same result.
    again = analyze_run(run.run_id, run.db_path, save=False)
    assert again.values == result.values
    assert again.proposed == result.proposed


def test_awg_skew_is_recovered_within_the_tagger_resolution(station: LabStation,
                                                            tmp_path: Path) -> None:
    switch_outputs(station)
    db = tmp_path / "lab.db"
    delays = TaggerDelayCalibration(inputs=INPUTS).run(station, db, quiet=True).analysis
    assert delays is not None and delays.verdict.good
    for n in INPUTS:
        station.instrument("tagger").tagger_channels[n].delay(
            delays.proposed[f"tagger.input{n}.delay"])
    # The inputs' residual misalignment: the delay calibration's error plus the 1 ps
    # rounding of each delay setting (uniform, 1/sqrt(12) ps per input).
    delay_err = max(delays.values[f"delay_input{n}"].stderr for n in INPUTS[1:])
    offset_err = math.sqrt(delay_err ** 2 + 2 * (1e-12) ** 2 / 12)
    recable_to_channels(station)
    run = AwgSkewCalibration(channels=CHANNELS, inputs=INPUTS,
                             input_offset_stderr_s=offset_err).run(station, db, quiet=True)
    result = run.analysis
    assert result is not None and result.verdict.good, result and result.verdict
    _, awg_emu = emulators(station)
    intrinsic = np.asarray(awg_emu.intrinsic_skews_s) * 1e12  # ps
    for ch in CHANNELS[1:]:
        v = result.values[f"skew_ch{ch}"]
        seen = (np.rint(intrinsic[ch - 1]) - np.rint(intrinsic[0])) * 1e-12
        hidden = (intrinsic[ch - 1] - intrinsic[0]) * 1e-12
        assert v.stderr < 1e-12
        assert abs(v.value - seen) < SIGMAS * v.stderr, (ch, v, seen)
        assert abs(v.value - hidden) < SIGMAS * v.stderr + 1e-12, (ch, v, hidden)
    # Applying the proposed skews cancels them: a second run finds them all near zero.
    for ch in CHANNELS:
        station.instrument("awg").awg_channels[ch].skew(result.proposed[f"awg.ch{ch}.skew"])
    check = AwgSkewCalibration(channels=CHANNELS, inputs=INPUTS,
                               input_offset_stderr_s=offset_err).run(station, db, quiet=True)
    assert check.analysis is not None and check.analysis.verdict.good
    for ch in CHANNELS[1:]:
        v = check.analysis.values[f"skew_ch{ch}"]
        assert abs(v.value) < SIGMAS * v.stderr + 1e-12, (ch, v)

    again = analyze_run(run.run_id, run.db_path, save=False)
    assert again.values == result.values and again.proposed == result.proposed


def test_a_disabled_input_gives_a_bad_verdict_not_a_number(station: LabStation,
                                                           tmp_path: Path) -> None:
    switch_outputs(station)
    station.instrument("tagger").tagger_channels[2].enabled(False)
    run = TaggerDelayCalibration(inputs=(1, 2)).run(station, tmp_path / "lab.db", quiet=True)
    result = run.analysis
    assert result is not None and not result.verdict.good
    assert result.verdict.reason == Reason.NO_SIGNAL
    assert "input 2" in result.verdict.detail and "disabled" in result.verdict.detail
    assert result.proposed == {} and "delay_input2" not in result.values


def test_no_common_signal_gives_a_bad_verdict(station: LabStation, tmp_path: Path) -> None:
    # The AWG's outputs are off: the inputs see nothing at all.
    run = TaggerDelayCalibration(inputs=(1, 2)).run(station, tmp_path / "lab.db", quiet=True)
    assert run.analysis is not None and run.analysis.verdict.reason == Reason.NO_SIGNAL
    assert run.analysis.proposed == {}


def test_an_awg_channel_with_its_output_off_gives_a_bad_verdict(station: LabStation,
                                                                tmp_path: Path) -> None:
    switch_outputs(station)
    station.instrument("awg").awg_channels[2].output(False)
    recable_to_channels(station)
    run = AwgSkewCalibration(channels=(1, 2), inputs=(1, 2)).run(
        station, tmp_path / "lab.db", quiet=True)
    result = run.analysis
    assert result is not None and not result.verdict.good
    assert result.verdict.reason == Reason.NO_SIGNAL
    assert "ch2" in result.verdict.detail and "output was off" in result.verdict.detail
    assert result.proposed == {}


def test_uncorrelated_tags_show_no_peak() -> None:
    rng = np.random.default_rng(3)
    ts = np.sort(rng.integers(0, 10**10, 4000))
    block = TagBlock(ts.astype(np.int64), rng.integers(1, 3, ts.size).astype(np.int16))
    verdict = fit_peak(correlate(block, 1, 2, range_ps=20_000, bin_width_ps=1), 500)
    assert isinstance(verdict, Verdict) and not verdict.good
    assert verdict.reason == Reason.NO_SIGNAL


def test_an_interrupted_calibration_stops_the_awg(station: LabStation, tmp_path: Path) -> None:
    from qnetlab.instruments.errors import InstrumentTimeoutError

    tagger = station.instrument("tagger")
    real_acquire, calls = tagger.acquire, []

    def acquire_then_time_out(duration: float) -> Any:
        calls.append(duration)
        if len(calls) == 2:
            raise InstrumentTimeoutError("tagger did not answer (injected)")
        return real_acquire(duration)

    tagger.acquire = acquire_then_time_out
    result = TaggerDelayCalibration(inputs=INPUTS, awg="awg", acquisitions=3).run(
        station, tmp_path / "lab.db", quiet=True)
    assert result.interrupted and result.stopped_at is not None
    assert result.stopped_at["label"].startswith("acquisition 2")
    _, awg_emu = emulators(station)
    assert not awg_emu.running and station.instrument("awg").run_state() == "Stopped"
