"""Delivery through the whole network at herald rates of ~1, 4, 16 and 64 kHz, against a bare
pipeline in the same run.

    python benchmarks/bench_delivery.py [--rates 1000,4000,16000,64000] [--seconds 8]
                                        [--warmup 2] [--slot 0.1] [--source periodic|twin]
                                        [--twin-nice 19] [--repeat 1]

Per rate, one session with two setups on this machine at once:

  - ours: the heralding station process, both node agents and the orchestrator, CURVE on,
    exactly as `qnetlab link` runs them; the orchestrator asks for more pairs than the run
    can herald, so every herald is wanted. The station's herald source:
      * ``--source periodic`` (default): the `PeriodicHeralds` test signal at the rate,
        handed over in 1 ms blocks as a tagger's data link does, only in ours' time slots;
      * ``--source twin``: the station lab's ID1000 time tagger, its twin simulating a
        single-click link at 0 km (alpha 0.1, collection 1.0, the attempt period set for the
        rate: 9.8 us at 4 kHz, no shorter than 0.25 us) in paced real time, read through the
        driver in 1 ms blocks (2 ms stream latency) and decided by the herald engine with
        windows at the world's true delays (what the arm-delay calibration finds); heralds
        all the time. The station lab's twins run as the sim profile runs them, in a process
        of their own (`qnetlab.station_twin`); ``--source served-twin``: served by
        ``qnetlab sim serve`` on the lab's real addresses instead (the rehearsal). The
        twins' process runs at ``--twin-nice`` (default 19): on hardware the tagger and the
        detectors do this work themselves, so the simulation's half a core must not be
        charged to the control plane measured here; ``--twin-nice 0`` measures it as
        ``qnetlab link`` runs it, the twins competing for the cores.
  - bare: one process reads a block stream (the same `PeriodicHeralds` at the rate, in the
    other slots: ``--slot`` s each in turn, `TimeSlots`, so with the test signal both share
    whatever the machine does), stamps each block's arrival, publishes the block's heralds
    as one frame (CURVE on, the lab's keys) to two SUB processes (blocking recv, stamped right
    after). With the twin, ours runs through the bare setup's slots too.

Printed per rate, over the heralds decided in ``--seconds`` s after the warm-up (and at
least 0.5 s after the request's start):
  - delivered / heralded: pairs the orchestrator delivered (both nodes OK'd and hold them)
    over heralds the station decided. The station's own herald log (``<station>_heralds.npy``)
    says what was heralded; with the twin, its truth file (``truth_file``) is joined to it by
    attempt id: how many heralds a correct engine makes and how many of the station's are true;
  - expired (heralds older than the memory cutoff at a node's receipt, per node) and lost
    (given up after the resends); each herald of the window not delivered by the first
    reason a node's log gives; the nodes' agreement (the same delivered set, and
    contradictions: a pair delivered at one node and released, expired or lost at the other);
  - latency from the tag block's arrival at the station (``block_ps`` in the station's
    send log) to the later node agent's receipt, median and p99, and the bare pipeline's
    (block arrival -> later SUB), with their ratio; then the station's share (block ->
    hand-off) and the rest (hand-off -> later node). Targets: delivered/heralded >= 0.99 up
    to 16 kHz; latency median <= 1.25x and p99 <= 1.5x of bare;
  - CPU per process (cores, over the measured window).

``--receive-only`` runs ours without the orchestrator (no pairs asked, no OK/verdict traffic):
what the delivery path costs the heralds' latency. ``--gather`` and ``--batch-interval`` set
the orchestrator's. Every process stamps the host's monotonic clock, so no clock-sync error
enters. The machine is shared (load average printed per session): a figure taken while other
work ran says so.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_common import (  # noqa: E402
    DETECTORS,
    OPERATING_BIAS,
    SYNC,
    bare_sub,
    write_station_lab,
)

from qnetlab.network import ProcessGroup, read_faults  # noqa: E402
from qnetlab.network.keys import (  # noqa: E402
    generate_lab_keys,
    make_curve_server,
    start_authenticator,
)
from qnetlab.network.lab import LabPlan, plan_lab, read_pairs, start_lab  # noqa: E402
from qnetlab.network.network_config import load_network_config  # noqa: E402
from qnetlab.network.node_state import PairEvent  # noqa: E402
from qnetlab.network.test_signals import PeriodicHeralds, TimeSlots  # noqa: E402
from qnetlab.sim_instruments.ports import free_port_run  # noqa: E402
from qnetlab.station_twin import private_station_lab, start_station_twin  # noqa: E402

STREAMING = {"block_interval_s": 0.001, "stream_latency_s": 0.002}
"""The tagger's streaming, as lab_configs/heralding_station.yaml reads it."""

