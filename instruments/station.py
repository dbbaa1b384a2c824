"""Loading a lab's station from its config, for a profile.

``load_station("lab_configs/transducer_bench.yaml", profile="sim")`` connects every
instrument to its simulated twin through the in-process VISA backend; ``profile="real"``
connects the same drivers to the real addresses (or, for the hardware-in-the-loop
rehearsal, to ``qnetlab sim serve`` on 127.0.0.1). Switching is configuration, never code.

In the ``sim`` profile the station registers its simulated world once, from the config it
already parsed, with the backend named ``qnetlab`` (`_register_world`: PyVISA imports the
plugin `pyvisa_qnetlab`, so this package does not import the simulator); the instruments
then open ``visalib="<token>@qnetlab"`` and the backend finds the world by its token. The
station is given a lab clock (`LabStation.clock`, `lab_clock.LabClock`): the world's clock
in the ``sim`` profile (virtual by default), real time in the ``real`` profile.

An instrument whose driver is not a VISA instrument (the ID1000 time tagger, over ZeroMQ)
gets, in the ``sim`` profile, its twin's servers started on 127.0.0.1 on free ports, on the
same simulated bench as the station's VISA twins; the station stops them when it closes. They
are started through the same backend (`simulation_backend().serve_twin`), keyed by the twin
name, so configuration alone selects the simulator.

``qnetlab.wiring`` (tagger input -> detector channel or AWG marker) feeds each wired
detector's ``count_rate`` from the tagger's counter on its input, in every profile.

Loading an instrument whose name is already taken closes the old one first, so re-running
a notebook cell works. What the config alone can show is refused before anything connects
(in the sim profile, the simulated lab too: see `_check_before_connecting`). If any
instrument fails, the ones already opened are closed again and the error names the file,
the entry and the fix: a `ConfigError` for the config, an `InstrumentUnreachableError` (the
address, what was sent) for an instrument that cannot be reached or makes no sense.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from pyvisa.errors import VisaIOError
from pyvisa.highlevel import get_wrapper_class
from qcodes.instrument import Instrument, InstrumentChannel, VisaInstrument
from qcodes.parameters import Parameter
from qcodes.station import Station

from .errors import (
    ConfigError,
    InstrumentTimeoutError,
    InstrumentUnreachableError,
    QnetlabError,
)
from .lab_clock import LabClock, RealTimeClock
from .lab_config import PROFILES, InstrumentConfig, LabConfig, load_config
from .laser import Laser
from .microwave_source import MicrowaveSource
from .optical_power_meter import OpticalPowerMeter
from .safety import install_interlock, install_ramp, install_soft_limits
from .single_photon_detector import CounterNotConnectedError, SinglePhotonDetector
from .temperature_controller import TemperatureController
from .transducer_setup import TransducerSetup
from .vna import VNA

log = logging.getLogger(__name__)


SIM_BACKEND = "qnetlab"
"""The PyVISA backend of the ``sim`` profile (the plugin module `pyvisa_qnetlab`)."""


class SimulatedWorld(Protocol):
    """What the station needs of a world registered with the simulated backend."""

    @property
    def token(self) -> str: ...
    @property
    def visalib(self) -> str:
        """``"<token>@qnetlab"``: the VISA library name its instruments open."""
        ...
    @property
    def clock(self) -> LabClock: ...


class LabStation(Station):
    """A QCoDeS `Station` that knows its lab config, its profile and its lab clock."""

    def __init__(self, config: LabConfig, profile: str, clock: LabClock,
                 world: SimulatedWorld | None = None) -> None:
        super().__init__()
        self.lab_config = config  # QCoDeS's Station.config is its own StationConfig
        self.profile = profile
        self.clock = clock
        """The lab clock the station was given (module docstring)."""
        self.world = world
        """The registered simulated world (sim profile), else None."""
        self.setup: TransducerSetup | None = None
        self.outside_limits: list[str] = []
        """Parameters found outside their soft limits at load (left as found)."""
        self.servers: dict[str, Callable[[], None]] = {}
        """Instrument name -> stop function of its simulated ZeroMQ twin's servers."""

    def sleep(self, seconds: float) -> None:
        """Let lab time pass on the station's clock: virtual (instant) on the simulated
        bench, real otherwise."""
        self.clock.sleep(seconds)

    def instrument(self, name: str) -> Any:
        return self.components[name]

    def instruments(self) -> dict[str, Instrument]:
        return {k: v for k, v in self.components.items() if isinstance(v, Instrument)}

    def close(self) -> None:
        if self.setup is not None:
            self.setup.close()
        for inst in self.instruments().values():
            if inst is not self.setup:
                inst.close()
        for name in list(self.components):
            self.remove_component(name)
        _stop_servers(self.servers)

    def __enter__(self) -> LabStation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _driver_class(config: LabConfig, inst: InstrumentConfig) -> type[Instrument]:
    module_name, _, class_name = inst.type.rpartition(".")
    entry = f"instruments.{inst.name}.type"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise config.error(entry, f"cannot import {module_name!r} ({exc})",
                           "check the spelling; qnetlab's drivers live in drivers.<vendor>") \
            from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Instrument)):
        names = [n for n, v in vars(module).items()
                 if isinstance(v, type) and issubclass(v, Instrument)]
        raise config.error(entry, f"{module_name} has no instrument class {class_name!r}",
                           f"use one of: {', '.join(names) or 'none found'}")
    return cls


