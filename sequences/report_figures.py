"""Figures in reports: captions, SI axes, and the histogram-with-fit panel.

A report shows each figure with a caption saying what it shows (not its file name).
`figure_caption` gives one for an analysis's figure from the name it was saved under
(``run<id>_<sequence>_<name>.png``); a report's own figures carry theirs (`ReportFigure`).
`si_axis` puts SI prefixes on an axis (matplotlib's EngFormatter: ``2 µs``, ``10 kHz``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import EngFormatter

__all__ = [
    "FIT_CAPTION",
    "SI_BASE_UNITS",
    "ReportFigure",
    "figure_caption",
    "figure_title",
    "histogram_with_fit",
    "si_axis",
    "split_unit",
]


@dataclass(frozen=True)
class ReportFigure:
    """A figure file (PNG, or SVG shown inline) and what it shows."""

    path: Path
    caption: str


FIT_CAPTION = ("Points with one-sigma error bars; the fitted model with its one-sigma (dark) and "
               "two-sigma (light) confidence bands, propagated from the fit covariance through the "
               "model's Jacobian; below, the residuals divided by each point's error.")
"""What every figure of the shared curve-fitting base (`CurveAnalysis.plot`) shows."""

_CAPTIONS: dict[str, str] = {
    "s11": "Microwave reflection |S11| against frequency around the resonator's resonance. "
           + FIT_CAPTION,
    "resonance": "Converted optical power against the laser's detuning across the optical "
                 "resonance. " + FIT_CAPTION,
    "bandwidth": "Conversion efficiency against microwave detuning (the conversion "
                 "bandwidth). " + FIT_CAPTION,
    "heating": "Noise count rate against the delay after the pump pulse (the pump's "
               "heating and its decay). " + FIT_CAPTION,
    "efficiency": "Detector count rate (light on minus off) against the bias current. "
                  + FIT_CAPTION,
    "correlation": "Cross-correlation histogram of two inputs (pairs per bin against delay) "
                   "with the fitted peak. " + FIT_CAPTION,
    "fit": FIT_CAPTION,
    "map": "Conversion efficiency over pump power and pump detuning as a colour map (left), "
           "and two cuts with the fitted model: against pump power at the resonance "
           "(middle) and against detuning at the highest power (right).",
    "fridge_load": "Mixing-chamber temperature against the pump power, with the fitted "
                   "load model.",
    "added_noise": "Added noise of the transducer against pump power, with the fitted "
                   "model.",
    "dark_counts": "Dark count rate of each detector channel.",
}

_NAME = re.compile(r"^run(?P<run>\d+)_(?P<rest>.+)$")


def figure_caption(path: str | Path, sequence: str = "", run_id: int | None = None) -> str:
    """The caption of an analysis figure saved as ``run<id>_<sequence>_<name>.png``: what
    it shows, by the figure's name, and which run."""
    stem = Path(path).stem
    match = _NAME.match(stem)
    rest = match.group("rest") if match else stem
    if run_id is None and match:
        run_id = int(match.group("run"))
    name = rest[len(sequence) + 1:] if sequence and rest.startswith(f"{sequence}_") else \
        rest.rsplit("_", 1)[-1]
    what = _CAPTIONS.get(name)
    if what is None:  # a figure name with an underscore ("fridge_load")
        what = next((text for key, text in _CAPTIONS.items() if rest.endswith(key)),
                    f"{name.replace('_', ' ')}.")
    label = (sequence or rest).replace("_", " ")
    where = f"{label}, run {run_id}" if run_id is not None else label
    return f"{where}: {what}"


SI_BASE_UNITS = frozenset({"Hz", "W", "s", "m", "K", "A", "V"})
"""Units an axis shows with SI prefixes (not 'dBm', '1/W', 'photons/W', ...)."""

_UNIT = re.compile(r"^(?P<text>.*?)\s*\((?P<unit>[^()]*)\)\s*$")


def split_unit(label: str) -> tuple[str, str]:
    """'noise count rate (Hz)' -> ('noise count rate', 'Hz'); no '(unit)': (label, '')."""
    match = _UNIT.match(label)
    return (match.group("text"), match.group("unit")) if match else (label, "")


def si_axis(axis: Any, unit: str, places: int | None = None) -> None:
    """SI prefixes on the ticks of `axis` (``ax.xaxis``/``ax.yaxis``) for values in the base
    `unit` (``"s"``, ``"Hz"``, ``"W"``): ``2 µs``, never ``2e-06`` or ``uA``."""
    axis.set_major_formatter(EngFormatter(unit=unit, places=places, sep="\N{THIN SPACE}"))


def histogram_with_fit(ax: Any, edges: np.ndarray, counts: np.ndarray, *,
                       unit: str = "s", model: Callable[[np.ndarray], np.ndarray] | None = None,
                       fit_label: str = "fit", mark: dict[str, float] | None = None) -> None:
    """A histogram (`edges` in `unit`) as steps with Poisson error bars, the fitted `model`
    (counts per bin at given bin centres) over it, and vertical lines at `mark` (label ->
    position), on an SI axis."""
    edges = np.asarray(edges, float)
    counts = np.asarray(counts, float)
    centres = 0.5 * (edges[:-1] + edges[1:])
    ax.stairs(counts, edges, color="C0", label="measured")
    seen = counts > 0  # an empty bin's error bar would only hatch the baseline
    ax.errorbar(centres[seen], counts[seen], np.sqrt(counts[seen]), fmt="none", ecolor="C0",
                alpha=0.5, lw=0.8)
    if model is not None:
        fine = np.linspace(edges[0], edges[-1], 600)
        ax.plot(fine, model(fine), "-", color="C1", label=fit_label)
    for i, (label, x) in enumerate((mark or {}).items()):
        ax.axvline(x, color=f"C{i + 2}", ls="--", lw=1.2, label=label)
    si_axis(ax.xaxis, unit)
    ax.set_ylabel("counts per bin")
    ax.legend(fontsize=8)


TITLE_WIDTH = 150
"""Characters per line of a figure's title (at 8 pt it fits a 14-inch figure)."""


def figure_title(text: str, width: int = TITLE_WIDTH) -> str:
    """A figure's title wrapped onto lines, never cut off (a verdict can be long)."""
    import textwrap

    return textwrap.fill(text, width)