CONFIG = REPO / "lab_configs" / "two_node_link.yaml"
CUTOFF_S = load_network_config(CONFIG).nodes["node_a"].memory_cutoff
TARGET_RATIO, TARGET_MEDIAN, TARGET_P99 = 0.99, 1.25, 1.5


# -- the bare pipeline ----------------------------------------------------------------------
def _bare_station(port: int, key_dir: Path, epoch_ns: int, period_ps: int, slots: TimeSlots,
                  end_ns: int, stop: Any) -> None:
    """Read the block stream, publish each block's heralds as one frame headed by the
    block's arrival (monotonic ns) until `end_ns`."""
    import zmq

    context = zmq.Context()
    authenticator = start_authenticator(context, key_dir)
    pub = context.socket(zmq.PUB)
    make_curve_server(pub, key_dir, "station")
    pub.sndhwm = 1_000_000
    pub.bind(f"tcp://127.0.0.1:{port}")
    source = PeriodicHeralds(period_ps, epoch_ns=epoch_ns, slots=slots)
    for block in source.blocks():
        if stop or block.arrived_ns > end_ns:
            break
        if len(block.heralds):
            pub.send(struct.pack("<q", block.arrived_ns) + block.heralds.tobytes())
    pub.send(b"end")
    pub.close(linger=1000)
    authenticator.stop()
    context.term()


def _bare_latency(outs: tuple[str, str], epoch_ns: int, window: tuple[float, float]
                  ) -> np.ndarray:
    """Later-receiver latency (s) of every block both SUBs got whose arrival (station time)
    lies in `window` (s)."""
    a, b = (np.load(out) for out in outs)
    arrived, ia, ib = np.intersect1d(a[:, 0], b[:, 0], return_indices=True)
    at_s = (arrived - epoch_ns) * 1e-9
    keep = (at_s >= window[0]) & (at_s < window[1])
    return ((np.maximum(a[ia, 1], b[ib, 1]) - arrived) * 1e-9)[keep]


# -- the tagger twin as the station's source (--source twin) --------------------------------
SHORTEST_PERIOD = 0.25e-6
"""s: the shortest attempt period asked of the twin (4 MHz of sync tags)."""


def serve_twin(lab: Path, seconds: float, niceness: int, stop: Any) -> None:
    """`qnetlab sim serve` of the station lab: its twins in a process of their own, as the
    real tagger is a device of its own (the rehearsal's setup), at `niceness`."""
    from qnetlab.cli import main

    if niceness > 0:
        os.nice(niceness)
    main(["sim", "serve", str(lab), "--max-seconds", f"{seconds:g}"])