def _stop_servers(servers: dict[str, Callable[[], None]]) -> None:
    while servers:
        _, stop = servers.popitem()
        try:
            stop()
        except Exception:  # one stuck server must not keep the others running
            log.exception("stopping a simulated instrument server failed")


def simulation_backend() -> Any:
    """The simulated lab's entry points (`register_world`, `serve_twin`),
    reached through PyVISA by the backend's name: configuration (the ``sim`` profile)
    selects the simulator, and no core package imports it."""
    return get_wrapper_class(SIM_BACKEND)


def _register_world(config: LabConfig, sim_session: str | None) -> SimulatedWorld:
    """Register the simulated world of `config` (parsed once, by the caller) with the
    ``qnetlab`` VISA backend, reached through PyVISA by that name, so that configuration
    alone selects the simulator and this package never imports it. The backend builds the
    bench (refusing, with a `ConfigError`, a simulated lab the config cannot build) and
    returns its token, VISA library name and clock. `sim_session`: see `load_station`."""
    world: SimulatedWorld = simulation_backend().register_world(config, sim_session)
    return world


def _serve_zmq_twin(config: LabConfig, inst: InstrumentConfig, twin: str, visalib: str,
                    servers: dict[str, Callable[[], None]]) -> tuple[str, dict[str, Any]]:
    """Start the ZeroMQ twin of `inst` on the station's bench; its address and driver
    arguments."""
    try:
        served = simulation_backend().serve_twin(visalib, inst.name, twin)
    except KeyError as exc:
        raise config.error(f"instruments.{inst.name}.address.sim", str(exc.args[0]),
                           "name the ZeroMQ twin of this driver") from None
    servers[inst.name] = served.close
    return served.address, served.driver_kwargs


