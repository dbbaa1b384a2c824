"""Pieces the benchmarks share: a bare SUB receiver, and a heralding-station lab whose tagger
twin simulates a given link. Not a benchmark itself."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

OPERATING_BIAS = 10.5e-6
"""A (SNSPD bias current): the SIM900 twin's operating point."""
SYNC, DETECTORS = 3, (1, 2)
"""Tagger inputs of the attempt clock and of the two detectors behind the beam splitter."""


def bare_sub(port: int, key_dir: Path | None, name: str, out: str, stop: Any) -> None:
    """A bare SUB until the publisher's "end" (or `stop`): per frame (the int64 ns stamp the
    frame starts with, receipt ns) to `out`. CURVE with the lab's keys unless `key_dir` is
    None."""
    import zmq

    from qnetlab.network.keys import make_curve_client

    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    if key_dir is not None:
        make_curve_client(sub, key_dir, name, "station")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.rcvhwm = 1_000_000
    sub.rcvtimeo = 1000  # longer than any gap between slots: only so `stop` is seen
    sub.connect(f"tcp://127.0.0.1:{port}")
    rows = []
    while not stop:
        try:
            frame = sub.recv()
        except zmq.Again:
            continue
        received_ns = time.monotonic_ns()
        if frame == b"end":
            break
        rows.append((struct.unpack_from("<q", frame)[0], received_ns))
    np.save(out, np.array(rows, np.int64).reshape(-1, 2))
    sub.close()
    context.term()


def write_station_lab(path: Path, link: dict[str, Any], tagger_init: dict[str, float],
                      real_port: int | None = None) -> Path:
    """A heralding-station lab at `path` (SIM900 SNSPDs on inputs 1, 2 of an ID1000 with
    `tagger_init`), `link` as the world behind its tagger twin; with `real_port`, ``real``
    addresses on loopback ports from it (SNSPDs, tagger, its data-link service) for
    ``sim serve`` and the real profile."""
    import yaml

    snspd: dict[str, Any] = {"sim": "srs_sim900_quantum_opus"}
    tagger: dict[str, Any] = {"sim": "idq_id1000"}
    init: dict[str, Any] = dict(tagger_init)
    if real_port is not None:
        snspd["real"] = f"TCPIP0::127.0.0.1::{real_port}::SOCKET"
        tagger["real"] = f"tcp://127.0.0.1:{real_port + 1}"
        init["data_address"] = f"tcp://127.0.0.1:{real_port + 2}"
    document = {
        "qnetlab": {"simulation": {"seed": 1, "link": link},
                    "wiring": {"tagger": {1: "snspd.ch1", 2: "snspd.ch2"}}},
        "instruments": {
            "snspd": {"type": "qnetlab.drivers.quantum_opus.QuantumOpusSIM900",
                      "address": snspd, "init": {"slots": [1, 2]}},
            "tagger": {"type": "qnetlab.drivers.idquantique.IDQuantiqueID1000",
                       "address": tagger, "init": init},
        },
    }
    path.write_text(yaml.safe_dump(document))
    return path