def twin_source(workdir: Path, tag: str, rate_hz: float, real_port: int | None = None,
                ) -> tuple[Any, Path, float]:
    """(the station's `TaggerSource`, the twin's truth file, the attempt period): a
    single-click link at 0 km whose heralds come at about `rate_hz` (alpha 0.1, collection
    1.0, the attempt period set for the rate, no shorter than `SHORTEST_PERIOD`), its windows
    at the world's true delays (what the arm-delay calibration finds), read once from the
    twin in this process."""
    from qnetlab.instruments.station import load_station
    from qnetlab.network.herald_engine import HeraldWindows
    from qnetlab.network.herald_sources import TaggerSource
    from qnetlab.network.link_model import expected_success_probability

    link: dict[str, Any] = {
        "scheme": "single_click", "attempt_period": 1e-6, "bright_state_population": 0.1,
        "sync_input": SYNC, "detector_inputs": list(DETECTORS), "seed": 20261206,
        # the preset's device is Hz-class: this world's fires up to every 0.1 us; its 10 MHz
        # band makes a ~16 ns photon, so 40 ns windows (as lab_configs/two_node_link.yaml)
        "nodes": {n: {"transducer": "bulk_eo_pulsed", "fibre_length_km": 0.0,
                      "collection_efficiency": 1.0, "repetition_limit": 1.0e7}
                  for n in ("node_a", "node_b")},
        "detection_window": 4.0e-8,
        "hom_visibility": 0.95, "arrival_time_spread": 5.0e-11,
    }
    probe = load_station(write_station_lab(workdir / f"{tag}_probe.yaml", link, STREAMING),
                         "sim")
    try:
        for channel in (probe.instrument("snspd").ch1, probe.instrument("snspd").ch2):
            channel.bias_current(OPERATING_BIAS)
        emulator = probe.world.bench.zmq_devices["tagger"]
        physics = emulator.source.spec.physics
        delay = {n: emulator.model.channels[n - 1].delay_ps for n in (*DETECTORS, SYNC)}
        offsets = tuple(tuple(light + delay[d] - delay[SYNC] for light in physics.light_ps)
                        for d in DETECTORS)
        windows = HeraldWindows("single_click", SYNC, DETECTORS, offsets,  # type: ignore[arg-type]
                                physics.detection_window_ps)
        p = expected_success_probability(physics.model(emulator.source.detector_state()))
    finally:
        probe.close()
    period = max(SHORTEST_PERIOD, p / rate_hz)
    truth = workdir / f"{tag}_truth.npy"
    lab = write_station_lab(workdir / f"{tag}_station.yaml",
                            {**link, "attempt_period": period, "truth_file": str(truth)},
                            STREAMING, real_port)
    settings = {f"snspd.ch{n}.bias_current": OPERATING_BIAS for n in (1, 2)}
    windows = dataclasses.replace(windows, round_period_ps=round(period * 1e12))
    profile = "sim" if real_port is None else "real"
    return (TaggerSource(lab=lab, windows=windows, attempt_period_s=period, settings=settings,
                         profile=profile), truth, period)


def _truth_check(plan: LabPlan, truth_path: Path) -> str:
    """The station's heralds against the twin's truth, joined by attempt id."""
    from qnetlab.sim_instruments.link_events import read_twin_truth

    try:
        truth = read_twin_truth(truth_path)
    except (FileNotFoundError, ValueError) as exc:
        return f"no twin truth ({exc})"
    heralds = np.load(plan.run_dir / f"{plan.station.name}_heralds.npy")
    if not len(heralds):
        return "the station heralded nothing"
    # Over the attempts both cover: from the first to the last the station heralded.
    first, last = int(heralds["attempt_id"].min()), int(heralds["attempt_id"].max())
    span = truth[(truth["attempt_id"] >= first) & (truth["attempt_id"] <= last)]
    true_heralds = span[span["bell_state"] != 255]
    found = np.isin(heralds["attempt_id"], true_heralds["attempt_id"])
    return (f"twin truth: {len(true_heralds)} heralds a correct engine makes over attempts "
            f"{first}..{last}; the station heralded {len(heralds)}, {int(found.sum())} of "
            f"them true heralds")


# -- ours -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    rate_hz: float
    heralded: int
    delivered: int
    expired: dict[str, int]
    lost: dict[str, int]
    why: dict[str, int]
    """Heralds of the window not delivered, by the first reason a node's log gives."""
    agree: bool
    """Both nodes' logs hold the same delivered pairs."""
    contradictions: int
    """Pairs delivered at one node and released, expired or lost at the other (0 by design)."""
    latency_s: np.ndarray
    station_s: np.ndarray
    """Per herald of `latency_s`: its block's arrival -> its frame's hand-off (the station's
    share)."""
    age_s: np.ndarray
    """Per herald of `latency_s`: its age when its block reached the station (block arrival -
    decision time): the tag stream's latency, before any of ours."""
    bare_s: np.ndarray
    cpu: dict[str, float]
    load: float

    @property
    def delivered_ratio(self) -> float:
        return self.delivered / self.heralded if self.heralded else float("nan")

    def latency_ratio(self, q: float) -> float:
        """Percentile `q` of ours' latency over the bare pipeline's."""
        return _pct(self.latency_s, q) / _pct(self.bare_s, q)


