"""qnetlab: hardware-in-the-loop control for quantum-networking labs.

The command line lives in `qnetlab.cli`; the packages are `instruments` (roles, station
loading, safety), `drivers` (vendor QCoDeS drivers), `sim_instruments` (physics and
emulators), `sequences` and `network`.
"""

__version__ = "0.1.0"
