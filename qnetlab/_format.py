"""The command line's tables; numbers are formatted by `qnetlab.sequences.si` (the same
formatter as the reports and notebooks)."""

from __future__ import annotations

import math

from qnetlab.sequences.si import format_fit, format_value

__all__ = ["format_fit", "format_value", "seconds_text", "table"]


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), line, *(fmt.format(*r) for r in rows)])


def seconds_text(value: float | None) -> str:
    """A time to 3 significant digits with an SI prefix ('2.15 s', '549 ns'); '' if none."""
    if value is None or not math.isfinite(value):
        return ""
    return format_value(float(f"{value:.3g}"), "s")