def _ours_outcome(plan: LabPlan, window_ps: tuple[int, int]) -> dict[str, Any]:
    """What our processes' files say about the heralds decided in `window_ps` (station ps,
    from the request's start at the earliest: a loaded machine can start the processes late,
    and before the request no pair is wanted)."""
    run_dir = plan.run_dir
    station = plan.station.name
    heralds = np.load(run_dir / f"{station}_heralds.npy")
    sends = np.load(run_dir / f"{station}_sends.npy")
    result_path = run_dir / f"{plan.orchestrator.name}_result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {"delivered": []}
    start_ps = max(window_ps[0], int(result.get("start_ps", 0)) + 500_000_000_000)
    in_window = (heralds["timestamp_ps"] >= start_ps) & (heralds["timestamp_ps"] < window_ps[1])
    window_seqs = heralds["seq"][in_window]
    delivered = np.array([d["seq"] for d in result["delivered"]], np.uint64)
    # Every herald of the window not delivered, by the first reason a node's log gives.
    missing = np.setdiff1d(window_seqs, delivered)
    explained = np.zeros(len(missing), bool)
    why: dict[str, int] = {}
    expired, lost, sets, dropped = {}, {}, [], []
    for name in plan.nodes:
        log = read_pairs(run_dir, name)
        sets.append(set(log["seq"][log["event"] == PairEvent.DELIVERED].tolist()))
        dropped.append(set(log["seq"][np.isin(log["event"], [
            PairEvent.RELEASED, PairEvent.EXPIRED, PairEvent.LOST])].tolist()))
        for event in (PairEvent.EXPIRED, PairEvent.LOST, PairEvent.RELEASED):
            hit = np.isin(missing, log["seq"][log["event"] == event]) & ~explained
            explained |= hit
            if hit.any():
                why[f"{event.name.lower()} at {name}"] = int(hit.sum())
        summary = json.loads((run_dir / f"{name}_summary.json").read_text())
        expired[name] = int(summary.get("counters", {}).get("expired", 0))
        lost[name] = int(summary.get("tracker", {}).get("lost", 0))
    why["no record"] = int((~explained).sum())
    # Latency: block arrival (send log, by seq range) -> the later node's receipt.
    receipts = []
    for name in plan.nodes:
        got = np.load(run_dir / f"{name}_latency.npy")
        _, first = np.unique(got["seq"], return_index=True)
        receipts.append(got[first])
    common = np.intersect1d(receipts[0]["seq"], receipts[1]["seq"])
    common = common[np.isin(common, window_seqs)]
    rows = [r[np.searchsorted(r["seq"], common)] for r in receipts]
    received_ps = np.maximum(rows[0]["received_ps"], rows[1]["received_ps"])
    sends = np.sort(sends, order="first_seq")
    frame = np.searchsorted(sends["first_seq"], common, side="right") - 1
    ok = (frame >= 0) & (common <= sends["last_seq"][np.maximum(frame, 0)])
    block_ps = sends["block_ps"][frame[ok]]
    return {"heralded": int(in_window.sum()),
            "delivered": int(np.isin(delivered, window_seqs).sum()),
            "expired": expired, "lost": lost, "why": why,
            "agree": all(x == sets[0] for x in sets),
            "contradictions": len(sets[0] & dropped[1]) + len(sets[1] & dropped[0]),
            "latency_s": (received_ps[ok] - block_ps) * 1e-12,
            "station_s": (sends["send_ps"][frame[ok]] - block_ps) * 1e-12,
            "age_s": (block_ps - heralds_ts(heralds, common[ok])) * 1e-12}


def heralds_ts(heralds: np.ndarray, seqs: np.ndarray) -> np.ndarray:
    """The decision times (station ps) of the heralds `seqs` (sorted) in the herald log."""
    order = np.argsort(heralds["seq"])
    index = np.searchsorted(heralds["seq"][order], seqs)
    return heralds["timestamp_ps"][order][np.minimum(index, len(order) - 1)]


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for_port(port: int, timeout_s: float) -> None:
    """Until something listens on loopback `port` (the served twin is up)."""
    import socket

    deadline = time.monotonic() + timeout_s
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")
        time.sleep(0.05)


