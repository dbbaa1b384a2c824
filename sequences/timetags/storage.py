"""Raw time tags stored in a run's dataset and read back: the columns a timing sequence
declares, the rows one acquisition adds, the stored acquisitions as `TagBlock`s again, and
one correlation histogram summed over them."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import StoredRun
from ..framework import DatasetParameter
from .blocks import TagBlock
from .correlation import Correlation, correlate

TAG_COLUMNS = [
    DatasetParameter("tag", "", "Tag index"),
    DatasetParameter("timestamp", "ps", "Tag time from the start of its acquisition", ("tag",)),
    DatasetParameter("tag_input", "", "Tagger input of the tag", ("tag",)),
    DatasetParameter("acquisition", "", "Acquisition the tag belongs to", ("tag",)),
]


def tag_rows(block: TagBlock, acquisition: int, first: int) -> dict[str, np.ndarray]:
    n = block.timestamps.size
    return {"tag": np.arange(first, first + n, dtype=float),
            "timestamp": block.timestamps.astype(float),
            "tag_input": block.channels.astype(float),
            "acquisition": np.full(n, float(acquisition))}


def acquisition_rows(tagger: Any, duration: float, inputs: tuple[int, ...],
                      acquisition: int, first: int) -> dict[str, np.ndarray]:
    """One recording of `duration` s, kept to the calibrated `inputs`, as dataset rows
    numbered from tag `first`."""
    block = tagger.acquire(duration)
    keep = np.isin(block.channels, inputs)
    return tag_rows(TagBlock(block.timestamps[keep], block.channels[keep]), acquisition,
                     first)


def stored_blocks(run: StoredRun) -> list[TagBlock]:
    """The stored acquisitions as TagBlocks (ps), in acquisition order."""
    ts = np.asarray(run.data.get("timestamp", []), float)
    ch = np.asarray(run.data.get("tag_input", []), float)
    acq = np.asarray(run.data.get("acquisition", []), float)
    out = []
    for a in np.unique(acq):
        sel = acq == a
        t, c = np.rint(ts[sel]).astype(np.int64), np.rint(ch[sel]).astype(np.int16)
        order = np.argsort(t, kind="stable")
        out.append(TagBlock(t[order], c[order]))
    return out


def correlate_all(blocks: list[TagBlock], a: int, b: int, range_ps: int,
                   bin_width_ps: int) -> Correlation:
    """One histogram summed over independent acquisitions (each starts at 0 ps)."""
    parts = [correlate(blk, a, b, range_ps=range_ps, bin_width_ps=bin_width_ps)
             for blk in blocks]
    if not parts:
        empty = correlate(TagBlock(np.empty(0, np.int64), np.empty(0, np.int16)), a, b,
                          range_ps=range_ps, bin_width_ps=bin_width_ps)
        return empty
    return Correlation(a, b, parts[0].edges_ps, sum((p.counts for p in parts[1:]),
                                                    parts[0].counts.copy()),
                       sum(p.tags_a for p in parts), sum(p.tags_b for p in parts),
                       sum(p.span_ps for p in parts))
