"""A simulated bench: one physics world and the emulated instruments of a lab config.

The instruments with a ``sim`` address in the config become emulators of that model, all
on the same `LabWorld`. Both transports serve a bench: the in-process VISA backend
(`pyvisa_qnetlab`) and the TCP servers of ``qnetlab sim serve``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from qnetlab.instruments.calibrated_constant import CalibratedConstant
from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import LabConfig, load_config

from .devices import TWINS, ZMQ_TWINS, create_emulator
from .devices.scpi import ScpiDevice
from .faults import Endpoint, FaultPlan
from .physics.clock import Clock, PacedClock, VirtualClock, WallClock
from .physics.drift import LabDrift, drift_settings
from .physics.fridge import FridgeModel
from .physics.presets import PRESETS, get_preset
from .physics.pump_lock import PumpLock, PumpLockSettings
from .physics.transducer import TransducerModel
from .physics.world import IDEAL_DEFAULT, LabWorld, WorldSettings

_SIM_KEYS = {"seed", "ideal", "transducer", "transducer_overrides", "fridge", "world", "clock",
             "link", "pump_lock", "drift"}


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
    ideal = sim.get("ideal", IDEAL_DEFAULT)
    if not isinstance(ideal, bool):
        raise config.error("qnetlab.simulation.ideal", f"expected true or false, got {ideal!r}",
                           "write 'ideal: true' for the clean lab, 'ideal: false' (the "
                           "default) for the realistic (noisy, drifting) lab")
    clock_name = clock or sim.get("clock", "virtual")
    if clock_name not in _CLOCKS:
        raise config.error("qnetlab.simulation.clock", f"unknown clock {clock_name!r}",
                           f"use one of: {', '.join(_CLOCKS)} (default virtual)")
    world = LabWorld(model, fridge, seed=seed, clock=_CLOCKS[clock_name](), settings=settings,
                     ideal=ideal)
    if "drift" in sim:  # this lab's drift amplitudes and times (physics.drift)
        try:
            settings_of_drift = drift_settings(sim["drift"])
        except ValueError as exc:
            raise config.error("qnetlab.simulation.drift", str(exc),
                               "see DriftSettings in sim_instruments/physics/drift.py") from exc
        world.drift = LabDrift(world.rng, settings_of_drift,
                               photorefractive=world.drift.photorefractive)
    if "pump_lock" in sim:  # the lock's truth (physics.pump_lock); its synthesizer engages it
        lock = _dataclass_overrides(config, "qnetlab.simulation.pump_lock", PumpLockSettings,
                                    sim["pump_lock"])
        try:
            world.pump_lock = PumpLock(PumpLockSettings(**lock), world.rng, ideal=ideal)
        except ValueError as exc:
            raise config.error("qnetlab.simulation.pump_lock", str(exc),
                               "give center > 0 Hz, residual_rms >= 0 Hz, residual_tau > 0 s"
                               ) from exc
    if not ideal:
        _draw_calibration_truth(config, world)
    return world


_WORLD_TRUTH = {"mw_line_attenuation": ("world", "mw_line_attenuation_db"),
                "optical_output_loss": ("world", "optical_output_loss_db"),
                "fridge_cooling_coefficient": ("fridge", "cooling_coefficient")}
"""Setup constant -> (qnetlab.simulation section, the simulator's field that is its truth)."""


def _setup_constant(config: LabConfig, name: str) -> CalibratedConstant | None:
    raw = (config.transducer_setup or {}).get(name)
    return None if raw is None else CalibratedConstant.of(raw)


def draw_truth(world: LabWorld, name: str, constant: CalibratedConstant) -> float:
    """The simulator's truth of a calibration constant in the realistic lab: value + error x
    N(0, 1), from the world's generator ``calibration/<name>`` (fixed per seed, differing
    across seeds). The constant's stated value is what the lab believes; the truth is what
    its calibration missed by."""
    if constant.error == 0:
        return constant.value
    return constant.value + constant.error * float(world.rng(f"calibration/{name}")
                                                  .standard_normal())


def _draw_calibration_truth(config: LabConfig, world: LabWorld) -> None:
    """With ``ideal: false``, the simulator's line attenuation, output loss and cooling
    coefficient become truths drawn from the config's stated constants. An explicit
    ``qnetlab.simulation.world`` / ``.fridge`` entry for the same quantity is the truth as
    given (a test's or a rehearsal's deliberate mismatch) and is not drawn."""
    for name, (section, attribute) in _WORLD_TRUTH.items():
        constant = _setup_constant(config, name)
        if constant is None or attribute in (config.simulation.get(section) or {}):
            continue
        truth = draw_truth(world, name, constant)
        if not truth > 0 and attribute == "cooling_coefficient":
            raise config.error(f"qnetlab.transducer_setup.{name}", f"the drawn true value "
                               f"{truth:.3g} is not > 0", "its error is too large for its value")
        if section == "world":
            world.settings = replace(world.settings, **{attribute: truth})
        else:
            world.fridge = replace(world.fridge, **{attribute: truth})


def _draw_detection_truth(config: LabConfig, world: LabWorld,
                          devices: dict[str, ScpiDevice]) -> None:
    """With ``ideal: false``, the setup detector's path collection efficiency is scaled so
    that the end-to-end detection efficiency is the truth drawn from the config's
    ``detection_efficiency`` (the stated value the calibration believes)."""
    constant = _setup_constant(config, "detection_efficiency")
    ref = (config.transducer_setup or {}).get("detector")
    if constant is None or constant.error == 0 or not isinstance(ref, str):
        return
    name, _, channel = ref.partition(".ch")
    module = getattr(devices.get(name), "modules", {}).get(int(channel))
    if module is None:
        return
    truth = draw_truth(world, "detection_efficiency", constant)
    collection = module.path.collection_efficiency * truth / constant.value
    if not 0 < collection <= 1:
        raise config.error("qnetlab.transducer_setup.detection_efficiency",
                           f"the drawn true efficiency {truth:.3g} gives a collection "
                           f"efficiency {collection:.3g} outside (0, 1]",
                           "its error is too large for its value")
    module.path = replace(module.path, collection_efficiency=collection)


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
    if not world.ideal:
        _draw_detection_truth(config, world, {**{n: e.device for n, e in endpoints.items()},
                                              **zmq_devices})
    if config.wiring or link is not None:
        from .wiring import wire_taggers  # only benches with cables need the device modules

        wire_taggers(config, world, {**{n: e.device for n, e in endpoints.items()},
                                     **zmq_devices}, link)
    return SimulatedBench(config, world, endpoints, zmq_devices)
