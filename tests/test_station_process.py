"""The heralding station process over its own lab's time tagger (sim profile).

The station loads the shipped heralding_station.yaml (its SNSPDs and ID1000) with the link's
world behind the tagger's twin (`NetworkConfig.link_simulation` of two_node_link.yaml), runs
the herald engine on the tag blocks in its reader thread and publishes each block's heralds.
A plain SUB (no CURVE: key_dir None) listens. What is asserted is what the design
guarantees whatever the machine's load: heralds numbered 0, 1, 2, ... and published in
attempt order, each decided before its tag block reached the station and handed off after
it, everything decided published (no fault injected), the station's own logs consistent with
what was received. Rates against the physics are tests/test_link_twin.py's.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from qnetlab.network import ProcessGroup
from qnetlab.network.herald_engine import HeraldWindows
from qnetlab.network.heralding_station import (
    SEND_DTYPE,
    StationSettings,
    TaggerSource,
    run_station,
)
from qnetlab.network.messages import HERALD_DTYPE, AttemptStats, Heartbeat, Heralds, decode
from qnetlab.network.network_config import load_network_config

from conftest import REPO, free_port_run, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.processes]

NETWORK = REPO / "lab_configs" / "two_node_link.yaml"
LIMIT = 60.0
"""s after which the station stops by itself."""
FIBRE_DELAY_PS_PER_KM = 4_900_000
"""Light time in fibre, ps/km (the arm-delay calibration's nominal search centre)."""


def station_lab(folder: Path) -> Path:
    """The shipped station lab with its database in `folder` (none there: no calibrated
    value is applied, the test sets the SNSPD biases itself)."""
    text = (REPO / "lab_configs" / "heralding_station.yaml").read_text()
    old = "database: ../lab_data/heralding_station.db"
    assert old in text
    path = folder / "heralding_station.yaml"
    path.write_text(text.replace(old, f"database: {folder / 'station.db'}"))
    return path


def tagger_source(folder: Path, **changes: object) -> TaggerSource:
    """The station's tagger source as `plan_lab` builds it, with windows at the arms'
    nominal delays (wide: the twin's tagger adds its own hidden delays)."""
    config = load_network_config(NETWORK)
    delays = tuple(round(config.nodes[n].fibre_length_km * FIBRE_DELAY_PS_PER_KM)
                   for n in config.link.nodes)
    windows = HeraldWindows(config.link.scheme, config.station.sync_input,
                            config.station.detector_inputs, (delays, delays), 200_000)
    options: dict[str, object] = {
        "lab": station_lab(folder), "windows": windows,
        "attempt_period_s": config.link.attempt_period, "tagger": config.station.tagger,
        "simulation": config.link_simulation(),
        "settings": {"snspd.ch1.bias_current": 10e-6, "snspd.ch2.bias_current": 10e-6},
        "recording_s": LIMIT + 10}
    options.update(changes)
    return TaggerSource(**options)  # type: ignore[arg-type]


def settings(folder: Path, source: TaggerSource) -> StationSettings:
    port = free_port_run(2)
    return StationSettings(
        name="station", link_id=0, herald_address=f"tcp://127.0.0.1:{port}",
        request_address=f"tcp://127.0.0.1:{port + 1}", key_dir=None, run_dir=folder / "run",
        epoch_ns=time.monotonic_ns(), max_seconds=LIMIT, source=source)


@pytest.fixture
def group() -> Iterator[ProcessGroup]:
    with ProcessGroup() as processes:
        yield processes


def test_station_publishes_the_heralds_of_each_tag_block_at_once(tmp_path, group):
    station = settings(tmp_path, tagger_source(tmp_path))
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.rcvtimeo = 200
    sub.connect(station.herald_address)
    received: list[np.ndarray] = []
    stats: list[AttemptStats] = []
    beats_before_heralds = 0
    try:
        group.start("station", run_station, station, None, report_to=station.run_dir)

        def heard(count: int) -> bool:
            nonlocal beats_before_heralds
            try:
                message = decode(sub.recv())
            except zmq.Again:
                return False
            if isinstance(message, Heartbeat) and not received:
                beats_before_heralds += 1
            elif isinstance(message, Heralds):
                received.append(message.records.copy())
            elif isinstance(message, AttemptStats):
                stats.append(message)
            return sum(len(r) for r in received) >= count and len(stats) >= 3

        # ~75 heralds/s once the lab is up (two-click, an attempt every 20 us): 200 take ~3 s.
        wait_until(lambda: heard(200), LIMIT / 2, "200 heralds from the station")
        group.stop_all()
    finally:
        sub.close(0)
        context.term()
    assert not (station.run_dir / "station_fault.json").exists()
    # The lab takes a second or more to open (in the reader thread): the station heartbeats
    # meanwhile, so no node takes it for lost.
    assert beats_before_heralds >= 2
    heralds = np.concatenate(received)
    # Numbered from 0 without a gap, in attempt order (the SUB joined before the first).
    assert np.array_equal(heralds["seq"], np.arange(len(heralds)))
    assert (np.diff(heralds["attempt_id"].astype(np.int64)) > 0).all()
    assert set(np.unique(heralds["bell_state"]).tolist()) <= {0, 1}

    logged = np.load(station.run_dir / "station_heralds.npy")
    assert logged.dtype == HERALD_DTYPE
    assert np.array_equal(logged[:len(heralds)], heralds)  # what was sent is what was logged
    sends = np.load(station.run_dir / "station_sends.npy")
    assert sends.dtype == SEND_DTYPE
    # Each frame handed off after its tag block arrived; its heralds decided before that
    # (their windows closed before the tags that closed them could be recorded and sent).
    assert (sends["send_ps"] >= sends["block_ps"]).all()
    assert (sends["decided_ps"] <= sends["block_ps"]).all()
    summary = json.loads((station.run_dir / "station_summary.json").read_text())
    source = summary["source"]
    # No fault injected: every herald decided was published, and the engine's count of
    # heralds is the station's plus those dropped with overflowed tag blocks.
    assert summary["heralds"] == summary["counters"]["heralds_published"] == len(logged)
    assert source["heralds"] == len(logged) + source.get("heralds_dropped_overflow", 0)
    assert summary["attempts"] == source["attempts"] > 100 * len(logged)
    # AttemptStats count the attempts decided window by window, without a gap or overlap.
    for before, after in itertools.pairwise(stats):
        assert after.first_attempt_id == before.first_attempt_id + before.attempts
        assert after.heralds_decided >= before.heralds_decided


def test_a_station_lab_without_its_tagger_is_reported_as_a_config_fault(tmp_path, group):
    station = settings(tmp_path, tagger_source(tmp_path, tagger="no_such_tagger"))
    group.start("station", run_station, station, None, report_to=station.run_dir)
    fault_file = station.run_dir / "station_fault.json"
    wait_until(fault_file.exists, LIMIT / 2, "the station's fault report")
    fault = json.loads(fault_file.read_text())
    assert fault["kind"] == "config"
    assert "instruments.no_such_tagger" in fault["message"]
    assert "station.tagger" in fault["message"]  # the fix names the network config's entry
    assert group.join("station", LIMIT / 2) is not None


def test_the_whole_link_delivers_pairs_decided_from_the_tagger(tmp_path, group):
    """`plan_lab` with the engine's windows: the station reads its lab's tagger (the link's
    world behind the twin), both node agents and the orchestrator run as `qnetlab link` runs
    them, and the pairs come, the same set at both nodes, each one the station heralded."""
    import dataclasses

    from qnetlab.network.keys import generate_lab_keys
    from qnetlab.network.lab import plan_lab, read_report, start_lab

    config = load_network_config(NETWORK)
    config = config.with_ports(free_port_run(config.port_count))
    config = dataclasses.replace(config, key_dir=tmp_path / "keys", run_dir=tmp_path / "run")
    generate_lab_keys(config.key_dir, config.key_names())
    source = tagger_source(tmp_path)
    plan = plan_lab(config, pairs=200, run_dir=config.run_dir, epoch_ns=time.monotonic_ns(),
                    goodness=0.8, expected_pair_rate=1500.0, max_seconds=LIMIT,
                    windows=source.windows, simulation=source.simulation,
                    station_settings=source.settings)
    assert isinstance(plan.station.source, TaggerSource)
    station = dataclasses.replace(plan.station.source, lab=source.lab)  # no database in it
    plan = dataclasses.replace(plan, station=dataclasses.replace(plan.station, source=station))
    start_lab(group, plan)
    assert group.join(plan.orchestrator.name, LIMIT) == 0, "orchestrator did not finish"
    # The orchestrator's last verdicts are on their way to the nodes when it ends.
    wait_until(lambda: read_report(plan).agree, LIMIT / 2, "both nodes agreeing")
    group.stop_all()
    report = read_report(plan)
    assert report.delivered == 200 and report.agree and not report.failed
    # Each delivered pair is a herald the station logged, decided from the tags.
    assert len(report.delivered_heralds) == 200
    summary = json.loads((plan.run_dir / "station_summary.json").read_text())
    assert summary["source"]["heralds"] >= summary["heralds"] >= 200


# -- the tagger read for low latency (drivers/idquantique/id1000.py) -------------------------

def test_the_merge_horizon_waits_for_inputs_running_behind_but_not_for_silent_ones():
    from types import SimpleNamespace

    from qnetlab.drivers.idquantique.id1000 import IDQuantiqueID1000

    driver = SimpleNamespace(stream_latency_s=0.002)  # 2 ms = 2e9 ps
    horizon = IDQuantiqueID1000._horizon
    # All inputs at the front: the front less the stream latency.
    assert horizon(driver, 100e9, {1: 100e9, 3: 100e9}, set()) == 98e9
    # An input still sending but 5 ms behind the front (its stream runs late): nothing after
    # its last tag, however far behind.
    assert horizon(driver, 100e9, {1: 95e9, 3: 100e9}, set()) == 95e9
    assert horizon(driver, 100e9, {1: 70e9, 3: 100e9}, set()) == 70e9
    # A silent input (nothing heard for the latency: a sparse detector between clicks, or a
    # stream that ended) holds nothing back.
    assert horizon(driver, 100e9, {1: 70e9, 3: 100e9}, {1}) == 98e9


def test_an_input_not_yet_heard_holds_the_first_blocks_back_but_not_for_ever():
    from types import SimpleNamespace

    from qnetlab.drivers.idquantique.id1000 import IDQuantiqueID1000

    driver = SimpleNamespace(stream_latency_s=0.002)
    silent = IDQuantiqueID1000._silent
    inputs = {1: None, 2: None, 3: None}
    heard = {1: 99.9995, 2: 99.990, 3: -np.inf}  # 1 just now, 2 10 ms ago, 3 never
    # 5 ms into the recording the sync input (3) may still be on its way: it holds
    assert silent(driver, inputs, set(), heard, 0.005, 100.0) == {2}
    # after 10 latencies an input never heard is a dark one: it holds nothing
    assert silent(driver, inputs, set(), heard, 0.021, 100.0) == {2, 3}
    assert silent(driver, inputs, {1}, heard, 0.021, 100.0) == {1, 2, 3}


def test_the_tagger_stamps_its_recording_start_and_reads_loss_counters_slowly(tmp_path):
    """A 0.3 s recording in 1 ms blocks: `recording_started` is set at REC:PLAY, the blocks
    are sorted and consecutive, and RAW<n>:ERRORS? is asked every `error_check_interval_s`
    (and at the end), not with every block."""
    from qnetlab.instruments.station import load_station

    with load_station(station_lab(tmp_path), "sim") as lab:
        tagger = lab.instrument("tagger")
        tagger.error_check_interval_s = 0.05
        for n in (1, 2):
            lab.instrument("snspd").submodules[f"ch{n}"].bias_current(10e-6)
        lab.instrument("ref_laser").power(2e-3)  # the reference source: ~1e3 clicks/s each
        lab.instrument("ref_laser").output(True)
        for n in (1, 2, 3, 4):
            tagger.tagger_channels[n].enabled(n in (1, 2))
        asked: list[str] = []
        original = tagger.ask_parsed

        def counting(command: str, *args: object) -> object:
            asked.append(command)
            return original(command, *args)

        tagger.ask_parsed = counting
        before = time.monotonic()
        blocks = list(tagger.blocks(0.3))
        after = time.monotonic()
        assert tagger.recording_started is not None  # (closing the lab strips it)
        assert before <= tagger.recording_started <= after
    stamps = np.concatenate([b.timestamps for b in blocks])
    assert len(stamps) > 100 and (np.diff(stamps) >= 0).all()
    checks = [c for c in asked if c.startswith("RAW") and c.endswith(":ERRORS?")]
    # Two inputs: (0.3 s + the stream's end) / 0.05 s checks each, plus the final one; far
    # fewer than one per 1 ms block. Bounded above only: a slow machine checks less often.
    assert 0 < len(checks) <= 2 * (round((after - before) / 0.05) + 2)
    assert len(checks) < len(blocks) or len(blocks) < 20


def test_a_recording_left_early_is_stopped_so_the_next_one_starts(tmp_path):
    """A station stops reading mid-recording (its reader closes the generator): the driver
    stops the recording, and the next one starts at once instead of 'already playing'."""
    from qnetlab.instruments.station import load_station

    with load_station(station_lab(tmp_path), "sim") as lab:
        tagger = lab.instrument("tagger")
        lab.instrument("snspd").submodules["ch1"].bias_current(10e-6)
        lab.instrument("ref_laser").power(2e-3)
        lab.instrument("ref_laser").output(True)
        for n in (1, 2, 3, 4):
            tagger.tagger_channels[n].enabled(n == 1)
        blocks = tagger.blocks(600.0)
        first = next(b for b in blocks if len(b))  # blocks come empty while inputs are dark
        blocks.close()  # as the station's reader does when it stops
        again = tagger.acquire(0.05)
        assert len(first) and len(again)
        assert tagger.ask("REC:STAGe?").strip().upper().startswith("STOP")


def test_a_source_stuck_inside_a_block_costs_neither_the_heralds_nor_the_process(
        tmp_path, monkeypatch):
    """A tagger that stops answering mid-recording, deaf to the stop: the station still ends
    (after the reader's stop timeout), logs every herald decided before, and does not close
    the stuck thread's socket under it (which aborts the process inside libzmq)."""
    import threading

    from qnetlab.network.herald_publisher import BlockReader
    from qnetlab.network.test_signals import PeriodicHeralds

    release = threading.Event()
    handed: list[int] = []

    class StuckSource:
        def __init__(self, *, epoch_ns: int, link_id: int) -> None:
            self.signal = PeriodicHeralds(1_000_000_000, epoch_ns=epoch_ns, link_id=link_id,
                                          block_s=0.01)

        def blocks(self) -> Iterator[object]:
            for _, block in zip(range(3), self.signal.blocks(), strict=False):
                handed.append(len(block.heralds))
                yield block
            release.wait()  # never answers again; the stop is not heard here

    monkeypatch.setattr(BlockReader, "stop_timeout_s", 0.2)
    port = free_port_run(2)
    station = StationSettings(
        name="station", link_id=0, herald_address=f"tcp://127.0.0.1:{port}",
        request_address=f"tcp://127.0.0.1:{port + 1}", key_dir=None, run_dir=tmp_path / "run",
        epoch_ns=time.monotonic_ns(), max_seconds=1.0, source=None)
    stuck_before = {t.ident for t in threading.enumerate() if t.name == "herald-blocks"}
    try:
        run_station(station, StuckSource, [])  # an empty list: never asked to stop
        reader = [t for t in threading.enumerate()
                  if t.name == "herald-blocks" and t.ident not in stuck_before]
        assert len(reader) == 1 and reader[0].is_alive(), "the source was not stuck"
    finally:
        release.set()
    logged = np.load(station.run_dir / "station_heralds.npy")
    assert len(handed) == 3 and len(logged) == sum(handed) > 0
    assert np.array_equal(logged["seq"], np.arange(len(logged)))


def test_the_reader_thread_publishes_each_block_itself_holding_the_lock() -> None:
    """No hand-over to the loop's thread on the latency path: the reader publishes, and
    only while it holds the lock the loop takes for its own use of the publisher."""
    import threading

    import zmq

    from qnetlab.network.herald_publisher import BlockReader
    from qnetlab.network.test_signals import PeriodicHeralds

    seen: list[tuple[str, bool]] = []
    done = threading.Event()

    class ThreeBlocks:
        def __init__(self, *, epoch_ns: int, link_id: int) -> None:
            self.signal = PeriodicHeralds(1_000_000, epoch_ns=epoch_ns, link_id=link_id,
                                          block_s=0.002)

        def blocks(self) -> Iterator[object]:
            for _, block in zip(range(3), self.signal.blocks(), strict=False):
                yield block
            done.set()

    context = zmq.Context()
    reader: BlockReader | None = None

    def publish(block: object) -> None:
        assert reader is not None
        seen.append((threading.current_thread().name, reader.lock.locked()))

    reader = BlockReader(context, ThreeBlocks, time.monotonic_ns(), publish=publish)
    try:
        reader.start()
        assert done.wait(10.0)
        assert reader.stop()
    finally:
        context.term()
    assert seen == [("herald-blocks", True)] * 3


def test_a_block_numbered_other_than_on_from_the_last_stops_the_station(tmp_path) -> None:
    """The station sends a source's rows as they are, then checks them: a source that skips
    a seq or writes another link is a bug the nodes cannot see (they would count real
    heralds as lost), so it stops the station, naming what it expected."""
    from qnetlab.network.herald_publisher import HeraldPublisher, StationSettings
    from qnetlab.network.herald_sources import HeraldBlock
    from qnetlab.network.test_signals import PeriodicHeralds

    context = zmq.Context()
    pub, router = context.socket(zmq.PUB), context.socket(zmq.ROUTER)
    try:
        settings = StationSettings(name="station", link_id=3, herald_address="",
                                   request_address="", key_dir=None, run_dir=tmp_path,
                                   epoch_ns=0)
        station = HeraldPublisher(settings, pub, router)
        signal = PeriodicHeralds(10**9, link_id=3, start_ps=0)
        station.publish(signal.until(5 * 10**9))
        assert station.decided_seq == 6
        skipping = signal.until(8 * 10**9)
        skipping.heralds["seq"] += 1
        with pytest.raises(RuntimeError, match=r"seq 7\.\.9.*expects seq 6\.\. on link 3"):
            station.publish(skipping)
        other_link = PeriodicHeralds(10**9, link_id=4, start_ps=0).until(0)
        fresh = HeraldPublisher(settings, pub, router)
        with pytest.raises(RuntimeError, match=r"link\(s\) \[4\]"):
            fresh.publish(HeraldBlock(other_link.heralds, 1, 0))
    finally:
        pub.close(0)
        router.close(0)
        context.term()
