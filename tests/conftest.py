"""Shared fixtures: simulated instruments reached through real VISA transports."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

# One BLAS/OpenMP thread per process, set before numpy loads (qcodes below imports it) and
# inherited by the xdist workers and every process a test starts. The suite's matrices are
# small, and two workers (plus the processes they start) on a 2-core box each running a
# multi-threaded OpenBLAS wait on each other's threads at every call: a 200-fit Poisson test
# took 3-18 s that way and under 1 s single-threaded. The numbers computed are the same
# code's; a value already set in the environment is kept.
for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

import pytest  # noqa: E402
from qcodes.instrument import Instrument  # noqa: E402

from qnetlab.instruments.lab_config import load_config  # noqa: E402
from qnetlab.sim_instruments.ports import (  # noqa: E402
    DEFAULT_RANGE,
    PORT_RANGE_ENV,
    free_port_run,
)

REPO = Path(__file__).resolve().parents[1]


def _own_port_slice() -> None:
    """Each pytest-xdist worker (and every process it starts) picks free ports from a slice
    of its own: two workers picking at random from one range can both find a port free and
    then one of them fails to bind it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    low, high = DEFAULT_RANGE
    width = (high - low) // count
    index = int(worker[2:]) % count
    os.environ[PORT_RANGE_ENV] = f"{low + index * width}-{low + (index + 1) * width}"


_own_port_slice()
BENCH_CONFIG = REPO / "lab_configs" / "transducer_bench.yaml"


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as module `name`, loaded once (registered before it runs: its
    dataclasses look their module up)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def bench_config(folder: Path, preset: str = "bulk_eo_pulsed",
                 simulation: str | dict[str, Any] = "",
                 setup: dict[str, Any] | None = None) -> Path:
    """The transducer bench (lab_configs/transducer_bench.yaml) written to `folder` with
    another transducer preset, extra ``qnetlab.simulation`` entries (a mapping, or YAML text
    such as ``fridge: {cooling_coefficient: 0.004}``) and changed ``transducer_setup``
    values (numbers, or YAML text such as ``"1550.60e-9"``)."""
    extra = _yaml_value(simulation) if isinstance(simulation, str) else simulation
    values = {key: _yaml_value(v) if isinstance(v, str) else v
              for key, v in (setup or {}).items()}
    config = load_config(BENCH_CONFIG).with_simulation(transducer=preset, **(extra or {}))
    if values:
        assert set(values) <= set(config.transducer_setup or {}), \
            f"transducer_setup has no {sorted(set(values) - set(config.transducer_setup or {}))}"
        config = config.with_transducer_setup(**values)
    return config.to_yaml(folder / f"{preset}.yaml").path


def _yaml_value(text: str) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text)


def bench_on_free_ports(folder: Path, name: str = "transducer_bench.yaml") -> tuple[Path, int]:
    """The transducer bench with every real address on a free loopback port, written to
    `folder`/`name`; returns its path and one more free port (for `sim serve`'s control
    socket). Each instrument keeps its loopback host (127.0.0.x: see
    sim_instruments/server.py)."""
    config = load_config(BENCH_CONFIG)
    hosts = sorted({host for inst in config.instruments.values()
                    for host in re.findall(r"127\.\d+\.\d+\.\d+",
                                           inst.addresses.get("real", ""))} or {"127.0.0.1"})
    base = free_port_run(config.port_count, hosts)  # base .. base + port_count, all free
    return config.with_ports(base).to_yaml(folder / name).path, base + config.port_count


NETWORK_FILES = ("two_node_link.yaml", "node_a_lab.yaml", "node_b_lab.yaml",
                 "heralding_station.yaml")
"""The shipped two-node network and the labs it names (lab_configs/)."""


def network_lab_on_free_ports(folder: Path) -> Path:
    """The shipped two-node network and its node labs written to `folder`/lab_configs, every
    TCP port moved to a free one; keys, runs and databases then go to `folder`/lab_data
    (the configs' relative paths). Returns the network config's path."""
    from ruamel.yaml import YAML

    configs = folder / "lab_configs"
    configs.mkdir()
    labs = [load_config(REPO / "lab_configs" / name) for name in NETWORK_FILES[1:]]
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    network = yaml.load((REPO / "lab_configs" / NETWORK_FILES[0]).read_text())
    addresses = _tcp_addresses(network)
    port = free_port_run(len(addresses) + sum(lab.port_count for lab in labs))
    for holder, key in addresses:
        holder[key] = re.sub(r":\d+$", f":{port}", holder[key])
        port += 1
    with (configs / NETWORK_FILES[0]).open("w") as out:
        yaml.dump(network, out)
    for name, lab in zip(NETWORK_FILES[1:], labs, strict=True):
        lab.with_ports(port).to_yaml(configs / name)
        port += lab.port_count
    return configs / NETWORK_FILES[0]


