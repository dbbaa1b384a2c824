"""Herald latency and throughput across processes on TCP loopback, against bare pyzmq.

    python benchmarks/bench_heralds.py [--seconds 4] [--rate 1000] [--throughput 1000000]

Latency: the station process publishes a herald every 1/rate s (a periodic test source), each
at its decision time; each node agent process stamps its receipt on the same host's monotonic
clock, so station decision -> node receipt is exact (no clock-sync error). Against it, in the
same run: a bare pyzmq PUB process sending a 32-byte frame every 1/rate s to one SUB process
(one-way), and to two (fan-out: the later of the two arrivals), blocking recv in both. Targets:
ours (later of the two nodes) median <= 1.25x and p99 <= 1.5x the bare fan-out.

Throughput: the station fed heralds at --throughput per second (batched into one frame per
loop turn) to both node agents for --seconds; counts what each node received, and any seq it
missed. Both with CURVE (the lab's keys) and without, to state CURVE's cost.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from network._proc import ProcessGroup, precise_timers  # noqa: E402
from network.config import load_network_config  # noqa: E402
from network.keys import generate_lab_keys  # noqa: E402
from network.lab import plan_lab, read_report, start_lab  # noqa: E402
from network.station import PeriodicHeralds  # noqa: E402

CONFIG = REPO / "lab_configs" / "two_node_link.yaml"


def free_port_run(count: int) -> int:
    import random

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
        held = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free ports")


# -- bare pyzmq ----------------------------------------------------------------------------
def _bare_pub(port: int, count: int, period: float, subscribers: int) -> None:
    import zmq

    precise_timers()
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
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
    context.term()


def _bare_sub(port: int, out: str) -> None:
    import zmq

    precise_timers()
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
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


def bare(subscribers: int, count: int, period: float, workdir: Path) -> np.ndarray:
    """Per message: the later arrival over the subscribers, s."""
    context = multiprocessing.get_context("spawn")
    port = free_port_run(2)
    outs = [str(workdir / f"bare_{subscribers}_{i}.npy") for i in range(subscribers)]
    subs = [context.Process(target=_bare_sub, args=(port, out)) for out in outs]
    for proc in subs:
        proc.start()
    pub = context.Process(target=_bare_pub, args=(port, count, period, subscribers))
    pub.start()
    for proc in [pub, *subs]:
        proc.join(120)
    arrays = [np.load(out) for out in outs]
    n = min(len(a) for a in arrays)
    return np.max([a[:n] for a in arrays], axis=0) * 1e-9


# -- ours ----------------------------------------------------------------------------------
def ours(rate: float, seconds: float, workdir: Path, *, curve: bool, tag: str) -> Any:
    config = load_network_config(CONFIG)
    config = config.with_ports(free_port_run(3))
    config = type(config)(**{**config.__dict__, "key_dir": workdir / "keys",
                             "run_dir": workdir / "runs"})
    generate_lab_keys(config.key_dir, config.key_names())
    plan = plan_lab(config, pairs=1, run_dir=workdir / "runs" / tag,
                    epoch_ns=time.monotonic_ns(), goodness=0.5, expected_pair_rate=rate,
                    curve=curve, max_seconds=seconds + 30)
    source = functools.partial(PeriodicHeralds, round(1e12 / rate))
    with ProcessGroup() as group:
        start_lab(group, plan, source, orchestrator=False)
        time.sleep(seconds + 1.5)  # ~1.5 s to start the processes and connect
    return read_report(plan)


def _stats(x: np.ndarray) -> tuple[float, float, float]:
    median, p99 = np.percentile(x, [50, 99])
    return float(median), float(p99), float(x.max())


def _us(x: float) -> str:
    return f"{x * 1e6:7.1f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="heralds/s for latency")
    parser.add_argument("--throughput", type=float, default=1_000_000.0,
                        help="heralds/s offered for throughput")
    parser.add_argument("--only", choices=("bare", "ours", "throughput"), default=None)
    args = parser.parse_args()
    count = int(args.seconds * args.rate)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        one = bare(1, count, 1 / args.rate, workdir)
        two = bare(2, count, 1 / args.rate, workdir)
        rows = [("bare pyzmq PUB/SUB one-way (1 subscriber)", one),
                ("bare pyzmq fan-out, later of 2 subscribers", two)]
        for curve in (True, False):
            report = ours(args.rate, args.seconds, workdir, curve=curve,
                          tag=f"lat_{curve}")
            rows.append((f"ours: station -> later of 2 node agents, CURVE "
                         f"{'on' if curve else 'off'}", report.latency_s))
        print(f"latency ({args.rate:g} heralds/s, {args.seconds:g} s each; same-host "
              "monotonic clock)")
        print(f"  {'':<58}{'median':>10}{'p99':>11}{'max':>11}{'n':>7}")
        for label, x in rows:
            median, p99, top = _stats(x)
            print(f"  {label:<58}{_us(median)}{_us(p99)} {_us(top)}{len(x):>7}")
        bare_median, bare_p99, _ = _stats(two)
        for label, x in rows[2:]:
            median, p99, _ = _stats(x)
            print(f"  {label}: median {median / bare_median:.2f}x (target <= 1.25x), "
                  f"p99 {p99 / bare_p99:.2f}x (target <= 1.5x) of the bare fan-out")
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
                      f"stream; latency median {np.median(got['latency_ps']) * 1e-6:.0f} us, "
                      f"max {got['latency_ps'].max() * 1e-6:.0f} us")


if __name__ == "__main__":
    main()
