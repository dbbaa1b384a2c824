"""Role: a fridge thermometry / temperature controller."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from .role import Role, RoleParameter


def _reads_a_temperature(controller: Any) -> str | None:
    value = controller.temperature()
    if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
        return f"temperature() returned {value!r}, not a positive number of kelvin"
    return None


class TemperatureController(Role):
    """Fridge thermometry.

    Parameters: ``temperature`` (K, read-only): the reading of the sensor the lab config
    names as this controller's (for a dilution fridge, the mixing chamber).
    """

    role_parameters: ClassVar[tuple[RoleParameter, ...]] = (
        RoleParameter("temperature", "K", "Temperature", settable=False),
    )
    role_checks = (_reads_a_temperature,)
