"""PyVISA backend entry point: ``visalib="<token>@qnetlab"`` loads this module.

A token names a simulated world registered from a parsed lab config:
``world = pyvisa_qnetlab.register_world(load_config("lab.yaml"))``, then open instruments
with ``visalib=world.visalib`` (`qnetlab.sim_instruments.visa_backend` explains).
"""

from qnetlab.sim_instruments.visa_backend import (
    WRAPPER_CLASS,
    QnetlabVisaLibrary,
    RegisteredWorld,
    register_world,
    registered_world,
)

__all__ = ["WRAPPER_CLASS", "QnetlabVisaLibrary", "RegisteredWorld", "register_world",
           "registered_world"]
