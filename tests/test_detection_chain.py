"""The detection chain on one simulated world: transducer -> SNSPD -> ID1000, plus an AWG
marker, loaded from lab_configs/detection_chain.yaml with the sim profile."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zmq

from qnetlab.drivers.idquantique import IDQuantiqueID1000
from qnetlab.instruments.awg import AwgStep, AwgWaveform
from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.single_photon_detector import CounterNotConnectedError
from qnetlab.instruments.station import LabStation, load_station
from qnetlab.sim_instruments.bench import build_bench
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import REPO

CONFIG = REPO / "lab_configs" / "detection_chain.yaml"
BIAS = 10.5e-6  # A, the SnspdModel's operating current


@pytest.fixture
def station() -> Iterator[LabStation]:
    with load_station(CONFIG) as st:
        yield st


def poisson_apart(a: float, b: float, sigmas: float = 6.0) -> bool:
    """Counts a and b (from 1 s windows) differ by more than `sigmas` Poisson deviations."""
    return abs(a - b) > sigmas * np.sqrt(a + b + 1.0)


def test_station_loads_with_a_served_tagger_on_the_same_world(station: LabStation) -> None:
    tagger = station.instrument("tagger")
    assert isinstance(tagger, IDQuantiqueID1000)
    assert tagger.address.startswith("tcp://127.0.0.1:")
    assert "tagger" in station.servers
    bench = bench_of(station.instrument("snspd"))
    # One bench: the tagger's emulator is wired to the very SIM900 emulator the driver uses.
    source: Any = bench.zmq_devices["tagger"].source
    assert source.detectors[1] == (bench.device("snspd"), 1)
    assert source.markers[4] == (bench.device("awg"), 1, 1)
    assert bench.world is source.world


def test_count_rate_follows_bias_pump_and_drive(station: LabStation) -> None:
    snspd, tagger, setup = station.instrument("snspd"), station.instrument("tagger"), \
        station.setup
    assert setup is not None
    world = bench_of(snspd).world
    with pytest.raises(CounterNotConnectedError, match=r"input1\.enabled"):
        snspd.ch1.count_rate()
    tagger.input1.enabled(True)
    assert snspd.ch1.count_rate() == 0.0  # bias off: no detector
    snspd.ch1.bias_current(BIAS)
    dark = snspd.ch1.count_rate()  # no pump: no light at all, dark counts only
    module = bench_of(snspd).device("snspd").module(1)
    expected_dark = module.model.dark_count_rate(module.bias)
    assert abs(dark - expected_dark) < 6 * np.sqrt(expected_dark) + 1
    setup.pump_power(5e-3)
    setup.pump_on(True)
    pump_only = snspd.ch1.count_rate()  # added noise and leaked pump
    assert poisson_apart(pump_only, dark) and pump_only > dark
    setup.mw_frequency(world.transducer.mw_resonance_frequency)
    station.instrument("mw_source").rf_output(True)
    driven = snspd.ch1.count_rate()  # converted microwave photons on top
    assert poisson_apart(driven, pump_only) and driven > pump_only
    expected = bench_of(snspd).device("snspd").click_rate(1)
    assert abs(driven - expected) < 6 * np.sqrt(expected)
    # A lower bias: lower efficiency (and far fewer dark counts).
    snspd.ch1.bias_current(0.8 * BIAS)
    assert poisson_apart(snspd.ch1.count_rate(), driven)
    assert snspd.ch1.count_rate() < driven


def test_awg_marker_edges_reach_their_input(station: LabStation) -> None:
    awg, tagger = station.instrument("awg"), station.instrument("tagger")
    n = 2400  # the emulator's shortest waveform: one marker pulse per 960 ns at 2.5 GS/s
    markers = np.zeros((4, n), dtype=bool)
    markers[0, 100:200] = True
    awg.sample_rate(2.5e9)
    awg.upload_sequence([AwgStep({1: AwgWaveform(np.zeros(n), markers)})])
    awg.ch1.output(True)
    awg.run()
    tagger.input4.enabled(True)
    block = tagger.acquire(0.002)
    tags = block.timestamps[block.channels == 4]
    assert 2000 <= tags.size <= 2090  # 2 ms / 960 ns = 2083 edges
    gaps = np.diff(tags)
    # The gaps are the marker period, up to the tagger's jitter (5 ps rms per tag).
    assert np.median(gaps) == pytest.approx(960_000, abs=2)
    assert np.all(np.abs(gaps - 960_000) < 60)
    assert not np.any(block.channels == 1)  # input 1 is disabled


def test_closing_the_station_stops_the_tagger_server() -> None:
    station = load_station(CONFIG)
    tagger = station.instrument("tagger")
    address = tagger.address
    assert tagger.ask("*IDN?").startswith("ID Quantique")
    station.close()
    assert station.servers == {}
    # Nothing answers on the SCPI address any more.
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 300)
    sock.connect(address)
    try:
        sock.send_string("*IDN?")
        with pytest.raises(zmq.Again):
            sock.recv()
    finally:
        sock.close(0)


@pytest.mark.parametrize(("wiring", "match"), [
    ("    tagger: {1: nowhere.ch1}\n", "not another instrument"),
    ("    tagger: {1: snspd.slot1}\n", "cannot read"),
    ("    tagger: {0: snspd.ch1}\n", "whole number >= 1"),
    ("    tagger: {5: snspd.ch1}\n", "inputs 1-4"),
    ("    tagger: {1: snspd.ch7}\n", "holds no module"),
    ("    tagger: {1: awg.ch1}\n", "not a simulated SNSPD"),
    ("    tagger: {1: snspd.ch1.marker1}\n", "not a simulated AWG"),
    ("    snspd: {1: tagger.ch1}\n", "not a time tagger twin"),
])
def test_wiring_errors_name_the_entry(tmp_path: Any, wiring: str, match: str) -> None:
    text = CONFIG.read_text()
    start = text.index("  wiring:\n")
    end = text.index("\ninstruments:")
    config = tmp_path / "chain.yaml"
    config.write_text(text[:start] + "  wiring:\n" + wiring + text[end:])
    with pytest.raises(ConfigError, match=match) as info:
        build_bench(load_config(config))
    assert "qnetlab.wiring" in str(info.value)


def test_check_lists_every_instrument_of_the_chain(capsys):
    from qnetlab.cli import main

    assert main(["check", str(CONFIG)]) == 0
    out = capsys.readouterr().out
    for name, role in [("snspd", "SinglePhotonDetector"), ("tagger", "TimeTagger"),
                       ("awg", "AWG")]:
        assert any(line.startswith(name) and role in line for line in out.splitlines())
