"""Quantum Opus amp-sim SNSPD bias modules in an SRS SIM900: driver against its emulator.

Statistical tolerances: the emulator's counts are Poisson (`SnspdModel.counts`), so a count
N with mean mu has standard deviation sqrt(mu); every count is held to ``Z = 5`` standard
deviations of its mean (a false failure once in ~1.7 million draws; the seeds are fixed, so
a run is reproducible anyway). Rates the emulator computes rather than draws (click_rate) are
compared with the model to floating-point precision.
"""

from __future__ import annotations

import math
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

import qnetlab.drivers.quantum_opus.sim900_snspd as sim900_snspd
from qnetlab.drivers.quantum_opus import QuantumOpusSIM900
from qnetlab.drivers.quantum_opus.sim900_snspd import SlotError, bias_to_dac, dac_to_bias
from qnetlab.instruments.conformance import assert_conforms
from qnetlab.instruments.errors import InstrumentReportedError, InstrumentTimeoutError
from qnetlab.instruments.single_photon_detector import CounterNotConnectedError
from qnetlab.sim_instruments.bench import build_bench
from qnetlab.sim_instruments.devices.srs_sim900_quantum_opus import (
    MODULE_ID,
    SIM900QuantumOpusEmulator,
)
from qnetlab.sim_instruments.visa_backend import bench_of

TWIN = "srs_sim900_quantum_opus"
Z = 5.0
LSB = 25e-6 / 65535
"""A per DAC unit."""


def emulator_of(inst: QuantumOpusSIM900) -> SIM900QuantumOpusEmulator:
    device = bench_of(inst).endpoints[inst.name].device
    assert isinstance(device, SIM900QuantumOpusEmulator)
    return device


@pytest.fixture
def det(sim_instrument: Any) -> QuantumOpusSIM900:
    inst: QuantumOpusSIM900 = sim_instrument(QuantumOpusSIM900, TWIN, slots=[1, 3])
    return inst


def record(inst: QuantumOpusSIM900) -> list[str]:
    """Log every message the emulator receives from now on."""
    device = emulator_of(inst)
    log: list[str] = []
    handle = device.handle

    def logged(message: str) -> Any:
        log.append(message)
        return handle(message)

    device.handle = logged  # type: ignore[method-assign]
    return log


# -- the role ----------------------------------------------------------------------------------
def test_conforms_with_a_counter(sim_instrument: Any) -> None:
    box: dict[str, SIM900QuantumOpusEmulator] = {}
    inst = sim_instrument(QuantumOpusSIM900, TWIN, slots=[1, 2],
                          counter=lambda slot: box["em"].counts(slot, 1.0) / 1.0)
    box["em"] = emulator_of(inst)
    report = assert_conforms(inst)
    assert "SinglePhotonDetector" in report.roles
    assert "SinglePhotonDetector.channel_parameters" in report.checked
    # the probes were put back: power-up bias 0
    assert [emulator_of(inst).module(s).dac for s in (1, 2)] == [0, 0]


def test_conforms_without_a_counter_and_count_rate_names_the_fix(det: QuantumOpusSIM900) -> None:
    assert_conforms(det)
    with pytest.raises(CounterNotConnectedError, match=r"counter=.*time tagger"):
        det.ch1.count_rate()


def test_snapshot_does_not_ask_for_counts(det: QuantumOpusSIM900) -> None:
    snap = det.snapshot(update=True)["submodules"]["ch1"]["parameters"]
    assert snap["count_rate"]["value"] is None and snap["bias_current"]["value"] == 0.0


def test_counter_can_be_connected_later(det: QuantumOpusSIM900) -> None:
    det.counter = lambda slot: 7.0 * slot
    assert det.ch3.count_rate() == 21.0


def test_count_rate_comes_from_the_counter(sim_instrument: Any) -> None:
    asked: list[int] = []

    def counter(slot: int) -> float:
        asked.append(slot)
        return 123.0

    inst = sim_instrument(QuantumOpusSIM900, TWIN, slots=[2, 4], counter=counter)
    assert inst.ch4.count_rate() == 123.0 and asked == [4]
    assert inst.ch4.count_rate.unit == "Hz"
    assert set(inst.detector_channels) == {2, 4}


