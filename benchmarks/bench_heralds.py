"""Herald latency and throughput across processes on TCP loopback, against bare pyzmq.

    python benchmarks/bench_heralds.py [--seconds 40] [--slot 0.1] [--rate 1000]
                                       [--throughput 1000000] [--throughput-seconds 3]
                                       [--only latency|throughput] [--check-method]

Latency. In each session two setups run at once, on one machine, each publishing only in
its own time slots (``--slot`` s, in turn), so they take turns every 100 ms and share
whatever the 2-core machine is doing. Run one after another instead, the same bare setup's
median moved between 55 and 130 us from run to run here, and the ratio of two such runs says
little.

  - bare fan-out: a bare pyzmq PUB process sends a 32-byte frame every 1/rate s, stamped
    right before the send, to two SUB processes (blocking recv, stamped right after it); the
    later of the two arrivals. With CURVE, the same keys and ZAP handler as ours.
  - ours: the station process with a periodic herald source, and both node agent
    processes, exactly as `qnetlab link` runs them (no orchestrator, so no pairs are
    requested: the receive path alone). The later node's receipt (stamped right after the
    recv) minus the station's hand-off (stamped right before it encodes and sends the frame),
    joined by seq: (a), to which the targets apply. Also (b): minus the herald's timestamp
    instead, which adds the test signal's pacing (its heralds leave in 1 ms blocks).

Sessions: bare | ours with CURVE on (the targets), the same with CURVE off, and bare CURVE off
| bare CURVE on (CURVE's own cost). Every process is started the same way (`ProcessGroup`)
and stamps on the host's monotonic clock, so no clock-sync error enters. Both setups are
measured over the same window of station time (from ``--warmup`` s after the session's
start, for ``--seconds`` s), each sample placed by its send (ours: hand-off) time. Each ratio
comes with a 95 % interval from a paired bootstrap over slot cycles (a cycle = one slot of
each setup), and per quarter of the window, so drift would show; a target counts as met when
the whole interval is within it.

Bias, stated: in the bare setup's slots our three processes are idle but not silent (station
heartbeats and AttemptStats, node clock exchanges and heartbeats, at 10-80 Hz
each, each node's idle check every 10 ms: about 2 % of a core each), while the bare
processes are silent in ours. That can only flatter us; measured, it did not show: a bare
setup's median was the same (70.3 vs 70.7 and 70.4 us) next to ours as next to another bare
setup. ``--check-method`` runs two identical bare setups: their ratio shows what the method
resolves. Publishing in 100 ms bursts rather than steadily could also favour us (our
bookkeeping falls into the gaps); 1 s slots gave the same median ratio (1.08-1.09x against
1.08-1.10x).

Targets: (a) median <= 1.25x and p99 <= 1.5x of the bare fan-out.

Throughput: the station fed heralds at --throughput per second (batched into one frame per
loop turn) to both node agents for --seconds; counts what each node received, and any seq it
missed. Both with CURVE (the lab's keys) and without.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import itertools
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_common import bare_sub  # noqa: E402

from qnetlab.network import ProcessGroup  # noqa: E402
from qnetlab.network.keys import (  # noqa: E402
    generate_lab_keys,
    make_curve_server,
    start_authenticator,
)
from qnetlab.network.lab import LabPlan, LinkReport, plan_lab, read_report, start_lab  # noqa: E402
from qnetlab.network.network_config import load_network_config  # noqa: E402
from qnetlab.network.test_signals import PeriodicHeralds, TimeSlots  # noqa: E402
from qnetlab.sim_instruments.ports import free_port_run  # noqa: E402

CONFIG = REPO / "lab_configs" / "two_node_link.yaml"
TARGET_MEDIAN, TARGET_P99 = 1.25, 1.5


# -- bare pyzmq ----------------------------------------------------------------------------
def _bare_pub(port: int, key_dir: Path | None, epoch_ns: int, period_ns: int,
              slots: TimeSlots, end_ns: int, stop: Any) -> None:
    """Every `period_ns` on the epoch's grid that falls in `slots`, until `end_ns`: one frame
    holding its send time (monotonic ns, stamped right before the send). Between slots it
    goes straight to the next slot's first tick, so no work follows a slot's last frame."""
    import zmq

    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    authenticator = None
    if key_dir is not None:  # as the station does: ZAP admits the lab's keys only
        authenticator = start_authenticator(context, key_dir)
        make_curve_server(pub, key_dir, "station")
    pub.sndhwm = 1_000_000
    pub.bind(f"tcp://127.0.0.1:{port}")
    pad = bytes(24)
    period_ps = period_ns * 1000
    tick = (time.monotonic_ns() - epoch_ns) // period_ns + 1
    while not stop:
        tick = -(-slots.next_on(tick * period_ps) // period_ps)
        due_ns = epoch_ns + tick * period_ns
        if due_ns > end_ns:
            break
        delay = (due_ns - time.monotonic_ns()) * 1e-9
        if delay > 0:
            time.sleep(delay)
        pub.send(struct.pack("<q", time.monotonic_ns()) + pad)
        tick += 1
    pub.send(b"end")
    pub.close(linger=1000)
    if authenticator is not None:
        authenticator.stop()
    context.term()


@dataclasses.dataclass(frozen=True)
class _Samples:
    """Later-arrival latencies (s) and the station time (s) each counts from, in order."""

    latency_s: np.ndarray
    at_s: np.ndarray

    def within(self, start_s: float, end_s: float) -> _Samples:
        keep = (self.at_s >= start_s) & (self.at_s < end_s)
        return _Samples(self.latency_s[keep], self.at_s[keep])


@dataclasses.dataclass(frozen=True)
class _Bare:
    label: str
    curve: bool
    outs: tuple[str, str]

    def start(self, group: ProcessGroup, port: int, workdir: Path, epoch_ns: int,
              period_ns: int, slots: TimeSlots, end_ns: int) -> None:
        key_dir = workdir / "keys" if self.curve else None
        for name, out in zip(("node_a", "node_b"), self.outs, strict=True):
            group.start(f"{name}_{port}", bare_sub, port, key_dir, name, out)
        group.start(f"pub_{port}", _bare_pub, port, key_dir, epoch_ns, period_ns, slots,
                    end_ns)

    def samples(self, epoch_ns: int) -> _Samples:
        """Per frame both subscribers got: the later arrival, from its send."""
        a, b = (np.load(out) for out in self.outs)
        sent, ia, ib = np.intersect1d(a[:, 0], b[:, 0], return_indices=True)
        return _Samples((np.maximum(a[ia, 1], b[ib, 1]) - sent) * 1e-9,
                        (sent - epoch_ns) * 1e-9)


@dataclasses.dataclass(frozen=True)
class _Ours:
    label: str
    curve: bool
    plan: LabPlan

    def start(self, group: ProcessGroup, slots: TimeSlots, period_ps: int) -> None:
        start_lab(group, self.plan, functools.partial(PeriodicHeralds, period_ps, slots=slots),
                  orchestrator=False)

    def samples(self) -> tuple[_Samples, _Samples]:
        """(a) from each herald's hand-off, (b) from its decision (station time = the
        session's epoch)."""
        report = read_report(self.plan)
        return (_Samples(report.handoff_latency_s, report.handoff_at_s),
                _Samples(report.latency_s, report.decided_at_s))