def _connect(config: LabConfig, inst: InstrumentConfig, profile: str,
             world: SimulatedWorld | None,
             servers: dict[str, Callable[[], None]]) -> Instrument:
    cls = _driver_class(config, inst)
    entry = f"instruments.{inst.name}.address"
    address = inst.addresses.get(profile)
    if address is None:
        raise config.error(entry, f"no '{profile}' address",
                           f"add '{profile}:' under address, or use --profile "
                           f"{'real' if profile == 'sim' else 'sim'}")
    kwargs: dict[str, Any] = dict(inst.init)
    is_visa = issubclass(cls, VisaInstrument)
    if Instrument.exist(inst.name):
        Instrument.find_instrument(inst.name).close()
    if not is_visa:
        # E.g. ZeroMQ: no visalib; real profile: the config's address as it stands.
        resource = address
        if world is not None:
            resource, twin_kwargs = _serve_zmq_twin(config, inst, address, world.visalib,
                                                    servers)
            kwargs.update(twin_kwargs)
    elif world is not None:
        kwargs["visalib"] = world.visalib
        resource = f"TCPIP0::{inst.name}::{address}::INSTR"
    else:
        kwargs.setdefault("visalib", "@py")
        resource = address
    try:
        driver: Any = cls  # drivers take `address`; the base `Instrument` does not
        return driver(inst.name, address=resource, **kwargs)
    except ConfigError:  # from the simulated bench: an unknown twin or preset
        raise
    except (TypeError, ValueError) as exc:
        if not _from_instrument(exc):
            # A driver refusing its arguments raises these before any I/O is attempted.
            raise config.error(f"instruments.{inst.name}.init", f"{cls.__name__} refused "
                               f"the init arguments ({_describe(exc)})", "check the names "
                               "and values against the driver's docstring") from None
        raise _unreachable(config, f"{entry}.{profile}", f"{address} answered, but "
                           f"{cls.__name__} could not use the reply ({_describe(exc)})",
                           "check " + _wrong_model_fix(cls)) from exc
    except InstrumentTimeoutError as exc:
        raise _unreachable(config, f"{entry}.{profile}", f"{address} accepted the "
                           f"connection but did not answer ({_describe(exc)})",
                           "check the instrument is on and not busy, "
                           + _wrong_model_fix(cls)) from exc
    except (OSError, VisaIOError) as exc:
        fix = ("start the simulated instruments with `qnetlab sim serve "
               f"{config.path}`, or check the address" if profile == "real" else
               "check the twin name")
        raise _unreachable(config, f"{entry}.{profile}", f"could not connect to {address} "
                           f"({type(exc).__name__}: {exc})", fix) from exc
    except Exception as exc:  # connected, but the instrument's replies made no sense
        raise _unreachable(config, f"{entry}.{profile}", f"{address} connected, but "
                           f"{cls.__name__} could not set it up ({type(exc).__name__}: "
                           f"{_describe(exc)})", "check " + _wrong_model_fix(cls)) from exc


_IO_CONTEXTS = ("asking ", "writing ", "getting ")
"""How QCoDeS's ``ask``/``write`` and a parameter's ``get`` prefix the context they add to
an exception's args ("asking '*OPT?' to <...>", "getting vna_active_trace"). A TypeError or
ValueError carrying one came out of an exchange with the instrument (a reply that would not
parse), not from the driver's arguments; a ``setting ...`` context is a validator refusing a
value, which is the config's business."""


def _from_instrument(exc: BaseException) -> bool:
    return any(isinstance(a, str) and a.startswith(_IO_CONTEXTS) for a in exc.args[1:])


def _describe(exc: BaseException) -> str:
    """An exception's message with QCoDeS's context (what was sent) in brackets, on one line,
    instead of the raw args tuple."""
    if not exc.args:
        return type(exc).__name__
    first, *context = (str(a) for a in exc.args)
    return first + (f" [{'; '.join(context)}]" if context else "")


def _wrong_model_fix(cls: type) -> str:
    return (f"that the address names a {cls.__name__} (the model the driver expects) and "
            "that it uses the terminator the driver sends")


def _unreachable(config: LabConfig, entry: str, problem: str,
                 fix: str) -> InstrumentUnreachableError:
    return InstrumentUnreachableError(str(config.path), entry, problem, fix)