# -- the SNDT / NINP? / GETN? dialogue ---------------------------------------------------------
def test_module_query_goes_through_sndt_ninp_getn(det: QuantumOpusSIM900) -> None:
    log = record(det)
    emulator_of(det).module(1).dac = 1234
    assert det.ch1.bias_dac() == 1234
    # no sleeps, no guessing: one NINP? saw the whole reply "1234\n", one GETN? read it
    assert log == ['SNDT 1,"+B?"', "*ESR?", "NINP? 1", "GETN? 1,5"]
    log.clear()
    det.ch3.bias_dac(42)
    assert log == ['SNDT 3,"+B42;"', "*ESR?"]


def test_reply_read_in_pieces(det: QuantumOpusSIM900, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim900_snspd, "MAX_GETN", 2)
    log = record(det)
    emulator_of(det).module(1).dac = 26214
    assert det.ch1.bias_dac() == 26214
    assert [m for m in log if m.startswith("GETN")] == ["GETN? 1,2"] * 3  # "26" "21" "4\n"
    assert det.ask_module(1, "+A?") == MODULE_ID


def test_emulator_dialogue_and_case(det: QuantumOpusSIM900) -> None:
    em = emulator_of(det)
    assert em.handle('SNDT 1,"+B1000;+E1;"') is None  # settings send nothing back
    assert em.handle("NINP? 1") == "0"
    assert em.handle('SNDT 1,"+B?"') is None
    assert em.handle("NINP? 1") == "5"
    assert em.handle("GETN? 1,3") == "#3003100"
    assert em.handle("GETN? 1,128") == "#3002" + "0\n"  # the module's line feed is data
    assert em.handle("GETN? 1,128") == "#3000"
    # mainframe headers in either case; module letters too (an emulator leniency)
    assert em.handle('sndt 1,"+e?"') is None
    assert em.handle("ninp? 1") == "2"
    assert em.handle("getn? 1,10") == "#3002" + "1\n"
    assert em.handle("CTCR?") == str(sum(1 << s for s in (1, 2, 3, 4)))
    em.handle('SNDT 1,"+B?"')
    em.handle("FLSH")
    assert em.handle("NINP? 1") == "0"


def test_identity(det: QuantumOpusSIM900) -> None:
    idn = det.get_idn()
    assert idn["vendor"] == "Stanford_Research_Systems" and idn["model"] == "SIM900"


# -- bias --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("amps", "dac"), [(0.0, 0), (25e-6, 65535), (10e-6, 26214),
                                           (12.5e-6, 32768), (LSB, 1), (0.49 * LSB, 0)])
def test_bias_dac_conversion(amps: float, dac: int) -> None:
    assert bias_to_dac(amps) == dac
    assert abs(dac_to_bias(bias_to_dac(amps)) - amps) <= LSB / 2


def test_bias_current_sets_dac_units(det: QuantumOpusSIM900) -> None:
    module = emulator_of(det).module(3)
    det.ch3.bias_current(10e-6)
    assert module.dac == 26214
    assert det.ch3.bias_current() == pytest.approx(26214 * LSB, rel=1e-12)
    assert det.ch3.bias_current() == pytest.approx(10e-6, abs=LSB / 2)
    det.ch3.bias_current(25e-6)
    assert module.dac == 65535


@pytest.mark.parametrize("bad", [-1e-9, 25.1e-6, 1e-3])
def test_bias_out_of_range_is_refused_before_sending(det: QuantumOpusSIM900, bad: float) -> None:
    det.ch1.bias_current(5e-6)
    log = record(det)
    with pytest.raises(ValueError, match="bias_current"):
        det.ch1.bias_current(bad)
    assert log == []
    assert det.ch1.bias_current() == pytest.approx(5e-6, abs=LSB)


# -- latch and reset ---------------------------------------------------------------------------
def test_latch_holds_until_reset_below_the_switching_current(det: QuantumOpusSIM900) -> None:
    em = emulator_of(det)
    i_sw = em.module(1).model.switching_current
    det.ch1.bias_current(10e-6)
    assert not det.ch1.latched() and det.ch1.device_voltage() == 0.0
    det.ch1.bias_current(i_sw + 1e-6)
    assert det.ch1.latched()
    assert det.ch1.device_voltage() == pytest.approx((i_sw + 1e-6) * 10e3, rel=1e-3)
    assert em.click_rate(1) == 0.0 and em.counts(1, 1.0) == 0
    det.reset(1)  # the restored bias is still above I_sw: latches again at once
    assert det.ch1.latched()
    det.ch1.bias_current(10e-6)  # a latched wire stays resistive at a lower bias
    assert det.ch1.latched() and em.click_rate(1) == 0.0
    det.reset(1)
    assert not det.ch1.latched()
    assert det.ch1.bias_current() == pytest.approx(10e-6, abs=LSB)  # reset restores the bias
    assert em.click_rate(1) > 0.0
    assert not det.ch3.latched()  # channels are independent