def _plan(workdir: Path, tag: str, *, curve: bool, epoch_ns: int, rate: float,
          seconds: float, base_port: int) -> LabPlan:
    config = load_network_config(CONFIG).with_ports(base_port)
    config = dataclasses.replace(config, key_dir=workdir / "keys", run_dir=workdir / "runs")
    return plan_lab(config, pairs=1, run_dir=workdir / "runs" / tag, epoch_ns=epoch_ns,
                    goodness=0.5, expected_pair_rate=rate, curve=curve,
                    max_seconds=seconds)


def ours(rate: float, seconds: float, workdir: Path, *, curve: bool, tag: str) -> LinkReport:
    """Our lab alone, heralds at `rate` for `seconds` (the throughput runs)."""
    plan = _plan(workdir, tag, curve=curve, epoch_ns=time.monotonic_ns(), rate=rate,
                 seconds=seconds + 30, base_port=free_port_run(3))
    with ProcessGroup() as group:
        start_lab(group, plan, functools.partial(PeriodicHeralds, round(1e12 / rate)),
                  orchestrator=False)
        time.sleep(seconds + 1.0)  # ~1 s to start the processes and connect
    return read_report(plan)


# -- statistics ----------------------------------------------------------------------------
def _stats(x: np.ndarray) -> tuple[float, float, float]:
    if not len(x):
        return float("nan"), float("nan"), float("nan")
    median, p99 = np.percentile(x, [50, 99])
    return float(median), float(p99), float(x.max())


def _us(x: float) -> str:
    return f"{x * 1e6:7.1f} us"


_HEAD = f"    {'':<46}{'median':>10}{'p99':>11}{'max':>11}{'n':>7}"


def _row(label: str, x: np.ndarray) -> str:
    median, p99, top = _stats(x)
    return f"    {label:<46}{_us(median)}{_us(p99)} {_us(top)}{len(x):>7}"