def session(rate_hz: float, args: argparse.Namespace, workdir: Path, run: int = 0) -> Outcome:
    period_ps = round(1e12 / rate_hz)
    slot_ps = round(args.slot * 1e12)
    ours_slots = TimeSlots(2 * slot_ps, 0, slot_ps)
    bare_slots = TimeSlots(2 * slot_ps, slot_ps, slot_ps)
    network = load_network_config(CONFIG)
    # ours' ports (heralds, requests, orchestrator, telemetry), then the bare pipeline's
    base_port = free_port_run(network.port_count + 1)
    bare_port = base_port + network.port_count
    config = network.with_ports(base_port)
    config = dataclasses.replace(config, key_dir=workdir / "keys", run_dir=workdir / "runs")
    epoch_ns = time.monotonic_ns()
    # The twins' process and then the station's lab start first (~10 s here): measured after.
    twin = args.source in ("twin", "served-twin")
    warmup = args.warmup + (args.twin_start if twin else 0.0)
    total_s = warmup + args.seconds
    end_ns = epoch_ns + round((total_s + 0.5) * 1e9)
    # A folder per run: the nodes append to their logs, so a second run in the first's folder
    # would be read together with it.
    tag = f"r{round(rate_hz)}" + (f"_run{run + 1}" if run else "")
    # The orchestrator stops by itself; the others only once it has (and its last verdicts
    # have reached the nodes): a node stopped first would miss verdicts, which says nothing
    # about the protocol.
    plan = plan_lab(config, pairs=10**9, run_dir=workdir / "runs" / tag, epoch_ns=epoch_ns,
                    goodness=0.9, expected_pair_rate=rate_hz / 2, max_seconds=total_s + 60)
    orchestrator = dataclasses.replace(plan.orchestrator, max_seconds=total_s + 0.3)
    if args.batch_interval is not None:
        orchestrator = dataclasses.replace(orchestrator, batch_interval=args.batch_interval)
    if args.gather is not None:
        orchestrator = dataclasses.replace(orchestrator, gather=args.gather)
    plan = dataclasses.replace(plan, orchestrator=orchestrator)
    if args.ok_interval is not None:
        plan = dataclasses.replace(plan, nodes={
            name: dataclasses.replace(node, ok_interval=args.ok_interval)
            for name, node in plan.nodes.items()})
    outs = (str(workdir / f"{tag}_a.npy"), str(workdir / f"{tag}_b.npy"))
    load = os.getloadavg()[0]
    cpu: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        served = stack.enter_context(ProcessGroup())  # first in, stopped last
        ours = stack.enter_context(ProcessGroup())
        bare = stack.enter_context(ProcessGroup())
        if twin:
            # (the sim profile's twins move the real addresses to ports of their own)
            real_port = free_port_run(3)
            source, truth_path, attempt_period = twin_source(workdir, tag, rate_hz, real_port)
            how = ("served by `sim serve`" if args.source == "served-twin"
                   else "as the sim profile runs them")
            print(f"    twin: single-click at 0 km, attempt period {attempt_period * 1e6:.3g} "
                  f"us, its twins {how}", flush=True)
            if args.source == "served-twin":
                served.start("twin", serve_twin, source.lab, total_s + 90, args.twin_nice)
                _wait_for_port(real_port + 1, 30.0)
            else:  # the sim profile's way: its twins in a process of their own
                lab = start_station_twin(served, private_station_lab(source.lab, None),
                                         workdir / "runs" / tag, "station_twins",
                                         niceness=args.twin_nice)
                source = dataclasses.replace(source, lab=lab)
        else:
            source = functools.partial(PeriodicHeralds, period_ps, epoch_ns=epoch_ns,
                                       slots=ours_slots)
        start_lab(ours, plan, source, orchestrator=not args.receive_only)
        for name, out in zip(("node_a", "node_b"), outs, strict=True):
            bare.start(f"bare_{name}", bare_sub, bare_port, config.key_dir, name, out)
        bare.start("bare_station", _bare_station, bare_port, config.key_dir, epoch_ns,
                   period_ps, bare_slots, end_ns)
        pids = {name: ours.pid(name) for name in ours.names}
        pids.update({name: served.pid(name) for name in served.names})  # the twins' process
        time.sleep(warmup)
        before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        time.sleep(args.seconds)
        cpu = {name: (_cpu_seconds(pid) - before[name]) / args.seconds
               for name, pid in pids.items()}
        time.sleep(max(0.0, (end_ns - time.monotonic_ns()) * 1e-9) + 0.5)
        if not args.receive_only:
            ours.join(plan.orchestrator.name, timeout=30)
        time.sleep(0.5)  # its last verdicts reach the nodes; then all are stopped
    faults = [f for f in read_faults(plan.run_dir)
              if f.get("process") != "station_twins" or f.get("kind") != "bind"]
    if faults:  # a process that stopped on an error measured nothing worth a ratio
        raise NotMeasured("; ".join(f"{f['process']} stopped: {f.get('message', '?')}"
                                    for f in faults))
    window_s = (warmup, total_s)
    found = _ours_outcome(plan, (round(window_s[0] * 1e12), round(window_s[1] * 1e12)))
    if args.keep:
        print(f"    run files: {plan.run_dir}")
    if twin:
        print("    " + _truth_check(plan, truth_path))
    return Outcome(rate_hz, found["heralded"], found["delivered"], found["expired"],
                   found["lost"], found["why"], found["agree"], found["contradictions"],
                   found["latency_s"],
                   found["station_s"], found["age_s"], _bare_latency(outs, epoch_ns, window_s),
                   cpu, load)


