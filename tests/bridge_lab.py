"""What the station-backed bridge's tests share: bridge_8 copied to a test's folder, a small
workload written there, and bridge_8's world built in the test's process."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from qnetlab.network.bridge import load_bridge_config
from qnetlab.sim_instruments.bridge_world import (
    DETECTOR_INPUTS,
    SYNC_INPUT,
    build_bridge_world,
    plan_bridge_world,
)

from conftest import REPO

LAB_CONFIGS = REPO / "lab_configs"
BRIDGE_8 = LAB_CONFIGS / "bridge_8.yaml"
SNSPD_BIAS_A = 10e-6
"""A, the SNSPDs' bias (on the twins' efficiency plateau)."""


def bridge_data() -> dict[str, Any]:
    """bridge_8.yaml as a dict, its lab paths made absolute (so a copy works anywhere)."""
    data: dict[str, Any] = YAML(typ="safe").load(BRIDGE_8.read_text())
    data["switch"]["lab"] = str(LAB_CONFIGS / data["switch"]["lab"])
    for section in ("qnus", "stations"):
        for spec in data[section].values():
            spec["lab"] = str(LAB_CONFIGS / spec["lab"])
    return data


def write_yaml(data: dict[str, Any], path: Path) -> Path:
    """`data` written to `path` as YAML; the path."""
    with path.open("w") as file:
        YAML(typ="safe").dump(data, file)
    return path


def bridge_copy(folder: Path, **changes: dict[str, Any]) -> Path:
    """bridge_8.yaml written to `folder`: its labs named by absolute path, its runs in
    `folder`/runs, and each section of `changes` updated (e.g. ``bridge={"key_dir": ...}``)."""
    data = bridge_data()
    data["bridge"]["run_dir"] = str(folder / "runs")
    for section, values in changes.items():
        data[section].update(values)
    return write_yaml(data, folder / "bridge.yaml")


def write_workload(folder: Path, operations: list[dict[str, Any]]) -> Path:
    """A workload called "tiny" on qnu0-qnu3 with `operations`, written to `folder`."""
    path = folder / "tiny.yaml"
    with path.open("w") as file:
        YAML(typ="safe").dump({"name": "tiny", "qnus": ["qnu0", "qnu1", "qnu2", "qnu3"],
                               "operations": operations}, file)
    return path


def bridge_world(folder: Path, stations: tuple[str, ...] | None = None,
                 **plan: Any) -> tuple[Any, Any]:
    """(bridge_8's config, its world) in this process, drawing as fast as asked (no pacing
    to real time), each of `stations` (default: all) with its SNSPDs biased and its
    tagger's link inputs streaming; `plan`: more `plan_bridge_world` arguments."""
    from qnetlab.sim_instruments.devices.srs_sim900_quantum_opus import dac_of

    config = load_bridge_config(BRIDGE_8)
    world = build_bridge_world(dataclasses.replace(
        plan_bridge_world(config, folder, seed=3, **plan), lead_s=None), clock="virtual")
    for name, bench in world.station_benches.items():
        if stations is not None and name not in stations:
            continue
        for slot in (1, 2):
            bench.device("snspd").module(slot).set_dac(dac_of(SNSPD_BIAS_A))
        tagger = bench.zmq_devices["tagger"]
        for n in (SYNC_INPUT, *DETECTOR_INPUTS):
            tagger.enabled[n] = tagger.raw_send[n] = True
    return config, world


def switch_now(world: Any, command: str) -> None:
    """A command to `world`'s Polatis twin as its driver sends it, then *OPC? (settled)."""
    switch = world.switch_bench.device(world.plan.switch_instrument)
    switch.handle(command)
    assert switch.handle("*OPC?") == "1"
    assert switch.handle(":SYST:ERR?").startswith("+0,"), "the switch refused the command"
