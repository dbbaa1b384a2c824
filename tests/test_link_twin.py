"""The simulated link behind the heralding station's time tagger twin (`LinkEvents`).

A station lab (SIM900 SNSPDs behind the beam splitter, an ID1000 recording both detectors and
the attempt clock) with a ``qnetlab.simulation.link`` section streams the link's tags over the
ID1000's data link; the herald engine run on them with windows at the true delays must herald
at the analytic rate of `network.link_model`, and the twin's ground truth must agree with it
attempt by attempt.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.station import load_station
from qnetlab.network.herald_engine import HeraldEngine, HeraldWindows
from qnetlab.network.link_model import expected_fidelity, expected_success_probability
from qnetlab.sim_instruments.bench import build_bench
from qnetlab.sim_instruments.devices.srs_sim900_quantum_opus import dac_of
from qnetlab.sim_instruments.link_config import parse_link
from qnetlab.sim_instruments.link_events import (
    TWIN_TRUTH_DTYPE,
    TruthWriter,
    read_twin_truth,
)
from qnetlab.sim_instruments.physics.link_clicks import NO_HERALD, LinkClicks

OPERATING_BIAS = 10.5e-6
"""A: the SNSPD model's operating point (efficiency 0.894, 10 Hz dark counts)."""
SYNC, DETECTORS = 3, (1, 2)
Z = 5.0
"""Tolerance in standard deviations: a fixed seed, so this is a bound on model mismatch."""


def _link(scheme: str, **changes: Any) -> dict[str, Any]:
    km, collection = (2.0, 0.5) if scheme == "single_click" else (0.0, 1.0)
    link = {
        "scheme": scheme,
        "attempt_period": 1.0e-6 if scheme == "single_click" else 2.0e-6,
        "bright_state_population": 0.05,
        "sync_input": SYNC,
        "detector_inputs": list(DETECTORS),
        "seed": 20261201,
        # the preset's device is Hz-class: this world's fires every round (1 MHz)
        "nodes": {name: {"transducer": "bulk_eo_pulsed", "fibre_length_km": km,
                         "collection_efficiency": collection, "repetition_limit": 1.0e6}
                  for name in ("node_a", "node_b")},
        # its 10 MHz band makes a ~16 ns photon: a 40 ns window keeps 72 % of it
        "detection_window": 4.0e-8,
        "hom_visibility": 0.95,
        "double_excitation_probability": 0.0,
        "arrival_time_spread": 5.0e-11,
        "truth_file": "run/twin_truth.npy",
    }
    link.update(changes)
    return link


def _station_yaml(tmp_path: Path, link: dict[str, Any] | None,
                  wiring: dict[int, str] | None = None) -> Path:
    """A heralding-station lab: SIM900 (2 slots) + ID1000, detectors cabled to inputs 1, 2."""
    simulation: dict[str, Any] = {"seed": 3}
    if link is not None:
        simulation["link"] = link
    document = {
        "qnetlab": {"simulation": simulation,
                    "wiring": {"tagger": wiring or {1: "snspd.ch1", 2: "snspd.ch2"}}},
        "instruments": {
            "snspd": {"type": "qnetlab.drivers.quantum_opus.QuantumOpusSIM900",
                      "address": {"sim": "srs_sim900_quantum_opus"},
                      "init": {"slots": [1, 2]}},
            "tagger": {"type": "qnetlab.drivers.idquantique.IDQuantiqueID1000",
                       "address": {"sim": "idq_id1000"},
                       # The driver hands on a block once the wall clock says its tags
                       # have all arrived: generous margins, so a loaded machine slowing
                       # the twin cannot reorder tags (the blocks come at the end).
                       "init": {"block_interval_s": 0.05, "stream_latency_s": 60.0,
                                "stream_end_timeout_s": 60.0}},
        },
    }
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _ready(station: Any, bias: float = OPERATING_BIAS) -> tuple[Any, Any]:
    """Bias both SNSPDs and enable the tagger's inputs through the drivers, as a lab does."""
    snspd, tagger = station.instrument("snspd"), station.instrument("tagger")
    for channel in (snspd.ch1, snspd.ch2):
        channel.bias_current(bias)
    for n in (*DETECTORS, SYNC):
        tagger.tagger_channels[n].enabled(True)
    return snspd, tagger


def _true_windows(station: Any, scheme: str) -> HeraldWindows:
    """The engine's windows at the world's true delays (what the arm-delay calibration finds):
    light time of each arm plus each input's hidden tagger delay, relative to the sync's."""
    emulator = station.world.bench.zmq_devices["tagger"]
    spec = emulator.source.spec
    delay = {n: emulator.model.channels[n - 1].delay_ps for n in (*DETECTORS, SYNC)}
    offsets = tuple(tuple(light + delay[d] - delay[SYNC] for light in spec.physics.light_ps)
                    for d in DETECTORS)
    return HeraldWindows(scheme, SYNC, DETECTORS, offsets,  # type: ignore[arg-type]
                         spec.physics.detection_window_ps)


