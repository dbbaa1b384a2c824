"""Time-tag processing: coincidences and g2 histograms over a tagger's stream of blocks.

Timestamps are int64 picoseconds. Blocks are checked as they are counted (sorted,
non-negative, in stream order, no overflow unless accepted) and a bad block raises
`TagBlockError` naming the block, the position and the fix; it is never silently miscounted.
Pairs split across a block boundary count once. The passes are numba-compiled and cached on
disk (the first call in a fresh environment compiles, about a second per kernel).

    from qnetlab.sequences.timetags import TagBlock, CoincidenceCounter, Correlator

    counter = CoincidenceCounter(1, 2, window_ps=1000)
    g2 = Correlator(1, 2)                        # +-100 ns, 100 ps bins
    for block in stream:                         # TagBlock(timestamps_ps, channels, overflow)
        counter.feed(block)
        g2.feed(block)
    print(counter.count, g2.result().g2())
"""

from .blocks import TagBlock, TagBlockError
from .coincidences import CoincidenceCounter, count_coincidences
from .correlation import (
    DEFAULT_BIN_WIDTH_PS,
    DEFAULT_RANGE_PS,
    Correlation,
    Correlator,
    correlate,
    normalise_g2,
)

__all__ = [
    "DEFAULT_BIN_WIDTH_PS",
    "DEFAULT_RANGE_PS",
    "CoincidenceCounter",
    "Correlation",
    "Correlator",
    "TagBlock",
    "TagBlockError",
    "correlate",
    "count_coincidences",
    "normalise_g2",
]
