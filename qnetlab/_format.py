"""Human-readable numbers with SI prefixes for the command line."""

from __future__ import annotations

import math
from typing import Any

_PREFIXES = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"),
             (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f")]
_NO_PREFIX = {"dBm", "dB", "", "%"}


def format_value(value: Any, unit: str) -> str:
    """8000000000.0, 'Hz' -> '8 GHz'; -10.0, 'dBm' -> '-10 dBm'; True -> 'on'."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if not isinstance(value, int | float) or not math.isfinite(value):
        return f"{value} {unit}".strip()
    if unit in _NO_PREFIX or value == 0:
        return f"{value:.6g} {unit}".strip()
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale * 0.9995:
            return f"{value / scale:.6g} {prefix}{unit}"
    return f"{value:.6g} {unit}"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), line, *(fmt.format(*r) for r in rows)])