def test_zero_bias_and_auto_reset_clear_a_latch(det: QuantumOpusSIM900) -> None:
    det.ch1.bias_current(20e-6)
    assert det.ch1.latched()
    det.ch1.bias_current(0.0)
    assert not det.ch1.latched()
    det.ch1.auto_reset(True)
    assert det.ch1.auto_reset()
    det.ch1.bias_current(20e-6)
    assert det.ch1.latched()  # auto-reset cannot help above the switching current
    det.ch1.bias_current(10e-6)
    assert not det.ch1.latched()  # ... but clears the latch once the bias is below it


def test_reset_duration_and_auto_bias(det: QuantumOpusSIM900) -> None:
    det.ch3.reset_duration(0.25)
    assert emulator_of(det).module(3).reset_duration == 25
    assert det.ch3.reset_duration() == pytest.approx(0.25)
    with pytest.raises(ValueError):
        det.ch3.reset_duration(2.6)
    det.auto_bias(3)
    i_sw = emulator_of(det).module(3).model.switching_current
    assert det.ch3.bias_current() == pytest.approx(0.95 * i_sw, abs=LSB)
    assert not det.ch3.latched()


# -- enable ------------------------------------------------------------------------------------
def test_enable_is_bias_zero_and_back(det: QuantumOpusSIM900) -> None:
    module = emulator_of(det).module(1)
    with pytest.raises(ValueError, match="Set bias_current"):
        det.ch1.enabled(True)  # power-up: bias 0 and nothing to return to
    det.ch1.bias_current(10.5e-6)
    assert det.ch1.enabled()
    det.ch1.enabled(False)
    assert module.dac == 0 and not det.ch1.enabled() and det.ch1.bias_current() == 0.0
    det.ch1.enabled(False)  # idempotent: does not forget the bias
    det.ch1.enabled(True)
    assert det.ch1.bias_current() == pytest.approx(10.5e-6, abs=LSB)
    det.ch1.enabled(True)
    assert det.ch1.bias_current() == pytest.approx(10.5e-6, abs=LSB)


# -- errors ------------------------------------------------------------------------------------
def test_mainframe_errors_raise_from_esr(det: QuantumOpusSIM900) -> None:
    with pytest.raises(InstrumentReportedError, match=r"EXE.*SNDT 9"):
        det.write('SNDT 9,"+B?"')
    with pytest.raises(InstrumentReportedError, match="CME"):
        det.write("BOGUS 1")
    with pytest.raises(InstrumentReportedError, match="CME"):
        det.write("SNDT 1")  # no message
    assert det.ch1.bias_current() == 0.0  # the session is still in step


def test_unanswered_module_query_times_out_naming_the_port(det: QuantumOpusSIM900) -> None:
    det.timeout(0.05)
    with pytest.raises(InstrumentTimeoutError, match=r"port 5 did not answer '\+B\?'"):
        det.ask_module(5, "+B?")  # an empty port
    with pytest.raises(InstrumentTimeoutError, match="port 1"):
        det.ask_module(1, "+Z?")  # a letter the module does not know
    assert det.ch1.bias_dac() == 0


def test_module_message_cannot_break_the_quoting(det: QuantumOpusSIM900) -> None:
    with pytest.raises(ValueError, match="double quote"):
        det.write_module(1, '+B1;" ; *RST')


def test_unknown_channel(det: QuantumOpusSIM900) -> None:
    with pytest.raises(KeyError, match=r"no detector channel 2.*\[1, 3\]"):
        det.reset(2)


@pytest.mark.parametrize("slots", [[0], [9], [1, 1], [], [True]])
def test_bad_slots_are_refused(sim_instrument: Any, slots: list[Any]) -> None:
    with pytest.raises(SlotError, match="slots"):
        sim_instrument(QuantumOpusSIM900, TWIN, slots=slots)


def test_empty_port_is_refused_at_connection(sim_instrument: Any) -> None:
    with pytest.raises(SlotError, match=r"ports \[6\] hold no module"):
        sim_instrument(QuantumOpusSIM900, TWIN, slots=[1, 6])


# -- the emulator's physics ------------------------------------------------------------------
def light_on(det: QuantumOpusSIM900) -> float:
    """Pump and microwave drive on (as in tests/test_detection_physics.py); photons/s."""
    world = bench_of(det).world
    world.set_pump(power=1e-3, on=True)  # the preset's operating point: no dead-time pile-up
    world.set_mw_drive(power_dbm=-90.0, on=True)
    world.advance(10.0)
    return emulator_of(det).photon_rate(1)


