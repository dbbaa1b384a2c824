"""Conformance checks: hold any driver to its role's contract.

`check_conformance(instrument)` returns a `ConformanceReport`; `assert_conforms` raises
with every failure listed. A test runs it on each driver against its simulated twin over
both transports; a lab can run it against a real instrument before trusting a new driver
(probe values are set, so only do that with the instrument safe to drive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from qcodes.parameters import Parameter

from .role import ChannelParameter, Role


@dataclass
class ConformanceReport:
    instrument: str
    roles: list[str]
    failures: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and bool(self.roles)


def _agrees(expected: Any, got: Any, rel: float) -> bool:
    if isinstance(expected, bool):
        return bool(got) is expected
    if isinstance(expected, int | float):
        try:
            return math.isclose(float(got), float(expected), rel_tol=rel, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return bool(got == expected)


def check_conformance(instrument: Any) -> ConformanceReport:
    """Hold `instrument` to its roles. Probed settings are put back as they were found."""
    restore: list[tuple[Parameter, Any]] = []
    try:
        return _check(instrument, restore)
    finally:
        for param, value in reversed(restore):
            try:
                param.set(value)
            except Exception as exc:  # report, but never leave the others unrestored
                instrument.log.warning("could not restore %s to %r: %s", param.full_name,
                                       value, exc)


def _check(instrument: Any, restore: list[tuple[Parameter, Any]]) -> ConformanceReport:
    roles = [c for c in type(instrument).__mro__ if issubclass(c, Role) and "role_parameters"
             in vars(c)]
    report = ConformanceReport(instrument.name, [c.__name__ for c in roles])
    if not roles:
        report.failures.append(f"{type(instrument).__name__} implements no qnetlab role")
        return report
    idn = instrument.get_idn()
    if not idn.get("vendor") or not idn.get("model"):
        report.failures.append(f"*IDN? gave no vendor/model: {idn}")
    for role in roles:
        for spec in role.role_parameters:
            where = f"{role.__name__}.{spec.name}"
            param = instrument.parameters.get(spec.name)
            if not isinstance(param, Parameter):
                report.failures.append(f"{where}: missing")
                continue
            report.checked.append(where)
            if param.unit != spec.unit:
                report.failures.append(f"{where}: unit {param.unit!r}, role says {spec.unit!r}")
            if spec.settable and not param.settable:
                report.failures.append(f"{where}: not settable")
            if spec.settable and param.vals is None:
                report.failures.append(f"{where}: settable without a validator")
            try:
                found = param.get()
            except Exception as exc:
                report.failures.append(f"{where}: get failed: {exc}")
                continue
            if spec.settable and spec.probe:
                restore.append((param, found))
            for value in spec.probe if spec.settable else ():
                try:
                    param.set(value)
                    got = param.get()
                except Exception as exc:
                    report.failures.append(f"{where}: set {value!r} failed: {exc}")
                    continue
                if not _agrees(value, got, spec.rel_tolerance):
                    report.failures.append(f"{where}: set {value!r}, read back {got!r}")
        for check in role.role_checks:
            report.checked.append(f"{role.__name__}.{check.__name__.strip('_')}")
            try:
                problem = check(instrument)
            except Exception as exc:
                problem = f"raised {type(exc).__name__}: {exc}"
            if problem:
                report.failures.append(f"{role.__name__}.{check.__name__.strip('_')}: {problem}")
    return report


def assert_conforms(instrument: Any) -> ConformanceReport:
    report = check_conformance(instrument)
    if not report.ok:
        raise AssertionError(
            f"{report.instrument} ({', '.join(report.roles) or 'no role'}) fails its role:\n  "
            + "\n  ".join(report.failures)
        )
    return report


def check_channel_parameters(
    channels: dict[Any, Any], specs: tuple[ChannelParameter, ...],
    unanswerable: tuple[type[Exception], ...] = (),
) -> str | None:
    """Hold every channel to a role's per-channel parameters: present, right unit, settable
    ones validated and reading back their probe values, read-only ones read-only and readable
    (an exception in `unanswerable` counts as a documented answer). Probed settings are put
    back. Returns None, or the problems found."""
    problems: list[str] = []
    restore: list[tuple[Parameter, Any]] = []
    try:
        for number, channel in channels.items():
            for spec in specs:
                where = f"channel {number}.{spec.name}"
                param = channel.parameters.get(spec.name)
                if not isinstance(param, Parameter):
                    problems.append(f"{where}: missing")
                    continue
                if (param.unit or "") != spec.unit:
                    problems.append(f"{where}: unit {param.unit!r}, role says {spec.unit!r}")
                if not spec.settable:
                    if param.settable:
                        problems.append(f"{where}: settable, role says read-only")
                    try:
                        value = param.get()
                    except unanswerable:
                        continue
                    if spec.unit and not float(value) >= 0.0:
                        problems.append(f"{where}: read {value!r}, expected >= 0")
                    continue
                if not param.settable or param.vals is None:
                    problems.append(f"{where}: not settable with a validator")
                    continue
                restore.append((param, param.get()))
                for value in spec.probe:
                    param.set(value)
                    got = param.get()
                    if not _agrees(value, got, spec.rel_tolerance):
                        problems.append(f"{where}: set {value!r}, read back {got!r}")
    finally:
        for param, value in reversed(restore):
            param.set(value)
    return "; ".join(problems) or None
