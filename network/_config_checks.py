"""The checks every network and bridge config entry goes through: a number in its unit, a
fraction, a whole number, a process name, a ``tcp://HOST:PORT`` address, a tagger input, a
mapping. Each refuses a bad value with a `ConfigError` naming the file, the entry and the fix."""

from __future__ import annotations

import math
import re
from typing import Any

from qnetlab.instruments.errors import ConfigError

__all__ = ["MAX_TAGGER_INPUT", "checked_address", "checked_fraction", "checked_input",
           "checked_mapping", "checked_name", "checked_number", "checked_whole",
           "optional_address", "optional_positive"]

MAX_TAGGER_INPUT = 64
"""Largest tagger input number accepted (the ID1000 has 4; other taggers up to tens)."""

_ADDRESS = re.compile(r"^tcp://(?P<host>[A-Za-z0-9.\-]+|\*):(?P<port>\d{1,5})$")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def checked_number(file: str, entry: str, value: Any, unit: str, *, zero_ok: bool = False
                   ) -> float:
    """`value` as a float, finite and > 0 (>= 0 with `zero_ok`), else a ConfigError naming
    `entry` of `file` and the fix (write it in `unit`)."""
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value)):
        raise ConfigError(file, entry, f"expected a number, got {value!r}",
                          f"write a plain number in {unit}")
    if value < 0 or (value == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigError(file, entry, f"must be {bound}, got {value!r}",
                          f"write a value {bound} in {unit}")
    return float(value)


def checked_fraction(file: str, entry: str, value: Any) -> float:
    """`value` in 0..1 (a probability or efficiency), else a ConfigError as `checked_number`."""
    number = checked_number(file, entry, value, "the range 0..1", zero_ok=True)
    if number > 1:
        raise ConfigError(file, entry, f"must be between 0 and 1, got {value!r}",
                          "write a probability or efficiency as a fraction, e.g. 0.9 not 90")
    return number


def checked_whole(file: str, entry: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(file, entry, f"expected a whole number >= {minimum}, got {value!r}",
                          f"write an integer >= {minimum}")
    return value


def checked_name(file: str, entry: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(file, entry, f"{value!r} is not a usable process name",
                          "use letters, digits, '_' or '-', starting with a letter "
                          "(it names the CURVE key files)")
    return value


def checked_address(file: str, entry: str, value: Any) -> str:
    match = _ADDRESS.match(value) if isinstance(value, str) else None
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ConfigError(file, entry, f"{value!r} is not a tcp address",
                          "write tcp://HOST:PORT, e.g. tcp://127.0.0.1:29101 (ipc is not "
                          "supported: it lost the tail of streams at close, libzmq #4660)")
    if match["host"] == "*":
        raise ConfigError(file, entry, "binding every interface is refused",
                          "name the host's address, e.g. tcp://127.0.0.1:PORT on one "
                          "machine or tcp://<lab LAN address>:PORT across hosts")
    return str(value)


def optional_address(file: str, entry: str, spec: dict[str, Any]) -> str | None:
    """The address under `entry`'s last key in `spec`, checked; None when not written."""
    value = spec.get(entry.rpartition(".")[2])
    return None if value is None else checked_address(file, entry, value)


def optional_positive(file: str, entry: str, value: Any, unit: str) -> float | None:
    """A value > 0 in `unit`, or None when not written."""
    return None if value is None else checked_number(file, entry, value, unit)


def checked_input(file: str, entry: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not \
            1 <= value <= MAX_TAGGER_INPUT:
        raise ConfigError(file, entry, f"{value!r} is not a tagger input",
                          f"write the input's number, 1..{MAX_TAGGER_INPUT} (the ID1000's "
                          "are 1-4)")
    return value


def checked_mapping(file: str, entry: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(file, entry, f"expected a mapping, got {type(value).__name__}",
                          "write it as 'key: value' lines")
    return dict(value)
