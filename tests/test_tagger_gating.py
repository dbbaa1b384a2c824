"""Gating the ID1000's inputs to windows after the sync (``TSCO<n>:WIND``): the driver's role
methods against the twin over its real ZeroMQ sockets, the twin's gate on hand-made events,
the simulated link that draws background clicks only inside the gates, the heralding
station's gates from its herald windows, and the tag rate they save on the two-node link's
station lab."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qnetlab.drivers.idquantique import IDQuantiqueID1000
from qnetlab.instruments.errors import ConfigError, InstrumentReportedError
from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.station import load_station
from qnetlab.instruments.tag_blocks import TagBlock
from qnetlab.instruments.time_tagger import TagGate, ungated
from qnetlab.network.herald_engine import HeraldEngine, HeraldWindows
from qnetlab.network.herald_sources import TaggerHeralds, TaggerSource, herald_gates
from qnetlab.network.network_config import load_network_config
from qnetlab.sim_instruments.devices.idq_id1000 import IDQuantiqueID1000Emulator
from qnetlab.sim_instruments.link_events import read_twin_truth
from qnetlab.sim_instruments.physics.gating import in_windows, uniform_in_windows
from qnetlab.sim_instruments.physics.link import node_optics_from_preset
from qnetlab.sim_instruments.physics.link_clicks import NO_HERALD, LinkClicks
from qnetlab.sim_instruments.physics.link_physics import LinkPhysics
from qnetlab.sim_instruments.physics.presets import get_preset
from qnetlab.sim_instruments.physics.time_tagger import TaggerChannel, TimeTaggerModel
from qnetlab.sim_instruments.physics.world import LabWorld
from qnetlab.sim_instruments.zmq_server import ID1000Server

from conftest import REPO, free_port_run

Z = 5.0
"""Tolerance in standard deviations (fixed seeds: a bound on model mismatch)."""
SYNC, DETECTORS = 3, (1, 2)
PERIOD = 10_000_000
"""ps between the hand-made sync events (10 us)."""
HIDDEN = (1_000, 1_000, 3_000, 0)
"""ps, each input's hidden delay in the hand-made twin (no jitter)."""


class FixedEvents:
    """Given arrival times per input (sorted int64 ps)."""

    def __init__(self, events: dict[int, np.ndarray]) -> None:
        self.given = events

    def events(self, inputs: Sequence[int], start_ps: int, stop_ps: int,
               rng: np.random.Generator) -> dict[int, np.ndarray]:
        out = {}
        for n in inputs:
            t = self.given.get(n, np.empty(0, np.int64))
            i, j = np.searchsorted(t, (start_ps, stop_ps))
            out[n] = t[i:j]
        return out


@pytest.fixture
def id1000() -> Iterator[Callable[..., tuple[IDQuantiqueID1000, IDQuantiqueID1000Emulator]]]:
    """An ID1000 twin in an ideal world (no jitter, no drift) served on free loopback ports,
    and the driver on it; both closed after."""
    opened: list[tuple[IDQuantiqueID1000, ID1000Server]] = []

    def make(events: dict[int, np.ndarray] | None = None,
             ) -> tuple[IDQuantiqueID1000, IDQuantiqueID1000Emulator]:
        model = TimeTaggerModel(channels=tuple(TaggerChannel(delay_ps=d, jitter_rms_ps=0.0,
                                                             dead_time_ps=1) for d in HIDDEN),
                                max_stream_rate=20e6, resolution_ps=1)
        world = LabWorld(get_preset("bulk_eo_cw").model, seed=7, ideal=True)
        device = IDQuantiqueID1000Emulator(world, "id1000", model=model,
                                           source=FixedEvents(events or {}))
        device.chunk_s, device.batch_s = 0.0005, 0.001  # many block seams in a short run
        server = ID1000Server(device, scpi_port=0, data_port=0, max_lifetime_s=60).start()
        driver = IDQuantiqueID1000(f"id1000_{uuid.uuid4().hex[:8]}", server.scpi_address,
                                   server.data_address, timeout=2.0,
                                   stream_port_base=free_port_run(8))
        opened.append((driver, server))
        return driver, device

    yield make
    for driver, server in opened:
        driver.close()
        server.close()


