"""Herald latency and throughput across processes on TCP loopback, against bare pyzmq.

    python benchmarks/bench_heralds.py [--seconds 3] [--rounds 3] [--rate 1000]
                                       [--throughput 1000000] [--only latency|throughput]

Latency. The station process publishes a herald every 1/rate s (a periodic test source) at
its decision time; each node agent process stamps its receipt right after the recv, on the
same host's monotonic clock as the station, so no clock-sync error enters. Two figures per
herald, both for the LATER of the two node agents:

  (a) hand-off -> receipt: station process takes the time right before it encodes and sends
      the herald's frame; node receipt minus that. Joined by seq. This is the software
      latency of a real station, which holds a herald the moment its tagger's stream
      delivers it, and it is measured like the bare figures below (stamp right before
      send). The targets apply to it.
  (b) decision -> receipt: node receipt minus the simulated gateware's decision time. It adds
      the station's pacing: its sleep until the decision time (timer overshoot) and its loop
      up to the hand-off. A real station has no such pacing; reported so it is not hidden.

Bare pyzmq, in the same run: a PUB process sends a 32-byte frame every 1/rate s stamped
right before the send, to two SUB processes (fan-out: the later of the two arrivals),
blocking recv; without CURVE and with CURVE (same key handling as ours), so CURVE's own cost
is stated and the ratios are like for like. Plus a one-way (one SUB) once, for reference.
Ours with CURVE is compared with bare with CURVE; ours without CURVE with bare without.
Targets: (a) median <= 1.25x and p99 <= 1.5x of the bare fan-out.

The machine is shared (2 cores), so every configuration runs once per round, interleaved,
rounds repeated; per-round ratios and their median over rounds are printed. The first
`--warmup` s of each of our runs (processes still starting) are left out.

Variants (--variants): "poller" = node agents wait with a zmq.Poller over their three
sockets instead of a blocking recv on the herald socket; "noyield" = node agents handle a
herald right after stamping it, without first yielding the CPU once (the default before the
yield); "deferred" = node agents
handle a herald 0.2 ms after stamping its receipt (does one node's handling delay the
other's receipt on 2 cores?); "requests" = the orchestrator runs
and requests pairs all along, so node agents send an OK per herald, log pairs and receive
the verdicts (the post-receipt work of a real run), CURVE on.

Throughput: the station fed heralds at --throughput per second (batched into one frame per
loop turn) to both node agents for --seconds; counts what each node received, and any seq it
missed. Both with CURVE (the lab's keys) and without.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import multiprocessing
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from network._proc import ProcessGroup, precise_timers  # noqa: E402
from network.config import load_network_config  # noqa: E402
from network.keys import (  # noqa: E402
    generate_lab_keys,
    make_curve_client,
    make_curve_server,
    start_authenticator,
)
from network.lab import LinkReport, plan_lab, read_report, start_lab  # noqa: E402
from network.station import PeriodicHeralds  # noqa: E402
from sim_instruments.ports import free_port_run  # noqa: E402

CONFIG = REPO / "lab_configs" / "two_node_link.yaml"


# -- bare pyzmq ----------------------------------------------------------------------------
def _bare_pub(port: int, count: int, period: float, subscribers: int,
              key_dir: Path | None) -> None:
    import zmq

    precise_timers()
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    authenticator = None
    if key_dir is not None:  # as the station does: ZAP admits the lab's keys only
        authenticator = start_authenticator(context, key_dir)
        make_curve_server(pub, key_dir, "station")
    pub.sndhwm = 1_000_000
    pub.bind(f"tcp://127.0.0.1:{port}")
    ready = context.socket(zmq.PULL)
    ready.bind(f"tcp://127.0.0.1:{port + 1}")
    for _ in range(subscribers):
        ready.recv()
    time.sleep(0.3)  # every subscription has reached the PUB
    pad = bytes(24)
    next_t = time.monotonic()
    for _ in range(count):
        next_t += period
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        pub.send(struct.pack("<q", time.monotonic_ns()) + pad)
    time.sleep(0.2)
    pub.send(b"end")
    pub.close(linger=1000)
    ready.close()
    if authenticator is not None:
        authenticator.stop()
    context.term()


def _bare_sub(port: int, out: str, key_dir: Path | None, name: str) -> None:
    import zmq

    precise_timers()
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    if key_dir is not None:
        make_curve_client(sub, key_dir, name, "station")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.rcvtimeo = 20_000
    sub.connect(f"tcp://127.0.0.1:{port}")
    push = context.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{port + 1}")
    time.sleep(0.2)
    push.send(b"ready")
    latencies = []
    while True:
        frame = sub.recv()
        now = time.monotonic_ns()
        if frame == b"end":
            break
        latencies.append(now - struct.unpack_from("<q", frame)[0])
    np.save(out, np.array(latencies, np.int64))
    sub.close()
    push.close()
    context.term()


def bare(subscribers: int, count: int, period: float, workdir: Path, *,
         curve: bool) -> np.ndarray:
    """Per message: the later arrival over the subscribers, s."""
    context = multiprocessing.get_context("spawn")
    port = free_port_run(2)
    key_dir = workdir / "keys" if curve else None
    names = ["node_a", "node_b", "orchestrator"][:subscribers]
    outs = [str(workdir / f"bare_{subscribers}_{i}.npy") for i in range(subscribers)]
    subs = [context.Process(target=_bare_sub, args=(port, out, key_dir, name))
            for out, name in zip(outs, names, strict=True)]
    for proc in subs:
        proc.start()
    pub = context.Process(target=_bare_pub, args=(port, count, period, subscribers, key_dir))
    pub.start()
    for proc in [pub, *subs]:
        proc.join(120)
    arrays = [np.load(out) for out in outs]
    n = min(len(a) for a in arrays)
    return np.max([a[:n] for a in arrays], axis=0) * 1e-9


# -- ours ----------------------------------------------------------------------------------
def ours(rate: float, seconds: float, workdir: Path, *, curve: bool, tag: str,
         receive: Literal["blocking", "poller"] = "blocking", requests: bool = False,
         handling_delay: float = 0.0, yield_after_receipt: bool = True,
         warmup: float = 0.0) -> LinkReport:
    config = load_network_config(CONFIG)
    config = config.with_ports(free_port_run(3))
    config = type(config)(**{**config.__dict__, "key_dir": workdir / "keys",
                             "run_dir": workdir / "runs"})
    plan = plan_lab(config, pairs=10**7 if requests else 1, run_dir=workdir / "runs" / tag,
                    epoch_ns=time.monotonic_ns(), goodness=0.5, expected_pair_rate=rate,
                    curve=curve, max_seconds=seconds + 30)
    plan = dataclasses.replace(plan, nodes={
        name: dataclasses.replace(node, receive=receive, handling_delay=handling_delay,
                                  yield_after_receipt=yield_after_receipt)
        for name, node in plan.nodes.items()})
    source = functools.partial(PeriodicHeralds, round(1e12 / rate))
    with ProcessGroup() as group:
        start_lab(group, plan, source, orchestrator=requests)
        time.sleep(seconds + warmup + 1.0)  # ~1 s to start the processes and connect
    return read_report(plan, warmup_s=warmup)


def _stats(x: np.ndarray) -> tuple[float, float, float]:
    if not len(x):
        return float("nan"), float("nan"), float("nan")
    median, p99 = np.percentile(x, [50, 99])
    return float(median), float(p99), float(x.max())


def _us(x: float) -> str:
    return f"{x * 1e6:7.1f} us"


_HEAD = f"    {'':<52}{'median':>10}{'p99':>11}{'max':>11}{'n':>7}"


def _row(label: str, x: np.ndarray) -> str:
    median, p99, top = _stats(x)
    return f"    {label:<52}{_us(median)}{_us(p99)} {_us(top)}{len(x):>7}"


def latency(args: argparse.Namespace, workdir: Path) -> None:
    count = int(args.seconds * args.rate)
    period = 1 / args.rate
    print(f"latency: {args.rate:g} heralds/s, {args.seconds:g} s per run, {args.rounds} "
          f"interleaved rounds; same-host monotonic clock; later of the two receivers")
    print("  (a) = station hand-off (right before encode+send) -> node receipt [targets]")
    print("  (b) = simulated decision time -> node receipt (adds the station's pacing)")
    one = bare(1, count, period, workdir, curve=False)
    print(_HEAD)
    print(_row("bare PUB/SUB one-way (1 SUB), no CURVE", one))
    ratios: dict[str, list[tuple[float, float]]] = {}
    pooled: dict[str, list[np.ndarray]] = {}
    for round_ in range(args.rounds):
        print(f"  round {round_ + 1}")
        print(_HEAD)
        ref = {curve: bare(2, count, period, workdir, curve=curve) for curve in (False, True)}
        runs: list[tuple[str, bool, dict[str, Any]]] = [
            ("ours CURVE on", True, {}), ("ours CURVE off", False, {})]
        if "poller" in args.variants:
            runs.append(("ours CURVE on, node Poller", True, {"receive": "poller"}))
        if "noyield" in args.variants:
            runs.append(("ours CURVE on, no yield after receipt", True,
                         {"yield_after_receipt": False}))
        if "deferred" in args.variants:
            runs.append(("ours CURVE on, handling deferred 0.2 ms", True,
                         {"handling_delay": 0.0002}))
        if "requests" in args.variants:
            runs.append(("ours CURVE on, pairs requested", True, {"requests": True}))
        for curve in (False, True):
            label = f"bare fan-out, CURVE {'on' if curve else 'off'}"
            print(_row(label, ref[curve]))
            pooled.setdefault(label, []).append(ref[curve])
        results: list[tuple[str, bool, LinkReport]] = []
        for label, curve, options in runs:
            report = ours(args.rate, args.seconds, workdir, curve=curve,
                          tag=f"lat_{round_}_{len(results)}", warmup=args.warmup, **options)
            results.append((label, curve, report))
            for kind, x in (("(a)", report.handoff_latency_s), ("(b)", report.latency_s)):
                print(_row(f"{label} {kind}", x))
                pooled.setdefault(f"{label} {kind}", []).append(x)
        for label, curve, report in results:
            base_median, base_p99, _ = _stats(ref[curve])
            median, p99, _ = _stats(report.handoff_latency_s)
            key = f"{label} (a) / bare fan-out CURVE {'on' if curve else 'off'}"
            ratios.setdefault(key, []).append((median / base_median, p99 / base_p99))
            print(f"    {key}: median {median / base_median:.2f}x, p99 "
                  f"{p99 / base_p99:.2f}x")
        curve_cost = _stats(ref[True])[0] - _stats(ref[False])[0]
        print(f"    CURVE cost, bare fan-out median: {curve_cost * 1e6:+.1f} us")
    print(f"  pooled over {args.rounds} rounds")
    print(_HEAD)
    for label, xs in pooled.items():
        print(_row(label, np.concatenate(xs)))
    print("  ratios, median over rounds (targets: median <= 1.25x, p99 <= 1.5x)")
    for key, values in ratios.items():
        m, p = np.median(np.array(values), axis=0)
        each = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in values)
        verdict = "MET" if m <= 1.25 and p <= 1.5 else "not met"
        print(f"    {key}: median {m:.2f}x, p99 {p:.2f}x -> {verdict}   (rounds: {each})")


def throughput(args: argparse.Namespace, workdir: Path) -> None:
    print(f"throughput ({args.throughput:g} heralds/s offered, {args.seconds:g} s)")
    for curve in (True, False):
        report = ours(args.throughput, args.seconds, workdir, curve=curve,
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
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="s of our runs left out at the start")
    parser.add_argument("--rate", type=float, default=1000.0, help="heralds/s for latency")
    parser.add_argument("--throughput", type=float, default=1_000_000.0,
                        help="heralds/s offered for throughput")
    parser.add_argument("--variants", nargs="*", default=[],
                        choices=("poller", "requests", "deferred", "noyield"))
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
