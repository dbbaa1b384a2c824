"""Numbers with SI prefixes, one formatter for the terminal, the HTML report, figures and
notebooks: ``8 GHz``, ``2.0 ± 0.1 µW``, ``0.0870 ± 0.0021 (stat) ± 0.0040 (sys)``."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_fit", "format_value"]

_PREFIXES = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"),
             (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f")]
_PREFIXED = {"Hz", "W", "s", "m", "K", "A", "V"}
"""Base units that take an SI prefix in a fitted value (not '1/W', 'photons/W', ...)."""


def format_value(value: Any, unit: str) -> str:
    """8000000000.0, 'Hz' -> '8 GHz'; -10.0, 'dBm' -> '-10 dBm'; True -> 'on'. Only an SI
    base unit takes a prefix: 0.159, 'photons' -> '0.159 photons'."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if not isinstance(value, int | float) or not math.isfinite(value):
        return f"{value} {unit}".strip()
    if unit not in _PREFIXED or value == 0:  # '0.16 photons', never '158 mphotons'
        return f"{value:.6g} {unit}".strip()
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale * 0.9995:
            return f"{value / scale:.6g} {prefix}{unit}"
    return f"{value:.6g} {unit}"


def format_fit(value: float, stderr: float, unit: str, sys: float = 0.0) -> str:
    """A fitted value with its one-sigma error on one scale, the error to 2 significant
    digits: (8.0e9, 1514.8, 'Hz') -> '8.0000000 ± 0.0000015 GHz'. With a systematic part
    `sys` of the combined `stderr`, both parts: (0.087, 0.0045, '', sys=0.004) ->
    '0.0870 ± 0.0021 (stat) ± 0.0040 (sys)'."""
    if sys > 0 and math.isfinite(sys) and math.isfinite(stderr) and math.isfinite(value):
        stat = math.sqrt(max(stderr**2 - sys**2, 0.0))
        return _format_two(value, stat, sys, unit)
    if not (math.isfinite(value) and math.isfinite(stderr)) or stderr <= 0:
        return f"{format_value(value, unit)} ± {stderr:.2g}"
    scale, prefix = 1.0, ""
    if unit in _PREFIXED and value != 0:
        scale, prefix = next(((f, p) for f, p in _PREFIXES if abs(value) >= f * 0.9995),
                             _PREFIXES[-1])
    v, e = value / scale, stderr / scale
    decimals = max(0, 1 - math.floor(math.log10(e)))
    if decimals > 12 or abs(v) >= 1e6 or (v != 0 and abs(v) < 1e-3):
        # No sensible fixed point: enough significant digits to show the error's place.
        digits = min(17, max(2, math.floor(math.log10(abs(v))) - math.floor(math.log10(e))
                             + 2)) if v != 0 else 2
        return f"{v:.{digits}g} ± {e:.2g} {prefix}{unit}".rstrip()
    return f"{v:.{decimals}f} ± {e:.{decimals}f} {prefix}{unit}".rstrip()


def _format_two(value: float, stat: float, sys: float, unit: str) -> str:
    """'v ± stat (stat) ± sys (sys) unit', on one scale, to the smaller error's digits."""
    scale, prefix = 1.0, ""
    if unit in _PREFIXED and value != 0:
        scale, prefix = next(((f, p) for f, p in _PREFIXES if abs(value) >= f * 0.9995),
                             _PREFIXES[-1])
    v, s, y = value / scale, stat / scale, sys / scale
    smallest = min(e for e in (s, y) if e > 0) if s > 0 else y
    decimals = max(0, 1 - math.floor(math.log10(smallest)))
    if decimals > 12 or abs(v) >= 1e6 or (v != 0 and abs(v) < 1e-3):
        return f"{v:.6g} ± {s:.2g} (stat) ± {y:.2g} (sys) {prefix}{unit}".rstrip()
    return (f"{v:.{decimals}f} ± {s:.{decimals}f} (stat) ± {y:.{decimals}f} (sys) "
            f"{prefix}{unit}").rstrip()
