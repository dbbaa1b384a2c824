"""The station's time tagger twin with a simulated link: what generating its tags costs, and
whether the heralds it makes come at the model's rate.

    python benchmarks/bench_link_twin.py [--seconds 5] [--schemes single_click,two_click]
                                         [--period 1e-6] [--stream]

Part 1, cost (per scheme): the ID1000 emulator of a heralding-station lab (SIM900 SNSPDs at
their operating bias, inputs 1, 2 on the detectors and 3 on the attempt clock) draws a
recording of ``--seconds`` s at one sync tag per round (``--period`` s per round: 1 MHz by
default; two-click has two rounds per attempt), without any transport or pacing; printed:
CPU s per s of recording (this process's CPU time over the recording's length), with and
without the ground-truth file. The machine's load average is printed first: a figure taken
while other work ran says so.

Part 2 (``--stream``), rate: the same lab loaded with `load_station` (sim profile), tags
acquired through the real ID1000 driver over ZeroMQ in paced real time, fed to the
`HeraldEngine` with windows at the true delays; printed: heralds per attempt against
`network.link_model.expected_success_probability` (with the binomial standard error), the
psi- fraction, and the truth file's verdict agreement.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import DETECTORS, OPERATING_BIAS, SYNC, write_station_lab


def station_yaml(folder: Path, scheme: str, round_period: float, truth: bool) -> Path:
    rounds = 1 if scheme == "single_click" else 2
    link: dict[str, Any] = {
        "scheme": scheme, "attempt_period": round_period * rounds,
        "bright_state_population": 0.05, "sync_input": SYNC,
        "detector_inputs": list(DETECTORS), "seed": 20261201,
        # the preset's device is Hz-class: this world's fires up to every 0.1 us; its 10 MHz
        # band makes a ~16 ns photon, so 40 ns windows (as lab_configs/two_node_link.yaml)
        "nodes": {n: {"transducer": "bulk_eo_pulsed", "fibre_length_km": 2.0,
                      "collection_efficiency": 0.5, "repetition_limit": 1.0e7}
                  for n in ("node_a", "node_b")},
        "detection_window": 4.0e-8,
        "hom_visibility": 0.95, "arrival_time_spread": 5.0e-11,
    }
    if truth:
        link["truth_file"] = str(folder / f"truth_{scheme}.npy")
    return write_station_lab(folder / f"station_{scheme}_{int(truth)}.yaml", link,
                             {"block_interval_s": 0.05, "stream_latency_s": 60.0,
                              "stream_end_timeout_s": 60.0})


def cost(path: Path, seconds: float) -> tuple[float, int, int]:
    """(CPU s per s of recording, tags, chunks) of the twin drawing one recording."""
    from qnetlab.sim_instruments.bench import build_bench
    from qnetlab.sim_instruments.devices.srs_sim900_quantum_opus import dac_of

    bench = build_bench(path)
    snspd, tagger = bench.device("snspd"), bench.zmq_devices["tagger"]
    for slot in (1, 2):
        snspd.module(slot).set_dac(dac_of(OPERATING_BIAS))
    for n in (*DETECTORS, SYNC):
        tagger.enabled[n] = tagger.raw_send[n] = True
    tagger.rec_duration_ps = round(seconds * 1e12)
    start = time.process_time()
    tags = chunks = 0
    for chunk in tagger.recording():
        tags += sum(t.size for t in chunk.tags.values())
        chunks += 1
    return (time.process_time() - start) / seconds, tags, chunks


def stream(path: Path, seconds: float) -> None:
    from qnetlab.instruments.station import load_station
    from qnetlab.network.herald_engine import HeraldEngine, HeraldWindows
    from qnetlab.network.link_model import expected_success_probability
    from qnetlab.sim_instruments.link_events import read_twin_truth
    from qnetlab.sim_instruments.physics.link_clicks import NO_HERALD

    station = load_station(path, "sim")
    try:
        snspd, tagger = station.instrument("snspd"), station.instrument("tagger")
        for channel in (snspd.ch1, snspd.ch2):
            channel.bias_current(OPERATING_BIAS)
        for n in (*DETECTORS, SYNC):
            tagger.tagger_channels[n].enabled(True)
        emulator = station.world.bench.zmq_devices["tagger"]
        source = emulator.source
        physics = source.spec.physics
        delay = {n: emulator.model.channels[n - 1].delay_ps for n in (*DETECTORS, SYNC)}
        offsets = tuple(tuple(light + delay[d] - delay[SYNC] for light in physics.light_ps)
                        for d in DETECTORS)
        engine = HeraldEngine(HeraldWindows(physics.scheme, SYNC, DETECTORS, offsets,
                                            physics.detection_window_ps))
        start = time.monotonic()
        heralds = np.concatenate([engine.feed(b.timestamps, b.channels)
                                  for b in tagger.blocks(seconds)])
        wall = time.monotonic() - start
        model = physics.model(source.detector_state())
    finally:
        station.close()
    attempts = engine.counters["attempts"]
    p = expected_success_probability(model)
    sigma = math.sqrt(p * (1 - p) / attempts)
    measured = heralds.size / attempts
    print(f"    streamed {seconds:g} s in {wall:.2f} s wall: {attempts} attempts, "
          f"{heralds.size} heralds")
    print(f"    heralds per attempt {measured:.5f} vs analytic {p:.5f} +- {sigma:.5f} "
          f"({(measured - p) / sigma:+.1f} sigma); psi- fraction "
          f"{np.mean(heralds['bell_state'] == 1):.3f}")
    truth = read_twin_truth(Path(source.spec.truth_file))
    decided = min(attempts, int(truth["attempt_id"].max()) - 1000)
    told = heralds[heralds["attempt_id"] < decided]
    true = truth[(truth["attempt_id"] < decided) & (truth["bell_state"] != NO_HERALD)]
    same = (told.size == true.size and np.array_equal(told["attempt_id"], true["attempt_id"])
            and np.array_equal(told["bell_state"], true["bell_state"]))
    print(f"    truth file: {true.size} heralded attempts, engine's verdicts "
          f"{'identical' if same else 'DIFFER'}; genuine fraction "
          f"{true['genuine'].mean():.3f}, mean fidelity {true['fidelity'].mean():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--schemes", default="single_click,two_click")
    parser.add_argument("--period", type=float, default=1e-6, help="s per round (sync tag)")
    parser.add_argument("--stream", action="store_true", help="also stream through the driver")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (2 cores shared)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for scheme in args.schemes.split(","):
            print(f"{scheme}, sync at {1e-6 / args.period:g} MHz:")
            for truth in (False, True):
                path = station_yaml(folder, scheme, args.period, truth)
                per_s, tags, chunks = cost(path, args.seconds)
                print(f"    twin tag generation {'with' if truth else 'without'} truth file: "
                      f"{per_s:.3f} CPU s per s of recording ({tags / args.seconds / 1e6:.2f} "
                      f"Mtags/s in {chunks / args.seconds:.0f} chunks/s)")
            if args.stream:
                stream(station_yaml(folder, scheme, args.period, True), args.seconds)


if __name__ == "__main__":
    main()
