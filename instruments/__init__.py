"""The instrument layer: roles, conformance checks, lab configs, station loading, safety, errors.

What users and driver authors need is importable from here (``from qnetlab.instruments
import load_station, MicrowaveSource``); the modules hold the rest. Names load on first use
(`__getattr__`), so importing one light thing (an error class, in a network process) does not
import QCoDeS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qnetlab.lazy_exports import lazy_attributes

if TYPE_CHECKING:
    from .awg import AWG, AwgLimits, AwgStep, AwgWaveform, WaveformRejectedError, validate_sequence
    from .conformance import ConformanceReport, assert_conforms, check_conformance
    from .errors import (
        ConfigError,
        InstrumentClosedError,
        InstrumentCommunicationError,
        InstrumentConnectionError,
        InstrumentError,
        InstrumentRefusedError,
        InstrumentReplyError,
        InstrumentReportedError,
        InstrumentTimeoutError,
        InstrumentUnreachableError,
        InterlockError,
        Interrupted,
        LimitsViolatedAfterReconnect,
        QnetlabError,
        SafetyLimitError,
        StopSignal,
        VerdictError,
    )
    from .lab_config import (
        PROFILES,
        InstrumentConfig,
        InterlockConfig,
        LabConfig,
        ParameterConfig,
        Wire,
        check_keys,
        load_config,
    )
    from .laser import Laser
    from .microwave_source import MicrowaveSource
    from .optical_power_meter import OpticalPowerMeter
    from .optical_switch import NoLightError, OpticalSwitch, SwitchPortError
    from .role import ChannelParameter, Role, RoleParameter
    from .safety import (
        Interlock,
        SoftLimits,
        install_interlock,
        install_ramp,
        install_soft_limits,
    )
    from .single_photon_detector import CounterNotConnectedError, SinglePhotonDetector
    from .station import LabStation, load_station
    from .tag_blocks import TagBlock, TagBlockError
    from .temperature_controller import TemperatureController
    from .time_tagger import TagGate, TimeTagger, delay_to_ps, ungated
    from .transducer_setup import TransducerSetup
    from .vna import VNA

_EXPORTS: dict[str, tuple[str, ...]] = {
    # roles, and what a new role is made of
    ".role": ("ChannelParameter", "Role", "RoleParameter"),
    ".awg": ("AWG", "AwgLimits", "AwgStep", "AwgWaveform", "WaveformRejectedError",
             "validate_sequence"),
    ".laser": ("Laser",),
    ".microwave_source": ("MicrowaveSource",),
    ".optical_power_meter": ("OpticalPowerMeter",),
    ".optical_switch": ("NoLightError", "OpticalSwitch", "SwitchPortError"),
    ".single_photon_detector": ("CounterNotConnectedError", "SinglePhotonDetector"),
    ".temperature_controller": ("TemperatureController",),
    ".time_tagger": ("TagGate", "TimeTagger", "delay_to_ps", "ungated"),
    ".tag_blocks": ("TagBlock", "TagBlockError"),
    ".vna": ("VNA",),
    ".transducer_setup": ("TransducerSetup",),
    # holding a driver to its role
    ".conformance": ("ConformanceReport", "assert_conforms", "check_conformance"),
    # lab configs and stations
    ".lab_config": ("PROFILES", "InstrumentConfig", "InterlockConfig", "LabConfig",
                    "ParameterConfig", "Wire", "check_keys", "load_config"),
    ".station": ("LabStation", "load_station"),
    # safety on the parameters (the station installs them from the config)
    ".safety": ("Interlock", "SoftLimits", "install_interlock", "install_ramp",
                "install_soft_limits"),
    # the error tree (see `errors`)
    ".errors": ("ConfigError", "InstrumentClosedError", "InstrumentCommunicationError",
                "InstrumentConnectionError", "InstrumentError", "InstrumentRefusedError",
                "InstrumentReplyError",
                "InstrumentReportedError", "InstrumentTimeoutError",
                "InstrumentUnreachableError", "InterlockError", "Interrupted",
                "LimitsViolatedAfterReconnect", "QnetlabError", "SafetyLimitError",
                "StopSignal", "VerdictError"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "AWG",
    "PROFILES",
    "VNA",
    "AwgLimits",
    "AwgStep",
    "AwgWaveform",
    "ChannelParameter",
    "ConfigError",
    "ConformanceReport",
    "CounterNotConnectedError",
    "InstrumentClosedError",
    "InstrumentCommunicationError",
    "InstrumentConfig",
    "InstrumentConnectionError",
    "InstrumentError",
    "InstrumentRefusedError",
    "InstrumentReplyError",
    "InstrumentReportedError",
    "InstrumentTimeoutError",
    "InstrumentUnreachableError",
    "Interlock",
    "InterlockConfig",
    "InterlockError",
    "Interrupted",
    "LabConfig",
    "LabStation",
    "Laser",
    "LimitsViolatedAfterReconnect",
    "MicrowaveSource",
    "NoLightError",
    "OpticalPowerMeter",
    "OpticalSwitch",
    "ParameterConfig",
    "QnetlabError",
    "Role",
    "RoleParameter",
    "SafetyLimitError",
    "SinglePhotonDetector",
    "SoftLimits",
    "StopSignal",
    "SwitchPortError",
    "TagBlock",
    "TagBlockError",
    "TagGate",
    "TemperatureController",
    "TimeTagger",
    "TransducerSetup",
    "VerdictError",
    "WaveformRejectedError",
    "Wire",
    "assert_conforms",
    "check_conformance",
    "check_keys",
    "delay_to_ps",
    "install_interlock",
    "install_ramp",
    "install_soft_limits",
    "load_config",
    "load_station",
    "ungated",
    "validate_sequence",
]


__getattr__, __dir__ = lazy_attributes(__name__, _MODULE_OF, __all__, globals())
