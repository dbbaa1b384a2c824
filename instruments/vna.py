"""Role: a vector network analyzer."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .role import Role, RoleParameter


def _sweeps(vna: Any) -> str | None:
    frequency, s = vna.sweep()
    n = int(vna.points())
    if len(frequency) != n or len(s) != n:
        return f"sweep() returned {len(frequency)} frequencies and {len(s)} points, not {n}"
    if not np.iscomplexobj(s):
        return "sweep() did not return complex S-parameters"
    if abs(frequency[0] - vna.start()) > 1 or abs(frequency[-1] - vna.stop()) > 1:
        return "sweep() frequencies do not span start..stop"
    return None


class VNA(Role):
    """A vector network analyzer measuring one S-parameter trace.

    Parameters: ``start`` and ``stop`` (Hz), ``points``, ``if_bandwidth`` (Hz), ``power``
    (dBm, port power). Action: ``sweep()`` runs one sweep and returns the frequencies (Hz)
    and the complex S-parameter (linear) of the measured trace.
    """

    role_parameters: ClassVar[tuple[RoleParameter, ...]] = (
        RoleParameter("start", "Hz", "Start frequency", probe=(7.9e9, 7.95e9)),
        RoleParameter("stop", "Hz", "Stop frequency", probe=(8.1e9, 8.05e9)),
        RoleParameter("points", "", "Points", probe=(201, 101)),
        RoleParameter("if_bandwidth", "Hz", "IF bandwidth", probe=(1e3, 100.0)),
        RoleParameter("power", "dBm", "Port power", probe=(-20.0, -10.0), rel_tolerance=1e-3),
    )
    role_checks = (_sweeps,)

    def sweep(self) -> tuple[np.ndarray, np.ndarray]:
        """Run one sweep: frequencies (Hz) and complex S-parameter (linear)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement sweep()")
