"""The pattern every role follows.

A role (`MicrowaveSource`, `Laser`, ...) is a QCoDeS `Instrument` that declares the
parameters every instrument of its kind has, in SI units, as *abstract* parameters. A driver
implements a role by inheriting from it and declaring the same parameters concretely with the
same unit; QCoDeS refuses to create a driver that leaves one out, and refuses a wrong unit.

Put the vendor class first and the role last, so the role's abstract declarations run
before the vendor's concrete ones::

    class KeysightN5183B(qcodes_driver.KeysightN51x1, QnetVisaInstrument, MicrowaveSource): ...

Each role also lists `probe` values that the conformance check (`instruments.conformance`)
sets and reads back on any driver, and may add checks of its actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from qcodes.instrument import Instrument

from .errors import InstrumentClosedError


@dataclass(frozen=True)
class RoleParameter:
    name: str
    unit: str
    label: str
    settable: bool = True
    probe: tuple[Any, ...] = ()
    """Values the conformance check sets and reads back (within any sane hardware range)."""
    rel_tolerance: float = 1e-6
    """Read-back agreement the conformance check requires."""

    @property
    def abstract(self) -> bool:
        # QCoDeS compares the unit a driver passes with the abstract one, and a driver that
        # passes no unit (None) never equals the stored "" of a unitless abstract parameter.
        # Unitless parameters (switches, counts) are therefore held by the conformance check
        # only, not by load-time abstraction.
        return bool(self.unit)


@dataclass(frozen=True)
class ChannelParameter:
    """A parameter every channel of a role must have. QCoDeS's channel classes are the
    vendor's, so a role cannot declare these abstract; its conformance check holds them."""

    name: str
    unit: str
    settable: bool = True
    probe: tuple[Any, ...] = ()
    rel_tolerance: float = 1e-6


class ClosedHandleGuard(Instrument):
    """Using a handle after its instrument closed says so, and what to do.

    QCoDeS strips a closed instrument's attributes, so a handle kept from an old station
    (a notebook cell run again loads the config again, which closes the old instruments of
    the same names) would raise a bare "object has no attribute 'power'"."""

    def close(self) -> None:
        name = self.__dict__.get("_closed_name") or self.name  # closed twice: kept
        super().close()
        self.__dict__["_closed_name"] = name

    def __getattr__(self, key: str) -> Any:
        closed = self.__dict__.get("_closed_name")
        if closed is not None and not key.startswith("__"):
            raise InstrumentClosedError(
                f"{closed!r} is closed (its station was closed, or the config was loaded "
                f"again, which closes the old instruments of the same names), so it has no "
                f"{key!r} any more. Use the handle from the station now open, e.g. "
                f"station.instrument({closed!r}) or station.setup")
        return super().__getattr__(key)


class Role(ClosedHandleGuard):
    """Base of the roles: declares `role_parameters` as abstract QCoDeS parameters."""

    role_parameters: ClassVar[tuple[RoleParameter, ...]] = ()
    role_checks: ClassVar[tuple[Callable[[Any], str | None], ...]] = ()
    """Extra conformance checks of the role's actions: each returns None or a failure."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        for spec in self.role_parameters:
            if spec.abstract:
                self.add_parameter(spec.name, unit=spec.unit, label=spec.label, abstract=True)
