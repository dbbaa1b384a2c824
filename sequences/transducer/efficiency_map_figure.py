"""The efficiency map's colour mesh: eta over pump detuning (symmetric-log axis) and power.

The map is a grid (each pump power scans the same detunings), so it is drawn as cells that
tile the plane (`pcolormesh`), not as markers: each cell spans halfway to its neighbours,
halfway measured on the axis as drawn (symmetric-log detuning, linear power), so the cells
look equal where the points are evenly spaced on the page. A point the run never measured
(an interrupted power) or whose efficiency is not finite is a blank cell. Ticks carry SI
prefixes (``100 MHz``, ``5 mW``), a few per axis so their labels never overlap.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.ticker import EngFormatter, FixedLocator, FuncFormatter, PercentFormatter

__all__ = ["draw_efficiency_mesh", "grid_of", "style_cuts"]

MAX_TICKS = 7
"""Detuning ticks at most (0 and powers of ten, thinned to every n-th decade)."""


def grid_of(p: np.ndarray, d: np.ndarray, eta: np.ndarray,
            detuning_resolution: float = 1e3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(powers, detunings, eta[power, detuning]) from the map's points; detunings within
    `detuning_resolution` (Hz) are one column (the laser's read-back scatters slightly), a
    missing point is NaN."""
    powers = np.unique(p)
    keys = np.round(d / detuning_resolution)
    columns, inverse = np.unique(keys, return_inverse=True)
    detunings = np.array([float(np.mean(d[keys == k])) for k in columns])
    grid = np.full((powers.size, detunings.size), np.nan)
    grid[np.searchsorted(powers, p), inverse] = eta
    return powers, detunings, grid


def _edges(centres: np.ndarray, forward: Any, inverse: Any) -> np.ndarray:
    """Cell edges halfway between neighbours in the drawn coordinate, the outer ones half a
    step beyond (one cell: +- 1 in the drawn coordinate)."""
    t = np.asarray(forward(np.asarray(centres, float)), float)
    if t.size == 1:
        return np.asarray(inverse(np.array([t[0] - 1.0, t[0] + 1.0])), float)
    mid = (t[:-1] + t[1:]) / 2
    edges = np.concatenate([[t[0] - (mid[0] - t[0])], mid, [t[-1] + (t[-1] - mid[-1])]])
    return np.asarray(inverse(edges), float)


def _decade_ticks(lo: float, hi: float, linthresh: float) -> list[float]:
    """0 and +-10^k inside [lo, hi] above the linear range: every n-th decade (counted
    from the largest) so that at most `MAX_TICKS` remain, symmetric about the resonance."""
    top = max(abs(lo), abs(hi), linthresh)
    decades = [10.0**k for k in range(math.ceil(math.log10(linthresh)),
                                      math.floor(math.log10(top)) + 1)]
    per_side = max(1, (MAX_TICKS - 1) // 2)
    every = max(1, math.ceil(len(decades) / per_side))
    kept = decades[::-1][::every]
    return [t for t in sorted({0.0, *kept, *(-x for x in kept)}) if lo <= t <= hi]


def draw_efficiency_mesh(fig: Any, ax: Any, p: np.ndarray, d: np.ndarray, eta: np.ndarray,
                         linthresh: float) -> None:
    """The measured map on `ax`: `p` pump power (W), `d` detuning (Hz), `eta` per point; the
    detuning axis symmetric-log, linear within `linthresh` (Hz); a colour bar for eta."""
    ax.set_title("measured efficiency η", fontsize=9)
    ax.set_xlabel("pump detuning")
    ax.set_ylabel("pump power")
    if not p.size:
        return
    ax.set_xscale("symlog", linthresh=linthresh, linscale=1)
    powers, detunings, grid = grid_of(p, d, eta)
    transform = ax.xaxis.get_transform()
    x_edges = _edges(detunings, transform.transform_non_affine,
                     transform.inverted().transform_non_affine)
    y_edges = _edges(powers, lambda v: v, lambda v: v)
    mesh = ax.pcolormesh(x_edges, np.clip(y_edges, 0.0, None), np.ma.masked_invalid(grid),
                         cmap="viridis", shading="flat")
    bar = fig.colorbar(mesh, ax=ax)
    bar.set_label("conversion efficiency η")
    # eta is a fraction: in percent, not with an SI prefix ("1.6 m" reads as metres)
    bar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ticks = _decade_ticks(float(x_edges[0]), float(x_edges[-1]), linthresh)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.xaxis.set_major_formatter(EngFormatter(unit="Hz", sep="\N{THIN SPACE}"))
    ax.yaxis.set_major_formatter(EngFormatter(unit="W", sep="\N{THIN SPACE}"))
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)


def style_cuts(ax_p: Any, ax_d: Any, linthresh_hz: float, detuning_scale: float = 1e6) -> None:
    """The two cuts' axes: eta in percent; the detuning cut (drawn in units of
    `detuning_scale` Hz, symmetric-log) with a few SI-labelled ticks that never overlap."""
    for ax in (ax_p, ax_d):
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.set_ylabel("conversion efficiency η")
    lo, hi = ax_d.get_xlim()
    if ax_d.get_xscale() == "symlog":
        ax_d.xaxis.set_major_locator(FixedLocator(
            _decade_ticks(lo, hi, linthresh_hz / detuning_scale)))
        ax_d.xaxis.set_minor_locator(FixedLocator([]))
    eng = EngFormatter(unit="Hz", sep="\N{THIN SPACE}")
    ax_d.xaxis.set_major_formatter(FuncFormatter(lambda v, _: eng(v * detuning_scale)))
    ax_d.set_xlabel("pump detuning")
    ax_d.tick_params(axis="x", labelrotation=30, labelsize=8)
