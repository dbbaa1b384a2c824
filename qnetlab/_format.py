"""The command line's tables; numbers are formatted by `qnetlab.sequences.si` (the same
formatter as the reports and notebooks)."""

from __future__ import annotations

from qnetlab.sequences.si import format_fit, format_value

__all__ = ["format_fit", "format_value", "table"]


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), line, *(fmt.format(*r) for r in rows)])