def test_dark_counts_rise_with_bias(det: QuantumOpusSIM900) -> None:
    em = emulator_of(det)
    model = em.module(1).model
    assert em.photon_rate(1) == 0.0  # pump off: dark counts only
    duration = 100.0
    means = {}
    for bias in (10.5e-6, 11.5e-6):
        det.ch1.bias_current(bias)
        applied = det.ch1.bias_current()
        assert em.click_rate(1) == pytest.approx(model.click_rate(0.0, applied), rel=1e-12)
        # dead time is negligible at ~100 Hz: the click rate is the dark-count rate
        assert em.click_rate(1) == pytest.approx(model.dark_count_rate(applied), rel=1e-5)
        mu = em.click_rate(1) * duration
        n = em.counts(1, duration)
        assert abs(n - mu) < Z * math.sqrt(mu), (bias, n, mu)
        means[bias] = mu
    # DCR = DCR_op exp((I - I_op) / I_dc): e^(1 uA / 0.6 uA) = 5.3x per microamp here
    assert means[11.5e-6] / means[10.5e-6] == pytest.approx(
        math.exp(1e-6 / model.dark_count_current_scale), rel=1e-3)


def test_click_rate_follows_the_efficiency_plateau(det: QuantumOpusSIM900) -> None:
    em = emulator_of(det)
    model = em.module(1).model
    phi = light_on(det)
    assert phi > 1e4  # photons dominate the ~10 Hz dark counts
    rates = {}
    for bias in (6e-6, 8e-6, 10e-6, 10.5e-6, 11e-6, 11.8e-6):
        det.ch1.bias_current(bias)
        applied = det.ch1.bias_current()
        rates[bias] = em.click_rate(1)
        assert rates[bias] == pytest.approx(model.click_rate(phi, applied), rel=1e-12)
        n = em.counts(1, 1.0)
        assert abs(n - rates[bias]) < Z * math.sqrt(rates[bias]), (bias, n, rates[bias])
    # plateau: within 2 % between 10 and 11.8 uA; half of it at the sigmoid midpoint (8 uA)
    plateau = rates[11e-6]
    for bias in (10e-6, 10.5e-6, 11.8e-6):
        assert rates[bias] == pytest.approx(plateau, rel=0.02)
    assert rates[8e-6] == pytest.approx(plateau / 2, rel=0.03)
    assert rates[6e-6] < 0.05 * plateau
    # and it rolls off into the latch: above I_sw nothing clicks
    det.ch1.bias_current(model.switching_current + 0.5e-6)
    assert em.click_rate(1) == 0.0 and em.counts(1, 1.0) == 0


# -- over a real TCP socket (pyvisa-py), as `qnetlab sim serve` offers it ----------------------
@pytest.mark.tcp
def test_over_tcp_socket(tmp_path: Path) -> None:
    from qnetlab.sim_instruments.server import BenchServer

    with socket.socket() as probe:  # a free port for the simulated SIM900
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "sim900_tcp.yaml"
    config.write_text(
        "qnetlab:\n  simulation: {seed: 1}\ninstruments:\n  snspd:\n"
        "    type: qnetlab.drivers.quantum_opus.QuantumOpusSIM900\n"
        f"    address: {{sim: {TWIN}, real: 'TCPIP0::127.0.0.1::{port}::SOCKET'}}\n"
    )
    server = BenchServer(build_bench(config))
    thread = threading.Thread(target=server.serve_forever, kwargs={"max_seconds": 30},
                              daemon=True)
    thread.start()
    inst = QuantumOpusSIM900(f"qo_tcp_{uuid.uuid4().hex[:6]}",
                             f"TCPIP0::127.0.0.1::{port}::SOCKET", slots=[1, 2],
                             visalib="@py")
    try:
        assert_conforms(inst)
        inst.ch2.bias_current(10e-6)
        assert inst.ch2.bias_dac() == 26214  # the GETN? block read by length over TCP
        assert inst.ask_module(1, "+A?") == MODULE_ID
        inst.ch2.bias_current(20e-6)
        assert inst.ch2.latched()
        inst.ch2.bias_current(10e-6)
        inst.reset(2)
        assert not inst.ch2.latched()
        with pytest.raises(InstrumentReportedError, match="execution error"):
            inst.write('SNDT 9,"+B?"')
        assert inst.ch1.bias_current() == 0.0
    finally:
        inst.close()
        server.stop()
        thread.join(5)
