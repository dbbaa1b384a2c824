"""Role: a tunable CW laser (the transducer's optical pump)."""

from __future__ import annotations

from typing import ClassVar

from .role import Role, RoleParameter


class Laser(Role):
    """A tunable laser.

    Parameters: ``wavelength`` (m, in vacuum), ``power`` (W, at the output), ``output``
    (bool: the shutter / LD current on).
    """

    role_parameters: ClassVar[tuple[RoleParameter, ...]] = (
        RoleParameter("wavelength", "m", "Wavelength", probe=(1550.0e-9, 1550.1234e-9),
                      rel_tolerance=1e-7),
        RoleParameter("power", "W", "Output power", probe=(1e-3, 2e-3), rel_tolerance=1e-3),
        RoleParameter("output", "", "Output", probe=(True, False)),
    )