def _clicks_at_window_edges(blocks: list[Any], windows: HeraldWindows, attempts: np.ndarray,
                            sigmas: float) -> np.ndarray:
    """Per attempt: whether a detector click lies within `sigmas` ps of one of its windows'
    edges (the attempt's rounds' syncs, each detector's arm windows)."""
    times = np.concatenate([b.timestamps for b in blocks])
    channels = np.concatenate([b.channels for b in blocks])
    syncs = times[channels == windows.sync_channel]
    rounds = 1 if windows.scheme == "single_click" else 2
    out = np.zeros(attempts.size, bool)
    for i, attempt in enumerate(attempts.astype(np.int64)):
        for r in range(rounds):
            sync = syncs[attempt * rounds + r]
            for d, channel in enumerate(windows.detector_channels):
                clicks = times[channels == channel] - sync
                for centre in windows.offsets_ps[d]:
                    for edge in (centre - windows.window_ps // 2,
                                 centre + windows.window_ps - windows.window_ps // 2):
                        out[i] |= bool(np.any(np.abs(clicks - edge) < sigmas))
    return out


@pytest.mark.parametrize("scheme", ["single_click", "two_click"])
def test_heralds_from_the_twins_tags_match_the_model_and_the_truth(
        tmp_path: Path, scheme: str) -> None:
    duration = 1.0
    station = load_station(_station_yaml(tmp_path, _link(scheme)), "sim")
    try:
        _, tagger = _ready(station)
        windows = _true_windows(station, scheme)
        engine = HeraldEngine(windows)
        blocks = list(tagger.blocks(duration))
        heralds = np.concatenate([engine.feed(b.timestamps, b.channels) for b in blocks])
        emulator = station.world.bench.zmq_devices["tagger"]
        source = emulator.source
        physics = source.spec.physics
        model = physics.model(source.detector_state())
    finally:
        station.close()
    attempts = engine.counters["attempts"]
    assert attempts >= 0.99 * duration * 1e12 / physics.attempt_period_ps
    p = expected_success_probability(model)
    assert abs(heralds.size - p * attempts) <= Z * math.sqrt(attempts * p * (1 - p))
    psi_minus = int(np.count_nonzero(heralds["bell_state"] == 1))
    assert abs(psi_minus - heralds.size / 2) <= Z * math.sqrt(heralds.size / 4)

    truth = read_twin_truth(tmp_path / "run" / "twin_truth.npy")
    assert truth.dtype == TWIN_TRUTH_DTYPE
    assert np.all(np.diff(truth["attempt_id"].astype(np.int64)) > 0)
    # every attempt both decided by the engine and final in the truth: the same verdict
    final = int(truth["attempt_id"].max()) - 1000
    decided = min(attempts, final)
    told = heralds[heralds["attempt_id"] < decided]
    true = truth[(truth["attempt_id"] < decided) & (truth["bell_state"] != NO_HERALD)]
    # Transducer noise photons are a flux uniform in time, so a few clicks lie within the
    # tagger's jitter (9 ps rms per input) of a window edge: the truth judges them before the
    # jitter, the engine after. Every attempt on which they differ must have such a click.
    differ = np.setxor1d(told["attempt_id"], true["attempt_id"])
    edge = _clicks_at_window_edges(blocks, windows, differ, sigmas=6 * math.sqrt(2) * 9.0)
    assert edge.all(), differ[~edge]
    assert differ.size <= 0.001 * true.size
    told = told[~np.isin(told["attempt_id"], differ)]
    true = true[~np.isin(true["attempt_id"], differ)]
    np.testing.assert_array_equal(told["attempt_id"], true["attempt_id"])
    np.testing.assert_array_equal(told["bell_state"], true["bell_state"])
    # the truth's sync time is the tag's, to within the tagger's jitter
    assert np.abs(told["sync_ps"] - true["sync_ps"]).max() < 100
    # the world's fidelity of the heralded states is the model's
    f = expected_fidelity(model)
    spread = true["fidelity"].std()
    assert abs(true["fidelity"].mean() - f) <= Z * spread / math.sqrt(true.size)


def test_an_unbiased_snspd_sees_no_link_photons(tmp_path: Path) -> None:
    station = load_station(_station_yaml(tmp_path, _link("single_click")), "sim")
    try:
        _, tagger = _ready(station, bias=0.0)
        block = tagger.acquire(0.1)
    finally:
        station.close()
    assert np.count_nonzero(np.isin(block.channels, DETECTORS)) == 0
    syncs = np.count_nonzero(block.channels == SYNC)
    assert abs(syncs - 100_000) <= 1


def test_the_detectors_counter_sees_the_link_clicks(tmp_path: Path) -> None:
    """The loader wires each SNSPD's count_rate to the tagger's counter on its input; with a
    link, that counter counts the link's clicks: per round, each detector gets half of every
    node's photons (signal with probability alpha), and half of the transducers' noise flux
    (uniform in time, N_add eta (pi/2) B photons/s per node at the station)."""
    station = load_station(_station_yaml(tmp_path, _link("single_click")), "sim")
    try:
        snspd, _ = _ready(station)
        rate = snspd.ch1.count_rate()
        source = station.world.bench.zmq_devices["tagger"].source
        physics = source.spec.physics
        (efficiency, dark), _ = source.detector_state()
    finally:
        station.close()
    photons = sum(physics.bright_state_population * n.station_transmission
                  for n in physics.nodes) / 2
    noise = efficiency * sum(n.noise_rate_at_station or 0.0 for n in physics.nodes) / 2
    expected = (-math.expm1(-efficiency * photons) * 1e12 / physics.round_period_ps + noise
                + dark)
    assert abs(rate - expected) <= Z * math.sqrt(expected) + 0.01 * expected


# -- the clicks, offline ------------------------------------------------------------------------
def _clicks(tmp_path: Path, link: dict[str, Any], stop_ps: int | None) -> LinkClicks:
    spec = parse_link(load_config(_station_yaml(tmp_path, link)))
    assert spec is not None
    state = ((0.85, 40.0), (0.9, 10.0))  # unequal detectors
    return LinkClicks(spec.physics, (0, 0), lambda: state, stop_ps)


@pytest.mark.parametrize("scheme", ["single_click", "two_click"])
def test_clicks_and_truth_do_not_depend_on_the_chunk_length(tmp_path: Path, scheme: str) -> None:
    stop = 30_000_000_000  # 30 ms
    one = _clicks(tmp_path, _link(scheme), stop)
    other = _clicks(tmp_path, _link(scheme), stop)
    edges_a = np.arange(0, stop + 1, 500_000_000)
    edges_b = np.unique(np.r_[np.random.default_rng(1).integers(0, stop, 40), 0, stop])
    for d in (0, 1):
        a = np.concatenate([one.detector_clicks(d, lo, hi)
                            for lo, hi in itertools.pairwise(edges_a)])
        b = np.concatenate([other.detector_clicks(d, lo, hi)
                            for lo, hi in itertools.pairwise(edges_b)])
        np.testing.assert_array_equal(a, b)
    syncs = np.concatenate([one.sync_times(lo, hi)
                            for lo, hi in itertools.pairwise(edges_b)])
    np.testing.assert_array_equal(syncs, np.arange(syncs.size) * one.physics.round_period_ps)
    n = one.attempts_final_by(stop)
    split = np.concatenate([other.truth(lo, hi) for lo, hi in ((0, 777), (777, 5000), (5000, n))])
    assert one.truth(0, n).tobytes() == split.tobytes()  # nan fidelities compare as bytes


@pytest.mark.parametrize(("scheme", "changes"), [
    ("single_click", {}),
    ("single_click", {"hom_visibility": 0.6, "double_excitation_probability": 0.1,
                      "bright_state_population": 0.2}),
    ("two_click", {"hom_visibility": 0.7, "double_excitation_probability": 0.05}),
])
def test_the_truth_heralds_at_the_models_rate_and_fidelity(
        tmp_path: Path, scheme: str, changes: dict[str, Any]) -> None:
    link = _link(scheme, **changes)
    clicks = _clicks(tmp_path, link, None)
    attempts = 400_000
    truth = clicks.truth(0, attempts)
    heralds = truth[truth["bell_state"] != NO_HERALD]
    model = clicks.physics.model(clicks.detectors())
    p = expected_success_probability(model)
    assert abs(heralds.size - p * attempts) <= Z * math.sqrt(attempts * p * (1 - p))
    f = expected_fidelity(model)
    spread = max(float(heralds["fidelity"].std()), 1e-3)
    assert abs(heralds["fidelity"].mean() - f) <= Z * spread / math.sqrt(heralds.size)
    assert np.all(heralds["genuine"] <= (heralds["fidelity"] > 0.5))


# -- the truth file -----------------------------------------------------------------------------
def test_a_recording_cut_short_keeps_its_truth_and_the_next_replaces_it(tmp_path: Path) -> None:
    bench = build_bench(load_config(_station_yaml(tmp_path, _link("single_click"))))
    snspd, tagger = bench.device("snspd"), bench.zmq_devices["tagger"]
    for slot in (1, 2):
        snspd.module(slot).set_dac(dac_of(OPERATING_BIAS))
    for n in (*DETECTORS, SYNC):
        tagger.enabled[n] = tagger.raw_send[n] = True
    tagger.rec_duration_ps = 10**12  # 1 s, stopped after 0.1 s
    chunks = tagger.recording()
    reached = max(next(chunks).stop_ps for _ in range(200))
    chunks.close()  # as the server does when the recording stops or the server closes
    path = tmp_path / "run" / "twin_truth.npy"
    first = read_twin_truth(path)
    period = tagger.source.spec.physics.attempt_period_ps
    assert first.size > 100  # ~1.5 % of 1e5 attempts
    assert first["attempt_id"].max() < reached // period
    tagger.rec_duration_ps = 10**10  # 10 ms
    for _ in tagger.recording():
        pass
    second = read_twin_truth(path)
    assert 0 < second.size < first.size
    assert second["attempt_id"].max() < 10**10 // period


def test_the_truth_file_is_a_valid_array_after_every_append(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "truth.npy"
    writer = TruthWriter(path)
    assert read_twin_truth(path).size == 0
    rows = np.zeros(3, TWIN_TRUTH_DTYPE)
    rows["attempt_id"] = [4, 9, 12]
    writer.append(rows)
    writer.append(rows[:1])
    assert np.load(path)["attempt_id"].tolist() == [4, 9, 12, 4]  # readable while open
    writer.close()
    with pytest.raises(FileNotFoundError, match="truth_file"):
        read_twin_truth(tmp_path / "missing.npy")
    np.save(tmp_path / "other.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not the twin's truth"):
        read_twin_truth(tmp_path / "other.npy")


# -- the schema ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("changes", "entry"), [
    ({"colour": "blue"}, "qnetlab.simulation.link.colour"),
    ({"scheme": "three_click"}, "qnetlab.simulation.link.scheme"),
    ({"attempt_period": -1.0}, "qnetlab.simulation.link.attempt_period"),
    ({"attempt_period": "1us"}, "qnetlab.simulation.link.attempt_period"),
    ({"sync_input": 9}, "qnetlab.simulation.link.sync_input"),
    ({"detector_inputs": [1, 3]}, "qnetlab.simulation.link.detector_inputs"),
    ({"detector_inputs": [1]}, "qnetlab.simulation.link.detector_inputs"),
    ({"nodes": {"a": {"transducer": "bulk_eo_pulsed", "fibre_length_km": 1.0}}},
     "qnetlab.simulation.link.nodes"),
    ({"nodes": {"a": {"transducer": "warp_drive", "fibre_length_km": 1.0},
                "b": {"transducer": "bulk_eo_pulsed", "fibre_length_km": 1.0}}},
     "qnetlab.simulation.link.nodes.a.transducer"),
    ({"nodes": {"a": {"transducer": "bulk_eo_pulsed", "fibre_length_km": -1.0},
                "b": {"transducer": "bulk_eo_pulsed", "fibre_length_km": 1.0}}},
     "qnetlab.simulation.link.nodes.a.fibre_length_km"),
    ({"hom_visibility": 1.5}, "qnetlab.simulation.link.hom_visibility"),
    ({"detection_window": 5e-6}, "qnetlab.simulation.link.detection_window"),
    ({"chunk_s": 0.01}, "qnetlab.simulation.link.chunk_s"),
    ({"seed": -2}, "qnetlab.simulation.link.seed"),
    ({"tagger": "nope"}, "qnetlab.simulation.link.tagger"),
])
def test_a_bad_link_section_names_its_entry(tmp_path: Path, changes: dict[str, Any],
                                            entry: str) -> None:
    path = _station_yaml(tmp_path, {**_link("single_click"), **changes})
    with pytest.raises(ConfigError) as caught:
        build_bench(load_config(path))
    assert caught.value.entry == entry


def test_missing_keys_and_bad_cables_name_their_entry(tmp_path: Path) -> None:
    link = _link("single_click")
    del link["nodes"]
    with pytest.raises(ConfigError) as caught:
        build_bench(load_config(_station_yaml(tmp_path, link)))
    assert caught.value.entry == "qnetlab.simulation.link.nodes"
    uncabled = _station_yaml(tmp_path, _link("single_click"), {1: "snspd.ch1"})
    with pytest.raises(ConfigError) as caught:
        build_bench(load_config(uncabled))
    assert caught.value.entry == "qnetlab.simulation.link.detector_inputs"
    clock_cabled = _station_yaml(tmp_path, _link("single_click"),
                                 {1: "snspd.ch1", 2: "snspd.ch2", 3: "snspd.ch3"})
    with pytest.raises(ConfigError) as caught:
        build_bench(load_config(clock_cabled))
    assert caught.value.entry == "qnetlab.simulation.link.sync_input"
