"""The bridge's scheduling core at scale: 64 to 512 QNUs in the discrete-event simulation.

    python benchmarks/bench_bridge.py [--sizes 64 128 256 512] [--requests-per-qnu 8]
                                      [--load 0.5] [--no-baseline] [--json FILE]

Per size N: the bridge `bridge_topology(N)` (N / 4 heralding stations), a `random_pairs`
workload of `--requests-per-qnu` x N requests arriving as a Poisson process at `--load` of
the stations' capacity (stations x the path rate / 1.5 pairs a request), and a distributed
GHZ across all N QPUs. Printed per size:

- decisions/s: the orchestrator's decisions over the CPU time spent inside its calls (one
  core; the simulation's own work is not counted; CPU, not wall-clock, so other processes
  on a shared machine do not count);
- real time: simulated makespan / time inside the scheduler: above 1, the scheduler keeps up
  with the requests the link rates generate (the issue's goal at 256 QNUs);
- memory: the scheduler's own memory (tracemalloc, the allocations made in the scheduling
  modules, sampled through the run, peak), and per (QNU + open request) at that peak: flat
  across sizes means linear growth;
- makespan against the lower bound (`makespan_bound`) for both workloads, and the
  round-robin baseline's makespan (`--no-baseline` skips it: it is slow at 512).

Seeded; wall-clock figures vary with the machine's load, the simulated ones do not.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

from qnetlab.network.bridge import (
    BridgeTopology,
    Decision,
    Request,
    RoundRobinScheduler,
    Scheduler,
    bridge_topology,
    distributed_ghz,
    makespan_bound,
    random_pairs,
    simulate,
)

CORE_FILES = ("*/bridge/scheduler.py", "*/bridge/switch_state.py", "*/bridge/records.py")


@dataclass
class _Sampled:
    """A scheduler wrapper that samples the scheduling modules' traced memory every `every`
    calls (and at the end)."""

    core: Scheduler
    every: int
    calls: int = 0
    peak: int = 0
    open_at_peak: int = 0

    @property
    def name(self) -> str:
        return self.core.name

    def sample(self) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, pattern) for pattern in CORE_FILES])
        size = sum(stat.size for stat in snapshot.statistics("filename"))
        if size > self.peak:
            self.peak, self.open_at_peak = size, len(self.core.open)

    def _count(self, decisions: list[Decision]) -> list[Decision]:
        self.calls += 1
        if self.calls % self.every == 0:
            self.sample()
        return decisions

    def submit(self, request: Request, now: float) -> list[Decision]:
        return self._count(self.core.submit(request, now))

    def cancel(self, request_id: str, now: float) -> list[Decision]:
        return self._count(self.core.cancel(request_id, now))

    def pairs_held(self, request_id: str, held: int, now: float) -> list[Decision]:
        return self._count(self.core.pairs_held(request_id, held, now))

    def tick(self, now: float) -> list[Decision]:
        return self._count(self.core.tick(now))

    def next_wakeup(self) -> float | None:
        return self.core.next_wakeup()


def _memory(workload: Any, topology: BridgeTopology, seed: int) -> tuple[int, int]:
    """(peak bytes of the scheduling modules, open requests then)."""
    tracemalloc.start()
    try:
        sampled = _Sampled(Scheduler(topology), every=max(50, len(workload.operations) // 4))
        simulate(workload, topology, sampled, seed=seed, keep_decisions=False)
        sampled.sample()
    finally:
        tracemalloc.stop()
    return sampled.peak, sampled.open_at_peak


def bench_size(n: int, requests_per_qnu: int, load: float, baseline: bool,
               seed: int = 1) -> dict[str, Any]:
    topology = bridge_topology(n, seed=seed)
    rate = topology.path_link("qnu0", "qnu1", topology.stations[0]).rate
    arrival = load * len(topology.stations) * rate / 1.5
    pairs = random_pairs(n, requests_per_qnu * n, seed=seed, rate=arrival)
    ghz = distributed_ghz(n)
    row: dict[str, Any] = {"qnus": n, "stations": len(topology.stations),
                           "requests": len(pairs.operations), "arrival_rate": arrival}
    run = simulate(pairs, topology, Scheduler(topology), seed=seed, keep_decisions=False)
    row.update(
        decisions=run.decision_count, scheduler_s=run.scheduler_seconds,
        decisions_per_s=run.decision_count / run.scheduler_seconds,
        realtime_ratio=run.makespan / run.scheduler_seconds,
        makespan=run.makespan, bound=makespan_bound(pairs, topology).expected,
        max_open=run.max_open_requests, errors=run.errors,
        p90_latency=run.latency_summary()["p90"], wasted=run.pairs_wasted,
        delivered=run.pairs_delivered, reconfigurations=run.reconfigurations)
    peak, open_at_peak = _memory(pairs, topology, seed)
    row.update(memory_bytes=peak, open_at_peak=open_at_peak,
               bytes_per_unit=peak / (n + open_at_peak))
    ghz_run = simulate(ghz, topology, Scheduler(topology), seed=seed, keep_decisions=False)
    row.update(ghz_makespan=ghz_run.makespan, ghz_bound=makespan_bound(ghz, topology).expected)
    if baseline:
        start = time.perf_counter()
        rr = simulate(pairs, topology, RoundRobinScheduler(topology), seed=seed,
                      keep_decisions=False)
        rr_ghz = simulate(ghz, topology, RoundRobinScheduler(topology), seed=seed,
                          keep_decisions=False)
        row.update(rr_makespan=rr.makespan, rr_errors=rr.errors,
                   rr_ghz_makespan=rr_ghz.makespan, rr_wall_s=time.perf_counter() - start)
    return row


def _print(rows: list[dict[str, Any]]) -> None:
    print(f"{'QNUs':>5} {'stat':>4} {'requests':>8} {'decisions':>9} {'dec/s':>8} "
          f"{'realtime':>8} {'mem kB':>7} {'B/unit':>6} {'makespan':>8} {'bound':>7} "
          f"{'RR':>8} {'GHZ':>6} {'GHZbnd':>6} {'GHZ RR':>7}")
    for r in rows:
        rr = f"{r['rr_makespan']:8.2f}" if "rr_makespan" in r else f"{'-':>8}"
        rr_ghz = f"{r['rr_ghz_makespan']:7.2f}" if "rr_ghz_makespan" in r else f"{'-':>7}"
        print(f"{r['qnus']:5d} {r['stations']:4d} {r['requests']:8d} {r['decisions']:9d} "
              f"{r['decisions_per_s']:8.0f} {r['realtime_ratio']:8.1f} "
              f"{r['memory_bytes'] / 1e3:7.0f} {r['bytes_per_unit']:6.0f} "
              f"{r['makespan']:8.2f} {r['bound']:7.2f} {rr} {r['ghz_makespan']:6.2f} "
              f"{r['ghz_bound']:6.2f} {rr_ghz}")
    print("dec/s: decisions per CPU s inside the scheduler; realtime: simulated "
          "makespan / scheduler time (>1 keeps up); B/unit: scheduler bytes per (QNU + open "
          "request); makespan, bound, RR (round-robin): random pairs, s; GHZ: distributed "
          "GHZ, s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--requests-per-qnu", type=int, default=8)
    parser.add_argument("--load", type=float, default=0.5,
                        help="arrival rate as a fraction of the stations' capacity")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        rows.append(bench_size(n, args.requests_per_qnu, args.load, not args.no_baseline))
        print(f"  {n} QNUs done", flush=True)
    _print(rows)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=1, default=str)


if __name__ == "__main__":
    main()
