"""Query round trips of both transports against bare baselines measured in the same run.

    python benchmarks/bench_transport.py [--n 2000]

Baselines: a bare socket echo (a plain Python socket client against a minimal echo server in
its own process) and a bare pyvisa-sim dialogue. Ours: a raw VISA query to the simulated
N5183B through the in-process backend and through `qnetlab sim serve` (its own process,
reached by pyvisa-py over TCPIP SOCKET); and a QCoDeS get and set through the full driver
stack (a set includes the SYST:ERR? check). Reports medians, p99 and max, the ratios to the
baselines, and whether any round trip stalled like Nagle's algorithm does (>= 30 ms).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyvisa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ECHO_SERVER = textwrap.dedent("""
    import socket, threading
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0)); srv.listen(4)
    print(srv.getsockname()[1], flush=True)
    srv.settimeout(600)

    def serve(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(4096):
            conn.sendall(b"+5.000000000E+09\\n" if data.endswith(b"\\n") else b"")
        conn.close()

    while True:
        threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
""")

PYVISA_SIM = textwrap.dedent("""
    spec: "1.1"
    devices:
      source:
        eom:
          TCPIP INSTR: {q: "\\n", r: "\\n"}
        dialogues:
          - q: "SOUR:FREQ?"
            r: "+5.000000000E+09"
    resources:
      TCPIP0::sim::inst0::INSTR: {device: source}
""")

STALL = 0.030
ROUNDS = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(fn: Callable[[], object], n: int) -> np.ndarray:
    for _ in range(min(50, n)):
        fn()
    out = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t
    return out


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="round trips per measurement")
    n = ap.parse_args().n
    import pyvisa_qnetlab
    from qnetlab.drivers.keysight import KeysightN5183B
    from qnetlab.instruments.lab_config import load_config

    paths: dict[str, Callable[[], object]] = {}
    tmp = Path(tempfile.mkdtemp())
    procs: list[subprocess.Popen[str]] = []
    closers: list[Callable[[], object]] = []
    try:
        # -- bare socket echo, in its own process --------------------------------------------
        echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE,
                                text=True)
        procs.append(echo)
        assert echo.stdout is not None
        echo_port = int(echo.stdout.readline())
        sock = socket.create_connection(("127.0.0.1", echo_port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        closers.append(sock.close)

        def raw_echo() -> None:
            sock.sendall(b"SOUR:FREQ?\n")
            buf = b""
            while not buf.endswith(b"\n"):
                buf += sock.recv(4096)

        paths["bare socket echo (python client)"] = raw_echo

        # -- bare pyvisa-sim -----------------------------------------------------------------------
        sim_yaml = tmp / "sim.yaml"
        sim_yaml.write_text(PYVISA_SIM)
        sim_res = pyvisa.ResourceManager(f"{sim_yaml}@sim").open_resource(
            "TCPIP0::sim::inst0::INSTR", read_termination="\n", write_termination="\n")
        paths["bare pyvisa-sim query"] = lambda: sim_res.query("SOUR:FREQ?")

        # -- ours: in-process and TCP ------------------------------------------------------
        port = free_port()
        config = tmp / "bench.yaml"
        config.write_text(textwrap.dedent(f"""
            qnetlab:
              simulation: {{seed: 1}}
            instruments:
              mw_source:
                type: qnetlab.drivers.keysight.KeysightN5183B
                address: {{sim: keysight_n5183b, real: "TCPIP0::127.0.0.1::{port}::SOCKET"}}
        """))
        inproc = pyvisa.ResourceManager(
            pyvisa_qnetlab.register_world(load_config(config)).visalib).open_resource(
            "TCPIP0::mw_source::keysight_n5183b::INSTR", read_termination="\n",
            write_termination="\n")
        paths["ours: in-process backend query"] = lambda: inproc.query("SOUR:FREQ?")

        server = subprocess.Popen(
            [sys.executable, "-m", "qnetlab", "sim", "serve", str(config), "--max-seconds",
             "600"], cwd=REPO, stdout=subprocess.DEVNULL)
        procs.append(server)
        wait_for_port(port)
        py = pyvisa.ResourceManager("@py")
        echo_res = py.open_resource(f"TCPIP0::127.0.0.1::{echo_port}::SOCKET",
                                    read_termination="\n", write_termination="\n")
        paths["pyvisa-py query to the bare echo server"] = lambda: echo_res.query("SOUR:FREQ?")

        mw = KeysightN5183B("mw_tcp", f"TCPIP0::127.0.0.1::{port}::SOCKET", visalib="@py")
        closers.append(mw.close)
        paths["ours: SOCKET query (pyvisa-py -> sim serve)"] = (
            lambda: mw.visa_handle.query("SOUR:FREQ?"))
        paths["ours: QCoDeS get over SOCKET"] = mw.frequency.get
        paths["ours: QCoDeS set over SOCKET (+ error check)"] = lambda: mw.frequency.set(6e9)

        mw_in = KeysightN5183B("mw_inproc", "TCPIP0::mw_source::keysight_n5183b::INSTR",
                               visalib=pyvisa_qnetlab.register_world(
                                   load_config(config)).visalib)
        closers.append(mw_in.close)
        paths["ours: QCoDeS get in-process"] = mw_in.frequency.get
        paths["ours: QCoDeS set in-process (+ error check)"] = lambda: mw_in.frequency.set(6e9)

        # Interleaved rounds: every path runs in every round, so drift in the machine's load
        # affects all of them alike; ratios are taken within a round.
        per_round: dict[str, list[np.ndarray]] = {k: [] for k in paths}
        for r in range(ROUNDS):
            names = list(paths)
            names = names[r % len(names):] + names[: r % len(names)]
            for name in names:
                per_round[name].append(timed(paths[name], max(1, n // ROUNDS)))
        results = {k: np.concatenate(v) for k, v in per_round.items()}
        round_medians = {k: np.array([np.median(x) for x in v]) for k, v in per_round.items()}

        # The trap the VISA base fixes: pyvisa-py with Nagle on, a write then a query.
        nagle = py.open_resource(f"TCPIP0::127.0.0.1::{port}::SOCKET",
                                 read_termination="\n", write_termination="\n")

        def write_then_query() -> None:
            nagle.write("SOUR:FREQ 6e9")
            nagle.query("SYST:ERR?")

        results["plain pyvisa-py, Nagle on: write + query"] = timed(write_then_query, 20)
        nagle.close()
    finally:
        for close in closers:
            close()
        for p in procs:
            p.terminate()
            p.wait(10)

    width = max(map(len, results))
    print(f"{'round trip':<{width}}  median_us  p99_us   max_us")
    for name, t in results.items():
        print(f"{name:<{width}}  {np.median(t) * 1e6:9.1f}  {np.percentile(t, 99) * 1e6:6.1f}"
              f"  {t.max() * 1e6:7.1f}")
    def ratio(a: str, b: str) -> float:
        return float(np.median(round_medians[a] / round_medians[b]))

    print()
    sock_q = "ours: SOCKET query (pyvisa-py -> sim serve)"
    ratios = [
        ("SOCKET query / bare socket echo", ratio(sock_q, "bare socket echo (python client)"),
         "  (target <= 2)"),
        ("SOCKET query / pyvisa-py to bare echo",
         ratio(sock_q, "pyvisa-py query to the bare echo server"), ""),
        ("in-process query / bare pyvisa-sim query",
         ratio("ours: in-process backend query", "bare pyvisa-sim query"), ""),
        ("QCoDeS get over SOCKET / raw SOCKET query",
         ratio("ours: QCoDeS get over SOCKET", sock_q), ""),
        ("QCoDeS get in-process / pyvisa-sim query",
         ratio("ours: QCoDeS get in-process", "bare pyvisa-sim query"), ""),
    ]
    for label, value, note in ratios:
        print(f"{label:<42} {value:.2f}x{note}")
    stalls = {k: int((v >= STALL).sum()) for k, v in results.items() if "Nagle on" not in k}
    print(f"round trips >= {STALL * 1e3:.0f} ms (Nagle-class stalls): {sum(stalls.values())}"
          + "".join(f"\n  {k}: {c}" for k, c in stalls.items() if c)
          + " in our paths (the plain pyvisa-py write + query above shows the stall they avoid)")


if __name__ == "__main__":
    main()
