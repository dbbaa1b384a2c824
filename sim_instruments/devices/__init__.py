"""Emulators, one per supported instrument model, by the twin name used in lab configs.

Each is imported on first use, so a bench loads only the models it has. An emulator author
builds on `ScpiDevice` (the SCPI engine of `devices.scpi`): handlers declared with `command` in
the manual's notation take the parsed `Args`, `ScpiError` queues an instrument error, and
`fmt` formats a number as instruments reply.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .scpi import Args, ScpiDevice, ScpiError, command, definite_length_block, fmt, no_argument

if TYPE_CHECKING:
    from ..physics.world import LabWorld

_TWINS: dict[str, str] = {
    "keysight_n5183b": "keysight_n5183b:KeysightN5183BEmulator",
    "keysight_n5183b_pump_lock": "keysight_n5183b_pump_lock:KeysightN5183BPumpLockEmulator",
    "santec_tsl570": "santec_tsl570:SantecTSL570Emulator",
    "thorlabs_pm100d": "thorlabs_pm100d:ThorlabsPM100DEmulator",
    "keysight_p9374a": "keysight_p9374a:KeysightP9374AEmulator",
    "lakeshore_372": "lakeshore_372:Lakeshore372Emulator",
    "tektronix_awg5208": "tektronix_awg5208:TektronixAWG5208Emulator",
    "srs_sim900_quantum_opus": "srs_sim900_quantum_opus:SIM900QuantumOpusEmulator",
    "polatis_6000": "polatis_6000:Polatis6000Emulator",
}

_ZMQ_TWINS: dict[str, str] = {
    "idq_id1000": "idq_id1000:IDQuantiqueID1000Emulator",
}
"""Twins whose instrument speaks ZeroMQ, not VISA: the bench holds their emulators but gives
them no VISA endpoint; `sim_instruments.zmq_twins` serves them."""

TWINS = tuple(sorted(_TWINS))
ZMQ_TWINS = tuple(sorted(_ZMQ_TWINS))


def emulator_class(twin: str) -> type[ScpiDevice]:
    """The emulator class of a twin name; KeyError if there is none."""
    module, cls = {**_TWINS, **_ZMQ_TWINS}[twin].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def create_emulator(twin: str, world: LabWorld, name: str) -> ScpiDevice:
    return emulator_class(twin)(world, name)


__all__ = [
    "TWINS",
    "ZMQ_TWINS",
    "Args",
    "ScpiDevice",
    "ScpiError",
    "command",
    "create_emulator",
    "definite_length_block",
    "emulator_class",
    "fmt",
    "no_argument",
]