def _apply_parameter_config(config: LabConfig, inst: InstrumentConfig, driver: Instrument,
                            sleep: Callable[[float], None]) -> list[str]:
    """Install the config's limits, ramps and initial values; return what lies outside its
    limits. Values found outside are reported, not changed: moving an instrument nobody
    asked to move (a pump laser, say) at connect would be a surprise."""
    outside: list[str] = []
    for pname, spec in inst.parameters.items():
        entry = f"instruments.{inst.name}.parameters.{pname}"
        param = driver.parameters.get(pname)
        if not isinstance(param, Parameter):
            raise config.error(entry, f"{type(driver).__name__} has no parameter {pname!r}",
                               f"use one of: {', '.join(sorted(driver.parameters))}")
        if spec.limits is not None:
            try:
                install_soft_limits(param, *spec.limits, source=f"{config.path} ({entry})")
            except ValueError as exc:
                raise config.error(f"{entry}.limits", str(exc),
                                   "keep the soft limits inside the hardware range") from None
        if spec.ramp_rate is not None:
            install_ramp(param, spec.ramp_rate, sleep)
        if spec.initial_value is not None:
            try:
                param.set(spec.initial_value)
            except (ValueError, TypeError) as exc:
                raise config.error(f"{entry}.initial_value", f"{spec.initial_value!r} was "
                                   f"refused ({exc})", "give a value inside the limits, in "
                                   "the parameter's unit, as a plain number") from None
        elif spec.limits is not None:
            value = param.get()
            low, high = spec.limits
            if isinstance(value, int | float) and not low <= value <= high:
                unit = f" {param.unit}" if param.unit else ""
                outside.append(f"{param.full_name} is {value:g}{unit}, outside its soft limits "
                               f"[{low:g}, {high:g}]{unit} ({config.path}: {entry}); set it "
                               "inside them before use, or give an initial_value")
    return outside


def load_station(config: str | Path | LabConfig, profile: str = "sim", *,
                 sim_session: str | None = None) -> LabStation:
    """Connect every instrument of a lab config for `profile` ('sim' or 'real').

    `sim_session` (sim profile only): loads of the same config file with the same session
    string share one simulated bench (world, instrument states, hidden parameters), so a
    station can be closed and opened again on the same physics; None (the default) gives
    every load a fresh bench.

    The config is parsed once, here. In the sim profile its simulated world is registered
    with the ``qnetlab`` VISA backend (`_register_world`) before anything connects; the
    station's clock (`LabStation.clock`) is that world's, else real time.
    """
    if not isinstance(config, LabConfig):
        config = load_config(config)
    if profile not in PROFILES:
        raise ConfigError(str(config.path), "", f"unknown profile {profile!r}",
                          f"use one of: {', '.join(PROFILES)}")
    if sim_session is not None and (not sim_session or "@" in sim_session):
        raise ValueError(f"sim_session {sim_session!r}: give a non-empty string without '@' "
                         "(it becomes part of the simulated VISA library's name)")
    opened: dict[str, Instrument] = {}
    servers: dict[str, Callable[[], None]] = {}
    _check_before_connecting(config, profile)
    world = _register_world(config, sim_session) if profile == "sim" else None
    clock: LabClock = world.clock if world is not None else RealTimeClock()
    try:
        with _qcodes_connect_log_quieted():
            for name, inst in config.instruments.items():
                opened[name] = _connect(config, inst, profile, world, servers)
        sleep = clock.sleep
        station = LabStation(config, profile, clock, world)
        station.servers = servers
        _wire_counters(config, opened)
        for name, inst in config.instruments.items():
            station.outside_limits += _apply_parameter_config(config, inst, opened[name], sleep)
            station.add_component(opened[name], update_snapshot=False)
        for lock in config.interlocks:
            params = [_parameter(config, opened, ref, lock.name) for ref in lock.guards]
            sensor = _parameter(config, opened, lock.sensor, lock.name)
            for param in params:
                install_interlock(param, sensor, lock.maximum, lock.name, str(config.path))
        if config.transducer_setup:
            station.setup = _build_setup(config, opened)
            # In the snapshot, so every run records the calibration constants it used.
            station.add_component(station.setup, update_snapshot=False)
        for problem in station.outside_limits:
            log.warning(problem)
    except BaseException:
        for driver in opened.values():
            driver.close()
        _stop_servers(servers)
        raise
    return station


