"""`qnetlab check`: connect to a station and print what every instrument says."""

from __future__ import annotations

from typing import Any

from qnetlab.instruments.conformance import check_conformance
from qnetlab.instruments.role import Role
from qnetlab.instruments.station import load_station

from ._format import format_value, table


def _role_of(inst: Any) -> tuple[str, list[str]]:
    roles = [c for c in type(inst).__mro__ if issubclass(c, Role) and "role_parameters" in
             vars(c)]
    if not roles:
        return "-", []
    return roles[0].__name__, [p.name for r in roles for p in r.role_parameters]


def run_check(config: str, profile: str, conformance: bool = False) -> int:
    failures: list[str] = []
    with load_station(config, profile) as station:
        print(f"station {station.lab_config.path} (profile {profile})\n")
        failures += station.outside_limits
        rows = []
        for name, inst in station.instruments().items():
            if inst is station.setup:
                continue
            idn = inst.get_idn()
            if not idn.get("vendor") or not idn.get("model"):
                failures.append(f"{name}: *IDN? gave no identity ({idn})")
            identity = " ".join(str(idn.get(k) or "") for k in ("vendor", "model", "serial",
                                                                 "firmware")).strip()
            role, keys = _role_of(inst)
            if not keys:  # a role held per channel (detectors, taggers): identity only
                rows.append([name, role, identity, "(per channel)", ""])
            for i, key in enumerate(keys):
                param = inst.parameters[key]
                try:
                    value = format_value(param.get(), getattr(param, "unit", ""))
                except Exception as exc:
                    value = f"FAILED: {exc}"
                    failures.append(f"{name}.{key}: {exc}")
                rows.append([name if i == 0 else "", role if i == 0 else "",
                             identity if i == 0 else "", key, value])
        print(table(rows, ["instrument", "role", "identity", "parameter", "value"]))
        if station.setup is not None:
            setup = station.setup
            rows = []
            for key in ("pump_power", "pump_on", "pump_detuning", "mw_frequency", "mw_power",
                        "mxc_temperature", "optical_power"):
                param = setup.parameters[key]
                rows.append([key, format_value(param.get(), getattr(param, "unit", ""))])
            print("\ntransducer setup\n" + table(rows, ["quantity", "value"]))
        if conformance:
            print()
            for name, inst in station.instruments().items():
                if inst is station.setup:
                    continue
                report = check_conformance(inst)
                verdict = "conforms" if report.ok else "FAILS"
                print(f"{name}: {verdict} ({len(report.checked)} checks)")
                failures += [f"{name}: {f}" for f in report.failures]
    if failures:
        print("\nproblems:\n  " + "\n  ".join(failures))
        return 1
    return 0
