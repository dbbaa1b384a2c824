"""Role: an optical power meter."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from .role import Role, RoleParameter


def _reads_a_power(meter: Any) -> str | None:
    value = meter.power()
    if not isinstance(value, float) or not math.isfinite(value):
        return f"power() returned {value!r}, not a finite number of watts"
    return None


class OpticalPowerMeter(Role):
    """An optical power meter.

    Parameters: ``wavelength`` (m, the responsivity correction), ``power`` (W, read-only).
    """

    role_parameters: ClassVar[tuple[RoleParameter, ...]] = (
        RoleParameter("wavelength", "m", "Correction wavelength", probe=(1550e-9, 1310e-9),
                      rel_tolerance=1e-6),
        RoleParameter("power", "W", "Optical power", settable=False),
    )
    role_checks = (_reads_a_power,)