def _check_before_connecting(config: LabConfig, profile: str) -> None:
    """Refuse what can be refused before any instrument is touched: a driver class that does
    not exist, a missing address for the profile. (In the sim profile the simulated lab
    itself, ``qnetlab.simulation``, the twin names and the wiring, is checked next, when
    `_register_world` builds it, still before anything connects.)"""
    for inst in config.instruments.values():
        _driver_class(config, inst)
        if profile not in inst.addresses:
            raise config.error(f"instruments.{inst.name}.address", f"no '{profile}' address",
                               f"add '{profile}:' under address, or use --profile "
                               f"{'real' if profile == 'sim' else 'sim'}")


class _QcodesConnectNoise(logging.Filter):
    """QCoDeS logs a full traceback when a VISA resource fails to open ("Could not connect
    at ...") and when ``*IDN?`` fails in its connect message; the station re-raises the first
    with its cause named, and recovers from the second. Drop the first; keep the second as
    one line with the exception's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Could not connect at" in message:
            return False
        if "Error getting or interpreting *IDN?" in message and record.exc_info:
            exc = record.exc_info[1]
            record.msg, record.args = f"{message} ({_describe(exc) if exc else ''})", None
            record.exc_info, record.exc_text = None, None
        return True


_QCODES_CONNECT_LOGGERS = ("qcodes.instrument.instrument_base",
                           "qcodes.instrument.instrument_base.com.visa")


@contextlib.contextmanager
def _qcodes_connect_log_quieted() -> Iterator[None]:
    noise = _QcodesConnectNoise()
    loggers = [logging.getLogger(name) for name in _QCODES_CONNECT_LOGGERS]
    for logger in loggers:
        logger.addFilter(noise)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(noise)


TAGGER_COUNTER_WINDOW_S = 1.0
"""s: the integration window of a tagger input's ``counts`` (the ID1000's
INPUt<n>:COUNter:INTEgrationtime, 1000 ms at reset). The loader does not change it; a lab
that does must scale the detector's ``count_rate`` accordingly."""


class _TaggerCounter:
    """A detector's ``counter`` hook: slot -> Hz from the tagger input it is cabled to."""

    def __init__(self, tagger: Any, inputs: dict[int, int], detector: str) -> None:
        self.tagger = tagger
        self.inputs = inputs
        """Detector slot -> tagger input."""
        self.detector = detector

    def __call__(self, slot: int) -> float:
        n = self.inputs.get(slot)
        if n is None:
            raise CounterNotConnectedError(
                f"{self.detector} slot {slot} is not cabled to {self.tagger.name}. Fix: add "
                f"it under qnetlab.wiring.{self.tagger.name}")
        channel = self.tagger.tagger_channels[n]
        if not channel.enabled():
            # A disabled input counts nothing: 0 Hz would read as a dead detector.
            raise CounterNotConnectedError(
                f"{self.detector} slot {slot} is counted on {self.tagger.name} input {n}, "
                f"which is disabled. Fix: {self.tagger.name}.input{n}.enabled(True)")
        return float(channel.counts()) / TAGGER_COUNTER_WINDOW_S