class NotMeasured(Exception):
    """A session whose processes did not all run to the end (the reason is the message)."""


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else float("nan")


def report(o: Outcome) -> str:
    ratio, med_x, p99_x = o.delivered_ratio, o.latency_ratio(50), o.latency_ratio(99)
    med, p99 = _pct(o.latency_s, 50), _pct(o.latency_s, 99)
    bmed, bp99 = _pct(o.bare_s, 50), _pct(o.bare_s, 99)
    handoff = o.latency_s - o.station_s
    lines = [
        f"{o.rate_hz / 1e3:6.1f} kHz (load {o.load:.1f}): delivered/heralded {o.delivered}/"
        f"{o.heralded} = {ratio:.4f} ({'MET' if ratio >= TARGET_RATIO else 'not met'} "
        f">= {TARGET_RATIO}); nodes agree: {'yes' if o.agree else 'NO'} "
        f"(contradictions {o.contradictions})",
        f"    expired {o.expired}, lost {o.lost}; not delivered: {o.why}",
        f"    latency block -> later node: median {med * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us"
        f" (n {len(o.latency_s)}); bare: median {bmed * 1e6:.0f} us, p99 {bp99 * 1e6:.0f} us"
        f" (n {len(o.bare_s)}); ratio median {med_x:.2f}x "
        f"({'MET' if med_x <= TARGET_MEDIAN else 'not met'} <= {TARGET_MEDIAN}), "
        f"p99 {p99_x:.2f}x ({'MET' if p99_x <= TARGET_P99 else 'not met'} "
        f"<= {TARGET_P99})",
        f"    of which the station (block arrival -> hand-off): median "
        f"{_pct(o.station_s, 50) * 1e6:.0f} us, p99 {_pct(o.station_s, 99) * 1e6:.0f} us; "
        f"hand-off -> later node: median {_pct(handoff, 50) * 1e6:.0f} us, p99 "
        f"{_pct(handoff, 99) * 1e6:.0f} us ({_pct(handoff, 50) / bmed:.2f}x, "
        f"{_pct(handoff, 99) / bp99:.2f}x of bare)",
        f"    heralds' age at their block's arrival (decision -> block): median "
        f"{_pct(o.age_s, 50) * 1e6:.0f} us, p99 {_pct(o.age_s, 99) * 1e6:.0f} us (of the "
        f"memory cutoff's {CUTOFF_S * 1e6:.0f} us)",
        "    CPU (cores) " + ", ".join(f"{k} {v:.2f}" for k, v in o.cpu.items()),
    ]
    return "\n".join(lines)