def _tcp_addresses(node: Any) -> list[tuple[dict[str, Any], str]]:
    """(mapping, key) of every ``tcp://HOST:PORT`` string in a parsed YAML document."""
    found: list[tuple[dict[str, Any], str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and re.fullmatch(r"tcp://[^/]+:\d+", value):
                found.append((node, key))
            else:
                found += _tcp_addresses(value)
    elif isinstance(node, list):
        for item in node:
            found += _tcp_addresses(item)
    return found


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               poll: float = 0.02) -> None:
    """Poll `predicate` every `poll` s until it is true; fail naming `what` after `timeout`
    s. Polling with a deadline, not a sleep: a loaded machine only makes it slower."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


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
    ``ideal=True`` pins the clean lab (a twin held to its formula exactly); the default is
    the config default, the realistic lab.
    Each call gets a fresh world. `sim_instruments.visa_backend.bench_of(inst)` gives the
    bench (world, emulator, faults) behind it.
    """
    import pyvisa_qnetlab  # the simulated VISA backend's registry (its module docstring)

    opened: list[Instrument] = []

    def open_twin(driver: type, twin: str, *, transducer: str = "bulk_eo_cw", seed: int = 1,
                  ideal: bool | None = None, **init: Any) -> Any:
        name = f"{twin}_{len(opened)}"
        config = tmp_path / f"{name}.yaml"
        pinned = "" if ideal is None else f", ideal: {str(ideal).lower()}"
        config.write_text(
            f"qnetlab:\n  simulation: {{seed: {seed}, transducer: {transducer}{pinned}}}\n"
            f"instruments:\n  {name}:\n    type: {driver.__module__}.{driver.__name__}\n"
            f"    address: {{sim: {twin}}}\n"
        )
        # Register the world explicitly (a fresh token each call), as load_station does.
        world = pyvisa_qnetlab.register_world(load_config(config))
        inst = driver(name, f"TCPIP0::{name}::{twin}::INSTR", visalib=world.visalib, **init)
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


@contextlib.contextmanager
def sim_serving(config: Path, control_port: int, log: Path) -> Iterator[Any]:
    """`qnetlab sim serve CONFIG` in its own process (stderr to the file `log`: a pipe nobody
    reads could stall it), until its control port answers; yields a control client. Stopped
    on exit, and by itself after 10 minutes at the latest."""
    import subprocess
    import sys

    from qnetlab.sim_instruments.server import ControlClient

    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qnetlab", "sim", "serve", str(config), "--control-port",
             str(control_port), "--max-seconds", "600"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        client = None
        deadline = time.monotonic() + 60
        while client is None:
            try:
                client = ControlClient(control_port)
                client.request(op="ping")
            except OSError:
                client = None
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    err.flush()
                    raise RuntimeError(f"sim serve did not start: {log.read_text()}") from None
                time.sleep(0.1)
        try:
            yield client
        finally:
            client.close()
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def served_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    """`qnetlab sim serve` on the transducer bench, in its own process, on free ports.

    Yields the config path (whose real addresses point at the servers) and a control
    client. The server stops at teardown, and by itself after 10 minutes at the latest.
    """
    folder = tmp_path_factory.mktemp("served")
    config, control_port = bench_on_free_ports(folder)
    with sim_serving(config, control_port, folder / "serve.log") as client:
        yield config, client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test on the `served_bench` fixture starts `qnetlab sim serve` (a process, 1-2 s to
    come up): mark it `processes` and `slow`. Modules that start processes throughout say
    so in their own ``pytestmark``."""
    for item in items:
        if "served_bench" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.processes)
            item.add_marker(pytest.mark.slow)


# -- the monitor's browser tests ---------------------------------------------------------------
BROWSER_HOW_TO_GET = ("the monitor's browser tests need headless Chromium and its driver: "
                      "`apt-get install chromium chromium-driver` (Debian), and selenium "
                      "(`pip install -e '.[test]'`)")
BROWSER_PAGE_LOAD_S = 60.0  # s; every wait ends at its event, this only bounds a broken run


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    import shutil

    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "no `chromium` on PATH"
    if not shutil.which("chromedriver"):
        return "no `chromedriver` on PATH"
    return None


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by selenium (Debian's `chromium` and `chromium-driver`);
    skips without it, and fails under CI=true so the browser tests cannot silently stop
    running."""
    import shutil

    missing = missing_browser()
    if missing is not None:
        message = f"{missing}; {BROWSER_HOW_TO_GET}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the browser test: {message}")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1600"):
        options.add_argument(argument)
    # The system's driver, never one downloaded (Selenium Manager is not asked).
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(BROWSER_PAGE_LOAD_S)
    try:
        yield driver
    finally:
        driver.quit()