def _ratio_interval(x: _Samples, ref: _Samples, cycle_s: float, q: float,
                    draws: int = 400) -> tuple[float, float]:
    """95 % interval of percentile(x, q) / percentile(ref, q) from a paired bootstrap over
    slot cycles: each draw takes cycles with replacement, and both setups' samples of the
    cycles taken, so the pairing of neighbouring slots (the point of interleaving) stays."""
    rng = np.random.default_rng(20261126)
    cx, cr = (np.floor(s.at_s / cycle_s).astype(np.int64) for s in (x, ref))
    first = min(cx.min(), cr.min())
    cx, cr = cx - first, cr - first
    cycles = int(max(cx.max(), cr.max())) + 1
    ratios = []
    for _ in range(draws):
        taken = np.bincount(rng.integers(cycles, size=cycles), minlength=cycles)
        xs, rs = np.repeat(x.latency_s, taken[cx]), np.repeat(ref.latency_s, taken[cr])
        if len(xs) and len(rs):
            ratios.append(np.percentile(xs, q) / np.percentile(rs, q))
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


# -- the latency run -----------------------------------------------------------------------
_BARE_ON, _BARE_OFF = "bare fan-out, CURVE on", "bare fan-out, CURVE off"
_OURS_ON, _OURS_OFF = "ours, CURVE on", "ours, CURVE off"


def _session(args: argparse.Namespace, workdir: Path, tag: str,
             labels: tuple[str, str]) -> dict[str, _Samples]:
    """Both setups at once, each in its own slots in turn; each one's later-arrival latency
    (ours: (a)) over the same window of station time: from ``--warmup`` s after the
    session's epoch, for ``--seconds`` s."""
    period_ns = round(1e9 / args.rate)
    slot_ps = round(args.slot * 1e12)
    base_port = free_port_run(3 * len(labels))  # 3 for each of ours, 1 for a bare setup
    epoch_ns = time.monotonic_ns()
    end_ns = epoch_ns + round((args.warmup + args.seconds + 1.0) * 1e9)
    setups: list[_Bare | _Ours] = []
    for i, label in enumerate(labels):
        curve = "CURVE on" in label
        if label.startswith("ours"):
            plan = _plan(workdir, f"{tag}_{i}", curve=curve, epoch_ns=epoch_ns, rate=args.rate,
                         seconds=(end_ns - epoch_ns) * 1e-9, base_port=base_port + 3 * i)
            setups.append(_Ours(label, curve, plan))
        else:
            setups.append(_Bare(label, curve, (str(workdir / f"{tag}_{i}_a.npy"),
                                               str(workdir / f"{tag}_{i}_b.npy"))))
    with contextlib.ExitStack() as stack:
        for i, setup in enumerate(setups):
            group = stack.enter_context(ProcessGroup())
            slots = TimeSlots(len(setups) * slot_ps, i * slot_ps, slot_ps)
            if isinstance(setup, _Ours):
                setup.start(group, slots, period_ns * 1000)
            else:
                setup.start(group, base_port + 3 * i, workdir, epoch_ns, period_ns, slots,
                            end_ns)
        time.sleep(max(0.0, (end_ns - time.monotonic_ns()) * 1e-9) + 1.5)
    window = (args.warmup, args.warmup + args.seconds)
    samples: dict[str, _Samples] = {}
    print(_HEAD)
    for setup, label in zip(setups, labels, strict=True):
        key = label if label not in samples else f"{label} (2nd)"
        if isinstance(setup, _Ours):
            handoff, decision = (s.within(*window) for s in setup.samples())
            samples[key] = handoff
            print(_row(f"{key} (a)", handoff.latency_s))
            print(_row(f"{key} (b)", decision.latency_s))
        else:
            samples[key] = setup.samples(epoch_ns).within(*window)
            print(_row(key, samples[key].latency_s))
    return samples


def _compare(args: argparse.Namespace, x: _Samples, ref: _Samples, what: str,
             targets: bool) -> None:
    """Median and p99 ratio of `x` to `ref`, with a 95 % interval and per quarter of the
    window (by time)."""
    if not len(x.latency_s) or not len(ref.latency_s):
        print(f"    {what}: no samples")
        return
    cycle_s = 2 * args.slot
    edges = np.linspace(args.warmup, args.warmup + args.seconds, 5)
    for name, q, target in (("median", 50, TARGET_MEDIAN), ("p99", 99, TARGET_P99)):
        ratio = np.percentile(x.latency_s, q) / np.percentile(ref.latency_s, q)
        low, high = _ratio_interval(x, ref, cycle_s, q)
        quarters = ", ".join(
            f"{np.percentile(a.latency_s, q) / np.percentile(b.latency_s, q):.2f}"
            for a, b in ((x.within(s, e), ref.within(s, e))
                         for s, e in itertools.pairwise(edges)))
        verdict = ""
        if targets:
            verdict = (" (target <= {t}x: {v})".format(t=target, v=(
                "MET" if high <= target else
                "met by the estimate, not by the whole interval" if ratio <= target else
                "not met")))
        print(f"    {what}: {name} {ratio:.2f}x [{low:.2f}, {high:.2f}]{verdict}; "
              f"quarters {quarters}")