def summary(runs: dict[float, list[Outcome | None]]) -> str:
    """Per rate over the runs: each figure's range and how many runs met its target (a run
    on this shared machine moves with what else it does, so one run says little)."""
    lines = ["over the runs (min-max; runs that met the target):"]
    for rate, outcomes in runs.items():
        done = [o for o in outcomes if o is not None and len(o.latency_s) and len(o.bare_s)]
        if not done:
            lines.append(f"{rate / 1e3:6.1f} kHz: no run measured")
            continue
        ratio = [o.delivered_ratio for o in done]
        med = [o.latency_ratio(50) for o in done]
        p99 = [o.latency_ratio(99) for o in done]
        share = [_pct(o.station_s, 50) * 1e6 for o in done]
        lines.append(
            f"{rate / 1e3:6.1f} kHz ({len(done)} of {len(outcomes)} runs measured): "
            f"delivered/heralded {min(ratio):.4f}-{max(ratio):.4f} "
            f"({sum(r >= TARGET_RATIO for r in ratio)} met); latency median "
            f"{min(med):.2f}-{max(med):.2f}x ({sum(m <= TARGET_MEDIAN for m in med)} met), "
            f"p99 {min(p99):.2f}-{max(p99):.2f}x ({sum(p <= TARGET_P99 for p in p99)} met); "
            f"station's share {min(share):.0f}-{max(share):.0f} us; nodes agreed in "
            f"{sum(o.agree for o in done)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rates", default="1000,4000,16000,64000",
                        help="herald rates (Hz, inside ours' slots), comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0, help="s measured per rate")
    parser.add_argument("--warmup", type=float, default=2.0, help="s left out at the start")
    parser.add_argument("--slot", type=float, default=0.1,
                        help="s each setup publishes before the other's turn")
    parser.add_argument("--batch-interval", type=float, default=None,
                        help="s the orchestrator waits after a busy turn (default: its own)")
    parser.add_argument("--gather", type=float, default=None,
                        help="s the orchestrator waits after a wake before taking messages "
                             "(default: its own)")
    parser.add_argument("--ok-interval", type=float, default=None,
                        help="s each node gathers its OKs before sending them "
                             "(default: the node's own)")
    parser.add_argument("--source", choices=("periodic", "twin", "served-twin"),
                        default="periodic",
                        help="ours' herald source: the test signal, or the tagger twin with a "
                             "simulated single-click link (heralds all the time, not in "
                             "slots), its twins in a process of their own read over real "
                             "transports: started as the sim profile starts them (twin) or "
                             "by `sim serve` (served-twin: the rehearsal)")
    parser.add_argument("--twin-start", type=float, default=12.0,
                        help="s added to the warm-up with a twin source (the twins' "
                             "process and the station's lab open first)")
    parser.add_argument("--twin-nice", type=int, default=19,
                        help="niceness of the twins' process (default 19: the simulation, "
                             "which on hardware runs in the tagger and the detectors, yields "
                             "this host's cores to the processes measured; 0: as `qnetlab "
                             "link` runs it)")
    parser.add_argument("--receive-only", action="store_true",
                        help="no orchestrator (no pairs asked for, so no OK/verdict traffic): "
                             "what the delivery path costs the heralds' latency")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of every rate, then each figure's range over them")
    parser.add_argument("--keep", metavar="DIR", default=None,
                        help="keep the run files in DIR (default: a temporary folder)")
    args = parser.parse_args()
    config = load_network_config(CONFIG)
    source = ("test-signal heralds in 1 ms blocks" if args.source == "periodic"
              else f"tagger twin (single-click, 0 km; its process at nice {args.twin_nice}) "
                   "in 1 ms blocks")
    print(f"bench_delivery: {source}, {args.slot * 1e3:g} ms slots in turn with the bare "
          f"pipeline; {args.seconds:g} s measured after "
          f"{args.warmup:g} s; memory cutoff {config.nodes['node_a'].memory_cutoff * 1e3:g} ms;"
          f" {os.cpu_count()} cores")
    with (contextlib.nullcontext(args.keep) if args.keep
          else tempfile.TemporaryDirectory()) as tmp:
        workdir = Path(tmp)
        generate_lab_keys(workdir / "keys", config.key_names())
        rates = [float(r) for r in args.rates.split(",")]
        runs: dict[float, list[Outcome | None]] = {rate: [] for rate in rates}
        for run in range(args.repeat):
            if args.repeat > 1:
                print(f"run {run + 1} of {args.repeat}", flush=True)
            for rate in rates:
                outcome: Outcome | None = None
                try:
                    outcome = session(rate, args, workdir, run)
                    print(report(outcome), flush=True)
                except NotMeasured as exc:
                    print(f"  {rate / 1e3:.1f} kHz: not measured: {exc}", flush=True)
                except FileNotFoundError as exc:  # a process killed at the stop: no files
                    print(f"  {rate / 1e3:.1f} kHz: not measured: {Path(exc.filename).name} "
                          "is missing (the process was killed at the stop: the machine could "
                          "not keep up)", flush=True)
                runs[rate].append(outcome)
        if args.repeat > 1:
            print(summary(runs), flush=True)


if __name__ == "__main__":
    main()