def _brute_force(times: np.ndarray, syncs: np.ndarray, open_ps: int, close_ps: int
                 ) -> np.ndarray:
    """Inside some sync's window, by comparing every tag with every sync (small inputs)."""
    x = times[:, None] - syncs[None, :]
    return ((x >= open_ps) & (x < close_ps)).any(axis=1)


# -- the twin's gate, through the driver ---------------------------------------------------------
def test_a_gated_input_passes_exactly_the_tags_inside_some_syncs_window(id1000) -> None:
    """Input 1 gated to [2.5 periods + 10 ns, + 20 ns) after input 3's tags (windows that
    open in a later data-link batch than their sync); input 2 gets the same events ungated.
    Times are compared as recorded: each input's hidden and user delays included."""
    rounds = 5_000  # 50 ms
    sync = np.arange(rounds, dtype=np.int64) * PERIOD
    rng = np.random.default_rng(11)
    open_ps, close_ps = 25_010_000, 25_020_000
    skew = HIDDEN[0] - (HIDDEN[2] + 500)  # input 1's recorded time - input 3's (user 500 ps)
    # edges exactly (open passes, close does not) and random offsets over four periods
    edges = np.array([open_ps - 1, open_ps, open_ps + 5_000, close_ps - 1, close_ps,
                      close_ps + 1]) - skew
    hand = (sync[:, None] + edges[None, :]).ravel()
    scattered = rng.integers(0, rounds * PERIOD - 10_000, 20_000)
    clicks = np.unique(np.concatenate([hand, scattered]))
    driver, device = id1000({SYNC: sync, 1: clicks, 2: clicks})
    for n in (1, 2, SYNC):
        driver.tagger_channels[n].enabled(True)
    driver.input3.delay(500e-12)
    driver.gate(1, sync_channel=SYNC, open_s=open_ps * 1e-12, close_s=close_ps * 1e-12)

    block = driver.acquire(rounds * PERIOD * 1e-12)

    syncs = block.timestamps[block.channels == SYNC]
    every = block.timestamps[block.channels == 2]
    gated = block.timestamps[block.channels == 1]
    assert syncs.size == rounds
    recorded = clicks + HIDDEN[1]  # no jitter: every click, delayed, within the recording
    np.testing.assert_array_equal(every, recorded[recorded < rounds * PERIOD])
    # inputs 1 and 2 have the same hidden delay: the same times, one gated
    np.testing.assert_array_equal(gated, every[_brute_force(every, syncs, open_ps, close_ps)])
    assert gated.size >= 3 * (rounds - 3)  # the three hand-made tags inside, per round
    # the windows that carried across the twin's batches were exercised
    batch = round(device.batch_s * 1e12)
    opener = syncs[np.searchsorted(syncs, gated - open_ps, side="right") - 1]
    assert np.count_nonzero(opener // batch != gated // batch) >= 10


def test_the_gate_reads_back_and_ungating_passes_everything_again(id1000) -> None:
    clicks = np.arange(1, 2_000, dtype=np.int64) * 7_777_777
    sync = np.arange(2_000, dtype=np.int64) * PERIOD
    driver, device = id1000({SYNC: sync, 1: clicks})
    assert driver.supports_gating and driver.gate_of(1) is None
    driver.gate(1, sync_channel=SYNC, open_s=1e-6, close_s=1.5e-6)
    assert driver.gate_of(1) == TagGate(SYNC, pytest.approx(1e-6), pytest.approx(1.5e-6))
    assert driver.input1.gate_enabled() and driver.input1.gate_sync() == SYNC
    assert driver.input1.gate_open() == pytest.approx(1e-6)
    assert driver.input1.gate_close() == pytest.approx(1.5e-6)
    # what the twin holds: the commands of IDQ's filtering example
    for query, reply in (("TSCO1:FIR:LINK?", "DELA1"), ("TSCO1:WIND:ENAB?", "ON"),
                         ("TSCO1:WIND:BEGI:LINK?", f"DELA{SYNC}"),
                         ("TSCO1:WIND:END:LINK?", f"DELA{SYNC}"),
                         ("TSCO1:WIND:BEGI:DELAY?", "1000000"),
                         ("TSCO1:WIND:END:DELAY?", "1500000"),
                         ("TSCO1:WIND:BEGI:EDGE?", "RISING"), ("TSCO1:OPIN?", "ONLYFIR"),
                         ("TSCO1:OPOUt?", "MUTE")):
        assert driver.ask(query) == reply, query
    # moved later than it was (each write keeps a window that opens before it closes)
    driver.gate(1, sync_channel=SYNC, open_s=2e-6, close_s=3e-6)
    assert driver.gate_of(1) == TagGate(SYNC, pytest.approx(2e-6), pytest.approx(3e-6))
    for n in (1, SYNC):
        driver.tagger_channels[n].enabled(True)
    gated = driver.acquire(0.02)
    driver.ungate(1)
    assert driver.gate_of(1) is None and driver.ask("TSCO1:OPOUt?") == "ONLYFIR"
    assert device.stream_gates([1]) == {}
    every = driver.acquire(0.02)
    n_every = np.count_nonzero(every.channels == 1)
    assert n_every == np.count_nonzero(clicks < 0.02e12)
    assert 0 < np.count_nonzero(gated.channels == 1) < n_every / 5
    # the input's counter counts the input, gated or not
    driver.gate(1, sync_channel=SYNC, open_s=2e-6, close_s=3e-6)
    assert driver.input1.counts() == np.count_nonzero(clicks < 1e12)


def test_a_window_whose_sync_input_is_off_never_opens(id1000) -> None:
    clicks = np.arange(1, 500, dtype=np.int64) * 1_000_003
    driver, _ = id1000({SYNC: np.arange(1000, dtype=np.int64) * 500_000, 1: clicks})
    driver.input1.enabled(True)  # the sync input stays off: no edges open the window
    driver.gate(1, sync_channel=SYNC, open_s=0.0, close_s=4e-7)
    assert np.count_nonzero(driver.acquire(0.01).channels == 1) == 0
    with ungated(driver, [1, 2]):  # a calibration's recording: every tag, gate put back
        assert np.count_nonzero(driver.acquire(0.01).channels == 1) == clicks.size
    assert driver.gate_of(1) == TagGate(SYNC, 0.0, pytest.approx(4e-7))


@pytest.mark.parametrize(("arguments", "names"), [
    ({"channel": 1, "sync_channel": 3, "open_s": 2e-9, "close_s": 2e-9}, "close_s"),
    ({"channel": 1, "sync_channel": 3, "open_s": 3e-9, "close_s": 1e-9}, "close_s > open_s"),
    ({"channel": 1, "sync_channel": 1, "open_s": 0.0, "close_s": 1e-9}, "the gated input"),
    ({"channel": 1, "sync_channel": 7, "open_s": 0.0, "close_s": 1e-9}, "not an input"),
    ({"channel": 9, "sync_channel": 3, "open_s": 0.0, "close_s": 1e-9}, "no input 9"),
    ({"channel": 1, "sync_channel": 3, "open_s": -1e-9, "close_s": 1e-9}, "open_s"),
    ({"channel": 1, "sync_channel": 3, "open_s": 0.0, "close_s": 2.0}, "0 to 1 s"),
    ({"channel": 1, "sync_channel": 3, "open_s": math.nan, "close_s": 1e-9}, "open_s"),
])
def test_a_bad_gate_is_refused_naming_the_value_and_the_fix_before_anything_is_sent(
        id1000, arguments: dict[str, Any], names: str) -> None:
    driver, device = id1000()
    before = repr(device.tsco)
    channel = arguments.pop("channel")
    with pytest.raises(ConfigError, match="Fix:") as caught:
        driver.gate(channel, **arguments)
    assert names in str(caught.value) and driver.name in str(caught.value)
    assert repr(device.tsco) == before


def test_the_twin_answers_the_gate_commands_as_the_instrument_does(id1000) -> None:
    driver, _ = id1000()
    with pytest.raises(InstrumentReportedError, match="SCPI_ERR"):
        driver.ask("TSCO9:WIND:ENAB?")  # TSCO1-8 only
    with pytest.raises(InstrumentReportedError, match="SCPI_ERR"):
        driver.write("TSCO1:OPIN AND")  # an operation the twin does not emulate
    with pytest.raises(InstrumentReportedError, match="SCPI_ERR"):
        driver.write("TSCO1:WIND:BEGI:DELAY -5")
    # a window whose begin and end follow different blocks: stored, refused at REC:PLAY
    driver.input1.enabled(True)
    driver.write("RAW1:SEND ON")
    driver.write("TSCO1:WIND:BEGI:LINK DELA3")
    driver.write("TSCO1:WIND:END:LINK DELA4")
    driver.write("TSCO1:WIND:ENAB ON")
    assert driver.ask("TSCO1:WIND:END:LINK?") == "DELA4"
    driver.write("REC:ENAB ON")
    with pytest.raises(InstrumentReportedError, match="SCPI_ERR"):
        driver.write("REC:PLAY")


# -- the link drawn only inside the gates ---------------------------------------------------------
def test_drawing_only_inside_windows_is_drawing_everywhere_then_keeping_the_inside() -> None:
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(2)
    period, a, b, lo, hi = 1_000_000, -30_000, 70_000, 123_456, 2_000_000_000
    rate = 2e5  # Hz
    inside = uniform_in_windows(rng_a, rate, lo, hi, period, a, b)
    everywhere = np.sort(rng_b.integers(lo, hi, rng_b.poisson(rate * (hi - lo) * 1e-12)))
    syncs = np.arange(-1, hi // period + 2) * period
    kept = everywhere[in_windows(everywhere, syncs, a, b)]
    assert np.all(in_windows(inside, syncs, a, b))
    assert inside.min() >= lo and inside.max() < hi and np.all(np.diff(inside) >= 0)
    mean = rate * 1e-12 * (b - a) * (hi - lo) / period
    for count in (inside.size, kept.size):
        assert abs(count - mean) <= Z * math.sqrt(mean)
    # uniform inside the window: the offsets' mean is the window's centre
    offsets = (inside - a) % period
    assert abs(offsets.mean() - (b - a) / 2) <= Z * (b - a) / math.sqrt(12 * inside.size)


def _link_physics() -> LinkPhysics:
    """The two-node link's world (lab_configs/two_node_link.yaml: two-click, 2 x 2 km, 20 us
    attempts, 40 ns windows, 10 MHz-band transducers whose noise is a flux)."""
    nodes = tuple(node_optics_from_preset("bulk_eo_pulsed", 2.0, 0.5, None) for _ in range(2))
    return LinkPhysics(scheme="two_click", attempt_period_ps=20_000_000,
                       nodes=nodes, detection_window_ps=40_000, seed=5)


def test_the_link_draws_background_only_in_the_gates_and_the_same_clicks_there() -> None:
    """Dark counts and the transducers' noise flux, drawn only inside each detector's gate,
    give the clicks inside as drawing them everywhere does (counts within Poisson bounds of
    each other and of rate x open time); no click lies outside; signal photons are drawn as
    ever."""
    physics = _link_physics()
    state = ((0.9, 5e4), (0.85, 2e4))  # unequal detectors, dark counts high enough to count
    light = physics.light_ps
    gate = [(min(light) - 50_000, max(light) + 50_000)] * 2
    stop = 200_000_000_000  # 0.2 s: 20,000 rounds
    free = LinkClicks(physics, (0, 0), lambda: state, stop)
    gated = LinkClicks(physics, (0, 0), lambda: state, stop, gate_ps=(gate[0], gate[1]))
    period = physics.round_period_ps
    syncs = np.arange(-1, stop // period + 2, dtype=np.int64) * period
    noise = sum(n.noise_rate_at_station or 0.0 for n in physics.nodes)
    for d in (0, 1):
        everywhere = free._clicks(d, 0, stop)
        inside = gated._clicks(d, 0, stop)
        assert np.all(in_windows(inside.times[~inside.signal], syncs, *gate[d]))
        kept = in_windows(everywhere.times, syncs, *gate[d])
        passed = in_windows(inside.times, syncs, *gate[d])
        n_kept, n_passed = np.count_nonzero(kept), np.count_nonzero(passed)
        assert abs(n_passed - n_kept) <= Z * math.sqrt(n_passed + n_kept)
        open_s = (gate[d][1] - gate[d][0]) * 1e-12 * stop / period
        mean = (state[d][1] + state[d][0] * noise / 2) * open_s
        background = np.count_nonzero(~inside.signal)
        assert abs(background - mean) <= Z * math.sqrt(mean)
        # what the gate saves: background drawn over ~1/100 of the time
        assert np.count_nonzero(~everywhere.signal) > 50 * background
        # signal photons: the same process (drawn as ever), all inside the gate
        s_free, s_gated = everywhere.signal.sum(), inside.signal.sum()
        assert s_gated > 0 and abs(s_gated - s_free) <= Z * math.sqrt(s_gated + s_free)


# -- the heralding station ----------------------------------------------------------------------
NETWORK = REPO / "lab_configs" / "two_node_link.yaml"
FIBRE_PS_PER_KM = 4_900_000


def _station_lab(tmp_path: Path) -> Path:
    """The shipped station lab with its database in `tmp_path` (nothing calibrated there)."""
    text = (REPO / "lab_configs" / "heralding_station.yaml").read_text()
    old = "database: ../lab_data/heralding_station.db"
    assert old in text
    path = tmp_path / "heralding_station.yaml"
    path.write_text(text.replace(old, f"database: {tmp_path / 'station.db'}"))
    return path


def _station_windows(emulator: IDQuantiqueID1000Emulator) -> HeraldWindows:
    """The two-node link's herald windows at its true arrivals as the tagger records them
    (what the arm-delay calibration finds)."""
    config = load_network_config(NETWORK)
    spec = emulator.source.spec
    delay = {n: emulator.model.channels[n - 1].delay_ps
             for n in (*config.station.detector_inputs, config.station.sync_input)}
    offsets = tuple(tuple(light + delay[d] - delay[config.station.sync_input]
                          for light in spec.physics.light_ps)
                    for d in config.station.detector_inputs)
    return HeraldWindows(config.link.scheme, config.station.sync_input,
                         config.station.detector_inputs, offsets,
                         spec.physics.detection_window_ps)


def _open_station_lab(tmp_path: Path) -> Any:
    link = {**load_network_config(NETWORK).link_simulation(),
            "truth_file": str(tmp_path / "truth.npy")}
    config = load_config(_station_lab(tmp_path)).with_simulation(link=link)
    station = load_station(config, "sim")
    for channel in (station.instrument("snspd").ch1, station.instrument("snspd").ch2):
        channel.bias_current(10e-6)
    return station


def _lab_windows(tmp_path: Path) -> HeraldWindows:
    """The shipped station lab's herald windows (`_station_windows`), read from a probe of
    the lab that is closed again."""
    probe = _open_station_lab(tmp_path)
    try:
        return _station_windows(probe.world.bench.zmq_devices["tagger"])
    finally:
        probe.close()


def test_herald_gates_cover_every_arms_window_from_a_sync_before_it() -> None:
    windows = HeraldWindows("two_click", 3, (1, 2), ((19_600_000, 19_603_000),
                                                     (19_601_000, 19_590_000)), 40_000)
    gates = herald_gates(windows, 10_000_000, 2_000)
    bounds = windows.bounds_ps()
    for d, n in enumerate((1, 2)):
        open_ps, close_ps = gates[n]
        assert 0 <= open_ps < 10_000_000
        # every arm's window, shifted by whole periods, lies inside the gate
        for lo, hi in bounds[d]:
            shift = (lo - open_ps) // 10_000_000 * 10_000_000
            assert open_ps + 2_000 <= lo - shift and hi - shift <= close_ps - 2_000
    # a window as long as the period leaves nothing to drop: no gate
    assert herald_gates(windows, 45_000, 2_000) == {}


def test_the_station_gates_its_detectors_while_it_publishes_and_ungates_after(
        tmp_path: Path) -> None:
    config = load_network_config(NETWORK)
    windows = _lab_windows(tmp_path)
    source = TaggerSource(lab=_station_lab(tmp_path), windows=windows,
                          attempt_period_s=config.link.attempt_period,
                          tagger=config.station.tagger, simulation=config.link_simulation(),
                          settings={"snspd.ch1.bias_current": 10e-6,
                                    "snspd.ch2.bias_current": 10e-6},
                          recording_s=5.0)
    heralds = TaggerHeralds(source, epoch_ns=0, link_id=0)
    tagger = heralds.tagger
    try:
        assert all(tagger.gate_of(n) is None for n in (1, 2, 3))
        blocks = heralds.blocks()
        next(blocks)  # publishing: the detectors gated to the windows
        gates = herald_gates(windows, heralds.round_ps, 2_000)
        for n in windows.detector_channels:
            open_ps, close_ps = gates[n]
            assert tagger.gate_of(n) == TagGate(windows.sync_channel, pytest.approx(
                open_ps * 1e-12), pytest.approx(close_ps * 1e-12))
        assert tagger.gate_of(windows.sync_channel) is None
        assert heralds.summary()["gated_inputs"] == 2
        blocks.close()  # the station stops
        assert all(tagger.gate_of(n) is None for n in windows.detector_channels)
        # on an error too: a recording that fails ungates on the way out
        failing = heralds.blocks()
        tagger_blocks = tagger.blocks

        def broken(duration_s: float) -> Iterator[Any]:
            assert tagger.gate_of(1) is not None
            raise OSError("the data link went away")
            yield  # a generator

        tagger.blocks = broken
        with pytest.raises(OSError, match="data link"):
            next(failing)
        tagger.blocks = tagger_blocks
        assert all(tagger.gate_of(n) is None for n in windows.detector_channels)
    finally:
        heralds.close()


def test_gating_the_two_node_links_station_cuts_its_detector_tags_by_window_over_period(
        tmp_path: Path) -> None:
    """The station lab of two_node_link.yaml: detector tags/s ungated, then gated to its
    herald windows. Gated, the twin draws background only inside the gates; what passes
    must be what an ungated recording has inside them (both Poisson: within Z sigma of each
    other): the signal photons (all inside) and (gate / round period) of the background,
    which is uniform (a window as wide half a period away holds as much). Every genuine
    herald of the twin's truth is heralded from the gated stream."""
    duration = 1.0
    station = _open_station_lab(tmp_path)
    try:
        tagger = station.instrument("tagger")
        emulator = station.world.bench.zmq_devices["tagger"]
        windows = _station_windows(emulator)
        for n in (*windows.detector_channels, windows.sync_channel):
            tagger.tagger_channels[n].enabled(True)
        free = tagger.acquire(duration)
        round_ps = round(load_network_config(NETWORK).link.attempt_period * 1e12) // 2
        gates = herald_gates(windows, round_ps, 2_000)
        for n, (open_ps, close_ps) in gates.items():
            tagger.gate(n, sync_channel=windows.sync_channel, open_s=open_ps * 1e-12,
                        close_s=close_ps * 1e-12)
        # the link draws its background only there: each gate in the link's time, holding
        # the true arrival windows, no wider than the gate plus the tagger's jitter and dead
        # time
        drawn = emulator.source.gate_windows()
        physics = emulator.source.spec.physics
        for d, n in enumerate(windows.detector_channels):
            a, b = drawn[d]
            half = physics.detection_window_ps // 2
            assert all(a <= light - half and light + half <= b for light in physics.light_ps)
            slack = emulator.model.channels[n - 1].dead_time_ps + 1_000
            assert b - a <= gates[n][1] - gates[n][0] + slack
        gated = tagger.acquire(duration)
        engine = HeraldEngine(windows)
        heralds_gated = engine.feed(gated.timestamps, gated.channels).copy()
        engine_attempts = engine.counters["attempts"]
    finally:
        station.close()
    syncs_free = free.timestamps[free.channels == windows.sync_channel]
    syncs_gated = gated.timestamps[gated.channels == windows.sync_channel]
    assert syncs_free.size == syncs_gated.size  # the sync is never gated
    for n, (open_ps, close_ps) in gates.items():
        every = free.timestamps[free.channels == n]
        passed = gated.timestamps[gated.channels == n]
        inside = np.count_nonzero(in_windows(every, syncs_free, open_ps, close_ps))
        assert np.all(in_windows(passed, syncs_gated, open_ps, close_ps))
        assert abs(passed.size - inside) <= Z * math.sqrt(passed.size + inside)
        # what the gate drops: the background outside it, (1 - gate / period) of it all
        fraction = (close_ps - open_ps) / round_ps
        outside = every.size - inside
        assert abs((every.size - passed.size) - outside) <= Z * math.sqrt(passed.size + inside)
        half = round_ps // 2
        control = np.count_nonzero(in_windows(every, syncs_free, open_ps + half,
                                              close_ps + half))
        background_inside = outside * fraction / (1 - fraction)
        assert abs(control - background_inside) <= Z * math.sqrt(background_inside) + 1
        assert every.size > 20 * passed.size
    truth = read_twin_truth(tmp_path / "truth.npy")  # of the latest (gated) recording
    genuine = truth[truth["genuine"] & (truth["bell_state"] != NO_HERALD)
                    & (truth["attempt_id"] < engine_attempts - 2)]
    assert genuine.size > 0
    missed = genuine[~np.isin(genuine["attempt_id"], heralds_gated["attempt_id"])]
    # the truth judges a click before the tagger's jitter and drift, the engine after: only
    # a click that close to a window's edge may be judged apart
    assert _near_window_edges(gated, windows, missed["attempt_id"], 500).all(), missed


def _near_window_edges(block: Any, windows: HeraldWindows, attempts: np.ndarray,
                       within_ps: int) -> np.ndarray:
    """Per two-click attempt: does a detector click of its rounds lie within `within_ps` of
    one of its windows' edges?"""
    syncs = block.timestamps[block.channels == windows.sync_channel]
    bounds = windows.bounds_ps()
    out = np.zeros(attempts.size, bool)
    for i, attempt in enumerate(attempts.astype(np.int64).tolist()):
        for d, n in enumerate(windows.detector_channels):
            clicks = block.timestamps[block.channels == n]
            for r in (2 * attempt, 2 * attempt + 1):
                if r < syncs.size:
                    x = clicks - syncs[r]
                    out[i] |= bool((np.abs(x[:, None] - bounds[d].ravel()[None, :])
                                    <= within_ps).any())
    return out


def test_the_source_numbers_the_wire_rows_on_over_blocks_and_recordings(
        tmp_path: Path) -> None:
    """The station sends a source's rows as they are: its link id on every herald, seqs
    from 0 up with no gap over blocks and over a new recording, and an overflowed block's
    heralds (dropped: a lost click could have made one) never numbered."""
    config = load_network_config(NETWORK)
    lab_windows = _lab_windows(tmp_path)
    period = 1_000_000  # ps; every round's click in detector 0's window of arm 0
    windows = HeraldWindows("single_click", lab_windows.sync_channel,
                            lab_windows.detector_channels, ((500_000, 700_000),) * 2,
                            40_000, round_period_ps=period)
    source = TaggerSource(lab=_station_lab(tmp_path), windows=windows,
                          attempt_period_s=period * 1e-12, tagger=config.station.tagger,
                          simulation=config.link_simulation(), gate_margin_s=None)
    heralds = TaggerHeralds(source, epoch_ns=0, link_id=7)
    sync, detector = windows.sync_channel, windows.detector_channels[0]

    def block(first_round: int, overflow: bool) -> TagBlock:
        syncs = np.arange(first_round, first_round + 10, dtype=np.int64) * period
        ts = np.stack([syncs, syncs + 500_000], axis=1).ravel()
        ch = np.tile(np.array([sync, detector], np.int8), 10)
        return TagBlock(ts, ch, overflow=overflow)

    def recording(duration_s: float) -> Iterator[TagBlock]:
        heralds.tagger.recording_started = 0.0
        yield from (block(0, False), block(10, True), block(20, False))

    heralds.tagger.blocks = recording  # type: ignore[method-assign]
    try:
        stream = heralds.blocks()
        handed = [next(stream) for _ in range(6)]  # two recordings of three blocks
        stream.close()
        rows = np.concatenate([b.heralds for b in handed])
        summary = heralds.summary()
    finally:
        heralds.close()
    assert summary["recordings"] >= 1 and summary["overflowed_blocks"] == 2
    assert len(rows) == summary["heralds"] - summary["heralds_dropped_overflow"] > 0
    assert summary["heralds_dropped_overflow"] > 0
    assert (rows["link"] == 7).all()
    assert np.array_equal(rows["seq"], np.arange(len(rows)))
    assert (np.diff(rows["attempt_id"].astype(np.int64)) > 0).all()  # on over recordings
