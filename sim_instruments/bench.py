"""A simulated bench: one physics world and the emulated instruments of a lab config.

The instruments with a ``sim`` address in the config become emulators of that model, all
on the same `LabWorld`. Both transports serve a bench: the in-process VISA backend
(`pyvisa_qnetlab`) and the TCP servers of ``qnetlab sim serve``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import LabConfig, load_config

from .devices import TWINS, ZMQ_TWINS, create_emulator
from .devices.scpi import ScpiDevice
from .faults import Endpoint, FaultPlan
from .physics.clock import Clock, PacedClock, VirtualClock, WallClock
from .physics.fridge import FridgeModel
from .physics.presets import PRESETS, get_preset
from .physics.transducer import TransducerModel
from .physics.world import LabWorld, WorldSettings

_SIM_KEYS = {"seed", "transducer", "transducer_overrides", "fridge", "world", "clock", "link"}


@dataclass
class SimulatedBench:
    config: LabConfig
    world: LabWorld
    endpoints: dict[str, Endpoint]
    zmq_devices: dict[str, ScpiDevice] = field(default_factory=dict)
    """Emulators of ZeroMQ instruments (no VISA endpoint; `zmq_twins` serves them)."""

    def device(self, instrument: str) -> ScpiDevice:
        return self.endpoints[instrument].device

    def faults(self, instrument: str) -> FaultPlan:
        return self.endpoints[instrument].faults


def _dataclass_overrides(config: LabConfig, entry: str, cls: type, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    allowed = {f.name for f in fields(cls)} - {"name", "reference", "kind"}
    if not isinstance(raw, dict):
        raise config.error(entry, "expected a mapping", f"keys: {', '.join(sorted(allowed))}")
    for key, value in raw.items():
        if key not in allowed:
            raise config.error(f"{entry}.{key}", f"unknown key '{key}'",
                               f"allowed: {', '.join(sorted(allowed))}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise config.error(f"{entry}.{key}", f"expected a number, got {value!r}",
                               "write the value in SI units")
    return dict(raw)


_CLOCKS: dict[str, type[Clock]] = {"virtual": VirtualClock, "wall": WallClock,
                                   "paced": PacedClock}


def build_world(config: LabConfig, clock: str | None = None) -> LabWorld:
    """The world of a lab config; `clock` overrides the config's (or the default 'virtual')."""
    sim = config.simulation
    for key in sim:
        if key not in _SIM_KEYS:
            raise config.error(f"qnetlab.simulation.{key}", f"unknown key '{key}'",
                               f"allowed: {', '.join(sorted(_SIM_KEYS))}")
    preset_name = sim.get("transducer", "bulk_eo_cw")
    if preset_name not in PRESETS:
        raise config.error("qnetlab.simulation.transducer",
                           f"unknown transducer preset {preset_name!r}",
                           f"choose one of: {', '.join(sorted(PRESETS))}")
    model: TransducerModel = get_preset(preset_name).model
    overrides = _dataclass_overrides(config, "qnetlab.simulation.transducer_overrides",
                                     TransducerModel, sim.get("transducer_overrides"))
    if overrides:
        model = model.with_changes(**overrides)
    fridge = FridgeModel(**_dataclass_overrides(config, "qnetlab.simulation.fridge",
                                                FridgeModel, sim.get("fridge")))
    settings = WorldSettings(**_dataclass_overrides(config, "qnetlab.simulation.world",
                                                    WorldSettings, sim.get("world")))
    seed = sim.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise config.error("qnetlab.simulation.seed", f"expected a whole number >= 0, got "
                           f"{seed!r}", "write e.g. 'seed: 1'")
    clock_name = clock or sim.get("clock", "virtual")
    if clock_name not in _CLOCKS:
        raise config.error("qnetlab.simulation.clock", f"unknown clock {clock_name!r}",
                           f"use one of: {', '.join(_CLOCKS)} (default virtual)")
    return LabWorld(model, fridge, seed=seed, clock=_CLOCKS[clock_name](), settings=settings)


def build_bench(config: LabConfig | str | Path, clock: str | None = None) -> SimulatedBench:
    """The simulated bench of a lab config: its world and one emulator per simulated twin.

    `clock`: 'virtual' (time moves only with acquisitions and explicit waits), 'paced'
    (virtual, but never behind real time: the TCP rehearsal's default) or 'wall'.
    """
    if not isinstance(config, LabConfig):
        config = load_config(config)
    world = build_world(config, clock)
    link = None
    if "link" in config.simulation:  # the simulated link behind a station's tagger
        from .link_config import parse_link  # the link model: only stations with a link

        link = parse_link(config)
    endpoints: dict[str, Endpoint] = {}
    zmq_devices: dict[str, ScpiDevice] = {}
    for name, inst in config.instruments.items():
        twin = inst.addresses.get("sim")
        if twin is None:
            continue
        if twin in ZMQ_TWINS:
            zmq_devices[name] = create_emulator(twin, world, name)
            continue
        if twin not in TWINS:
            raise ConfigError(str(config.path), f"instruments.{name}.address.sim",
                              f"no simulated twin called {twin!r}",
                              f"use one of: {', '.join((*TWINS, *ZMQ_TWINS))}")
        device = create_emulator(twin, world, name)
        endpoints[name] = Endpoint(device, FaultPlan(), device.terminator.encode())
    if config.wiring or link is not None:
        from .wiring import wire_taggers  # only benches with cables need the device modules

        wire_taggers(config, world, {**{n: e.device for n, e in endpoints.items()},
                                     **zmq_devices}, link)
    return SimulatedBench(config, world, endpoints, zmq_devices)
