"""Role: a microwave signal generator (the transducer's microwave drive)."""

from __future__ import annotations

from typing import ClassVar

from .role import Role, RoleParameter


class MicrowaveSource(Role):
    """A CW microwave source.

    Parameters: ``frequency`` (Hz), ``power`` (dBm, at the source's output), ``rf_output``
    (bool).
    """

    role_parameters: ClassVar[tuple[RoleParameter, ...]] = (
        RoleParameter("frequency", "Hz", "Frequency", probe=(5.0e9, 8.123456e9)),
        RoleParameter("power", "dBm", "Power", probe=(-10.0, 0.0), rel_tolerance=1e-3),
        RoleParameter("rf_output", "", "RF output", probe=(True, False)),
    )