def _wire_counters(config: LabConfig, opened: dict[str, Instrument]) -> None:
    """Give each detector cabled to a tagger a ``counter`` hook on that tagger's inputs."""
    hooks: dict[str, _TaggerCounter] = {}
    for tagger_name, wires in config.wiring.items():
        entry = f"qnetlab.wiring.{tagger_name}"
        tagger: Any = opened[tagger_name]
        channels = getattr(tagger, "tagger_channels", None)
        if channels is None:
            raise config.error(entry, f"'{tagger_name}' ({type(tagger).__name__}) is not a "
                               "time tagger", "key the wiring by a time tagger's name")
        for n, wire in wires.items():
            if n not in channels:
                raise config.error(f"{entry}.{n}", f"{tagger_name} has no input {n}",
                                   f"use one of: {', '.join(map(str, sorted(channels)))}")
            detector: Any = opened[wire.instrument]
            if wire.marker is not None or not hasattr(detector, "counter"):
                continue  # a marker, or a source without a counter hook: nothing to feed
            if wire.channel not in detector.detector_channels:
                raise config.error(f"{entry}.{n}", f"{wire.instrument} has no channel "
                                   f"{wire.channel}", "use one of: " + ", ".join(
                                       map(str, sorted(detector.detector_channels))))
            hook = hooks.get(wire.instrument)
            if hook is None or hook.tagger is not tagger:
                if hook is not None:
                    raise config.error(f"{entry}.{n}", f"{wire.instrument} is already "
                                       f"counted on {hook.tagger.name}",
                                       "count one detector's channels on one tagger")
                if detector.counter is not None:
                    continue  # the lab gave its own counter (init): leave it
                hook = hooks[wire.instrument] = _TaggerCounter(tagger, {}, wire.instrument)
                detector.counter = hook
            hook.inputs[wire.channel] = n


def _parameter(config: LabConfig, opened: dict[str, Instrument], ref: str, lock: str) -> Any:
    inst, _, pname = ref.partition(".")
    param = opened[inst].parameters.get(pname)
    if param is None:
        raise config.error(f"qnetlab.interlocks ({lock})", f"{inst} has no parameter {pname!r}",
                           f"use one of: {', '.join(sorted(opened[inst].parameters))}")
    return param


_SETUP_ROLES: dict[str, type] = {
    "pump_laser": Laser, "mw_source": MicrowaveSource, "vna": VNA,
    "power_meter": OpticalPowerMeter, "fridge": TemperatureController,
}


def _build_setup(config: LabConfig, opened: dict[str, Instrument]) -> TransducerSetup:
    spec = dict(config.transducer_setup or {})
    members = {role: opened[spec.pop(role)] for role in _SETUP_ROLES}
    if "pump_lock" in spec:  # optional: the RF source of the pump's offset lock
        members["pump_lock"] = opened[spec.pop("pump_lock")]
    detector = spec.pop("detector", None)
    if detector is not None:
        spec["detector"] = _detector_channel(config, opened, detector)
    for role, member in members.items():
        if not isinstance(member, _SETUP_ROLES.get(role, MicrowaveSource)):
            raise config.error(f"qnetlab.transducer_setup.{role}",
                               f"'{member.name}' ({type(member).__name__}) is not a "
                               f"{_SETUP_ROLES.get(role, MicrowaveSource).__name__}",
                               f"name an instrument whose driver implements "
                               f"{_SETUP_ROLES.get(role, MicrowaveSource).__name__}")
    name = "transducer"
    if Instrument.exist(name):
        Instrument.find_instrument(name).close()
    try:
        return TransducerSetup(name, **members, **spec)  # type: ignore[arg-type]
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        raise config.error("qnetlab.transducer_setup", f"cannot build the setup: {exc}",
                           "each role must name an instrument whose driver implements it") \
            from exc


def _detector_channel(config: LabConfig, opened: dict[str, Instrument],
                      ref: str) -> InstrumentChannel[Any]:
    entry = "qnetlab.transducer_setup.detector"
    name, _, channel = ref.partition(".ch")
    driver = opened[name]
    if not isinstance(driver, SinglePhotonDetector):
        raise config.error(entry, f"'{name}' ({type(driver).__name__}) is not a "
                           "SinglePhotonDetector", "name a detector instrument's channel")
    channels = driver.detector_channels
    if int(channel) not in channels:
        raise config.error(entry, f"'{name}' has no channel {channel}",
                           f"use one of: {', '.join(f'{name}.ch{n}' for n in channels)}")
    return channels[int(channel)]


__all__ = ["LabStation", "QnetlabError", "load_station"]
