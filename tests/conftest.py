"""Shared fixtures: simulated instruments reached through real VISA transports."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from qcodes.instrument import Instrument

from qnetlab.sim_instruments.ports import free_port_run

REPO = Path(__file__).resolve().parents[1]
BENCH_CONFIG = REPO / "lab_configs" / "transducer_bench.yaml"


def bench_config(folder: Path, preset: str = "bulk_eo_pulsed", simulation: str = "",
                 setup: dict[str, str] | None = None) -> Path:
    """The transducer bench (lab_configs/transducer_bench.yaml) written to `folder` with
    another transducer preset, extra ``qnetlab.simulation`` entries (YAML lines such as
    ``fridge: {cooling_coefficient: 0.004}``) and changed ``transducer_setup`` values."""
    import re

    text = re.sub(r"(\n    transducer:) \w+", rf"\1 {preset}", BENCH_CONFIG.read_text(),
                  count=1)
    lines = "".join(f"    {line.strip()}\n" for line in simulation.strip().splitlines())
    text = text.replace("  simulation:\n", "  simulation:\n" + lines, 1)
    for key, value in (setup or {}).items():
        text, found = re.subn(rf"(\n    {key}: )[^\s#]+", rf"\g<1>{value}", text, count=1)
        assert found, f"transducer_setup has no {key!r}"
    path = folder / f"{preset}.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def open_bench(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Opens `bench_config(...)` stations (closed at teardown): ``open_bench(preset,
    simulation)``."""
    from qnetlab.instruments.station import load_station

    opened: list[Any] = []

    def open_(preset: str = "bulk_eo_cw", simulation: str = "") -> Any:
        station = load_station(bench_config(tmp_path, preset, simulation))
        opened.append(station)
        return station

    yield open_
    for station in opened:
        station.close()


@pytest.fixture
def sim_instrument(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Open one driver against its simulated twin over the in-process VISA backend.

    ``sim_instrument(DriverClass, "twin_name", transducer="bulk_eo_cw", seed=1, **init)``
    writes a one-instrument lab config and connects; the instrument is closed afterwards.
    Each call gets a fresh world. `sim_instruments.visa_backend.bench_of(inst)` gives the
    bench (world, emulator, faults) behind it.
    """
    opened: list[Instrument] = []

    def open_twin(driver: type, twin: str, *, transducer: str = "bulk_eo_cw", seed: int = 1,
                  **init: Any) -> Any:
        name = f"{twin}_{len(opened)}"
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            f"qnetlab:\n  simulation: {{seed: {seed}, transducer: {transducer}}}\n"
            f"instruments:\n  {name}:\n    type: {driver.__module__}.{driver.__name__}\n"
            f"    address: {{sim: {twin}}}\n"
        )
        inst = driver(name, f"TCPIP0::{name}::{twin}::INSTR",
                      visalib=f"{config}#{uuid.uuid4().hex}@qnetlab", **init)
        opened.append(inst)
        return inst

    yield open_twin
    for inst in opened:
        inst.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    """`qnetlab sim serve` on the transducer bench, in its own process, on free ports.

    Yields the config path (whose real addresses point at the servers) and a control
    client. The server stops at teardown, and by itself after 10 minutes at the latest.
    """
    import re
    import subprocess
    import sys
    import time

    from qnetlab.sim_instruments.server import ControlClient

    text = BENCH_CONFIG.read_text()
    ports = iter(range(free_port_run(10), 32000))
    # Each instrument keeps its loopback host (127.0.0.x: see sim_instruments/server.py).
    text = re.sub(r"(127\.\d+\.\d+\.\d+)::\d+::SOCKET",
                  lambda m: f"{m.group(1)}::{next(ports)}::SOCKET", text)
    text = re.sub(r"tcp://127\.0\.0\.1:\d+", lambda m: f"tcp://127.0.0.1:{next(ports)}", text)
    config = tmp_path_factory.mktemp("served") / "transducer_bench.yaml"
    config.write_text(text)
    control_port = next(ports)
    proc = subprocess.Popen(
        [sys.executable, "-m", "qnetlab", "sim", "serve", str(config), "--control-port",
         str(control_port), "--max-seconds", "600"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    client = None
    deadline = time.monotonic() + 30
    while client is None:
        try:
            client = ControlClient(control_port)
            client.request(op="ping")
        except OSError:
            client = None
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                detail = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"sim serve did not start: {detail}") from None
            time.sleep(0.1)
    try:
        yield config, client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