def latency(args: argparse.Namespace, workdir: Path) -> None:
    print(f"latency: {args.rate:g} heralds/s; in each session two setups run at once, each "
          f"in its own {args.slot * 1e3:g} ms slots in turn, measured over the same "
          f"{args.seconds:g} s of station time after a {args.warmup:g} s warm-up; the later "
          f"of the two receivers")
    print("  (a) = station hand-off (right before encode+send) -> node receipt [targets]")
    print("  (b) = herald timestamp -> node receipt (adds the test signal's 1 ms blocks)")
    print("  ratios: [95 % paired bootstrap interval over slot cycles]; then per quarter of "
          "the window; MET when the whole interval is within the target")
    if args.check_method:
        sessions = [(_BARE_ON, _BARE_ON)]
    else:
        sessions = [(_BARE_ON, _OURS_ON), (_BARE_OFF, _OURS_OFF), (_BARE_OFF, _BARE_ON)]
    for i, labels in enumerate(sessions):
        print(f"  session {i + 1}: {labels[0]} | {labels[1]}")
        samples = _session(args, workdir, f"lat{i}", labels)
        ref, x = samples[labels[0]], list(samples.values())[1]
        if labels[1].startswith("ours"):
            _compare(args, x, ref, f"{labels[1]} (a) / {labels[0]}", targets=True)
        elif labels[1] == labels[0]:
            _compare(args, x, ref, "second / first (should be 1)", targets=False)
        else:
            _compare(args, x, ref, "CURVE on / off", targets=False)
            on, off = x.latency_s, ref.latency_s
            print(f"    CURVE cost: median {(np.median(on) - np.median(off)) * 1e6:+.1f} us, "
                  f"p99 {(np.percentile(on, 99) - np.percentile(off, 99)) * 1e6:+.1f} us")


def throughput(args: argparse.Namespace, workdir: Path) -> None:
    seconds = args.throughput_seconds
    print(f"throughput ({args.throughput:g} heralds/s offered, {seconds:g} s)")
    for curve in (True, False):
        report = ours(args.throughput, seconds, workdir, curve=curve,
                      tag=f"tp_{curve}")
        station = report.extra["station"]
        published = station.get("heralds_published", 0)
        frames = max(station.get("herald_frames", 1), 1)
        print(f"  CURVE {'on ' if curve else 'off'}: station published {published} "
              f"heralds in {frames} frames ({published / frames:.0f} per frame); "
              f"nodes: gaps {report.errors['gaps']}, lost {report.errors['lost']}, "
              f"resent {report.errors['heralds_resent']}")
        for name in ("node_a", "node_b"):
            got = np.load(workdir / "runs" / f"tp_{curve}" / f"{name}_latency.npy")
            seqs = np.unique(got["seq"])
            span = (int(seqs[-1]) - int(seqs[0])) / args.throughput
            print(f"    {name}: {len(seqs)} distinct heralds over {span:.2f} s of "
                  f"station time = {len(seqs) / span / 1e3:.0f} k/s; "
                  f"{int(seqs[-1]) - int(seqs[0]) + 1 - len(seqs)} missing from the live "
                  f"stream; latency (b) median {np.median(got['latency_ps']) * 1e-6:.0f} us, "
                  f"max {got['latency_ps'].max() * 1e-6:.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0,
                        help="s of latency measurement, shared by the setups")
    parser.add_argument("--throughput-seconds", type=float, default=3.0,
                        help="s per throughput run")
    parser.add_argument("--slot", type=float, default=0.1,
                        help="s each latency setup publishes before the next one's turn")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="s of each latency setup left out at the start")
    parser.add_argument("--rate", type=float, default=1000.0, help="heralds/s for latency")
    parser.add_argument("--throughput", type=float, default=1_000_000.0,
                        help="heralds/s offered for throughput")
    parser.add_argument("--check-method", action="store_true",
                        help="a second bare fan-out in place of ours (CURVE on): its ratio "
                             "shows what the method resolves")
    parser.add_argument("--only", choices=("latency", "throughput"), default=None)
    args = parser.parse_args()
    config = load_network_config(CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        generate_lab_keys(workdir / "keys", config.key_names())
        if args.only != "throughput":
            latency(args, workdir)
        if args.only != "latency":
            throughput(args, workdir)


if __name__ == "__main__":
    main()
