"""The heralding station's simulated instruments in a process of their own (sim profile).

In the sim profile, `qnetlab link` and `qnetlab bringup` serve the station lab's twins (its
SNSPDs, its time tagger streaming the simulated link, its reference laser) from a process of
their own on free loopback ports, as ``qnetlab sim serve`` serves a lab, and the station
process opens its lab with the real profile's drivers over those transports. The station then
reads its tagger exactly as it does on hardware, and the simulation (0.3-0.7 of a core at kHz
herald rates) does not share the station process's interpreter lock, which made heralds
expire: docs/link.md#the-station-labs-twins. The link's ground truth stays in the twin's
process, which writes it to the run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import LabConfig, load_config

__all__ = ["private_station_lab", "serve_lab_twins", "start_station_twin", "with_station_twins"]

READY_TIMEOUT_S = 120.0
"""s the launcher waits for the twins to listen (building the bench imports and compiles the
simulator: ~5 s on an idle 2-core host, several times that on a loaded one)."""

BIND_ATTEMPTS = 3
"""Port runs tried: a free run can be taken by another process before the twins bind it."""


def private_station_lab(station_lab: str | Path | LabConfig,
                        simulation: Mapping[str, Any] | None) -> LabConfig:
    """The station lab with `simulation` as its ``qnetlab.simulation.link`` (None: the lab's
    own) and every real address moved to a free run of loopback ports: what
    `serve_lab_twins` serves and the station opens on the real profile."""
    from qnetlab.sim_instruments.ports import free_port_run

    config = station_lab if isinstance(station_lab, LabConfig) else load_config(station_lab)
    if simulation is not None:
        config = config.with_simulation(link=dict(simulation))
    return config.with_ports(free_port_run(config.port_count), host="127.0.0.1")


def serve_lab_twins(lab: LabConfig, ready_file: Path, niceness: int, stop: Any) -> None:
    """Serve `lab`'s twins on its real addresses until `stop` (a `ProcessGroup` target);
    ``ready_file`` is written once every port listens. `niceness` > 0 lowers the process's
    priority (`os.nice`, before any thread starts, so every thread has it)."""
    from qnetlab.sim_instruments.bench import build_bench
    from qnetlab.sim_instruments.server import BenchServer

    from ._serve import serve_zmq_twins

    if niceness > 0:
        os.nice(niceness)
    bench = build_bench(lab, clock="paced")
    server = BenchServer(bench)
    twins: dict[str, Any] = {}
    thread: threading.Thread | None = None
    try:
        twins = serve_zmq_twins(bench, None)
        thread = threading.Thread(target=server.serve_forever, name="twin-scpi", daemon=True)
        thread.start()
        addresses = {name: server.resource(name) for name in server.ports}
        addresses.update({name: twin.scpi_address for name, twin in twins.items()})
        partial = ready_file.with_suffix(".partial")
        partial.write_text(json.dumps({"pid": os.getpid(), "addresses": addresses}))
        partial.replace(ready_file)  # whole or absent: the launcher polls for it
        while not stop and thread.is_alive():
            thread.join(0.2)  # the flag is set by a signal: nothing to wait on but time
    finally:
        server.stop()
        if thread is not None:
            thread.join(5.0)  # its select wakes within 0.5 s
        for twin in twins.values():
            twin.close()  # a recording still running ends here and writes its truth
        server.close()


def start_station_twin(group: Any, lab: LabConfig, run_dir: Path, name: str,
                       timeout: float = READY_TIMEOUT_S, niceness: int = 0) -> LabConfig:
    """Start `serve_lab_twins` of `lab` as process `name` of `group` (a `ProcessGroup`) and
    return once its ports listen: the lab as served (on other free ports if a port of the
    first run was taken meanwhile). Raises `ConfigError` naming the lab if the twins stop
    before they listen, or do not listen within `timeout` s.

    `niceness`: the twins' process's (0: as every process of the run; `bench_delivery`
    lowers it, so that the simulation, which on hardware runs in the instruments, yields the
    host's cores to the control plane it measures)."""
    from qnetlab.network import read_faults
    from qnetlab.sim_instruments.ports import free_port_run

    run_dir.mkdir(parents=True, exist_ok=True)
    ready = run_dir / f"{name}_ready.json"
    for attempt in range(BIND_ATTEMPTS):
        if attempt:
            lab = lab.with_ports(free_port_run(lab.port_count), host="127.0.0.1")
            with contextlib.suppress(FileNotFoundError):
                (run_dir / f"{name}.fault.json").unlink()
        group.start(name, serve_lab_twins, lab, ready, niceness, report_to=run_dir)
        deadline = time.monotonic() + timeout
        while not ready.exists():
            code = group.join(name, 0.05)
            if code is not None:
                faults = [f for f in read_faults(run_dir) if f.get("process") == name]
                fault = faults[0] if faults else {"kind": "crash",
                                                  "message": f"exit code {code}"}
                message = str(fault.get("message", ""))
                taken = fault.get("kind") == "bind" or "cannot listen" in message
                if taken and attempt + 1 < BIND_ATTEMPTS:
                    break  # a port was taken between the choice and the bind: another run
                # A config fault's message names its entry and its fix already.
                raise lab.error("", "the station lab's simulated instruments stopped before "
                                    f"they listened: {message}",
                                "" if fault.get("kind") == "config" else
                                f"see {run_dir / (name + '_fault.json')}; `qnetlab check "
                                f"{lab.path}` opens the same twins in this process")
            if time.monotonic() > deadline:
                raise lab.error("", f"the station lab's simulated instruments did not "
                                    f"listen within {timeout:g} s",
                                "the host may be overloaded: retry, or stop other work")
        else:
            return lab
    raise ConfigError(str(lab.path), "", "no free loopback ports for the station lab's "
                      f"twins after {BIND_ATTEMPTS} tries", "retry")


def with_station_twins(plan: Any, twins: Any, name: str) -> Any:
    """`plan` (a `network.lab.LabPlan` whose station reads its tagger, sim profile) with its
    station reading the station lab's twins served by process `name` of `twins` (a
    `ProcessGroup` entered before the plan's own, so stopped after it), on the real profile."""
    source = plan.station.source
    lab = start_station_twin(twins, private_station_lab(source.lab, source.simulation),
                             plan.run_dir, name)
    source = dataclasses.replace(source, lab=lab, profile="real", simulation=None)
    return dataclasses.replace(plan, station=dataclasses.replace(plan.station, source=source))
