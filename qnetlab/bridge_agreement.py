"""Whether the QNUs agree on the pairs a `qnetlab bridge --stations` run delivered, read from
what their node agents logged (no ground truth: a real bench has these files too).

Each QNU's node at a station logs every pair event (`network.read_pairs`,
``nodes/<station>/<qnu>_pairs.bin``). A pair (station, seq) is delivered when both QNUs'
nodes logged it DELIVERED. It is a contradiction when one logged it DELIVERED and the other
released it (or never held it); awaiting, when the other had no verdict yet as the run
stopped. Every pair the orchestrator delivered should be delivered at both QNUs.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

NODES_DIR = "nodes"
"""Where the QNUs' node agents keep their files, a folder per station."""


@dataclass(frozen=True)
class NodeAgreement:
    """What the QNUs' node agents logged of a run's pairs."""

    delivered: int
    """Pairs both QNUs' nodes logged DELIVERED."""
    contradictions: int
    """Pairs one QNU's node logged DELIVERED and the other's did not hold or released."""
    awaiting: int
    """Pairs one node logged DELIVERED whose other node had no verdict when it stopped."""
    held_at_stop: int
    """Pair halves a node held (OK sent, no verdict) when it was read."""
    released: int
    """Pair halves released (RELEASED) by the nodes."""
    nodes: int
    """Node pair logs read (QNU x station)."""

    @property
    def agree(self) -> bool:
        """Pair logs were read, and no pair is delivered at one QNU only (a pair still
        awaiting the other's verdict when the logs were read counts against it)."""
        return self.nodes > 0 and self.contradictions == 0 and self.awaiting == 0

    def line(self, given: int | None = None) -> str:
        """What the terminal shows; `given`: the pairs the application was given."""
        if not self.nodes:
            return "  QNU node agents: no pair log found"
        return (f"  QNU node agents: {self.delivered} pairs delivered at both QNUs"
                + (f" (the application got {given})" if given is not None else "")
                + ", "
                f"{self.contradictions} contradictions"
                + (f", {self.awaiting} awaiting the other's verdict at stop" if self.awaiting
                   else "")
                + f"; {self.held_at_stop} held without a verdict at stop, {self.released} "
                f"halves released ({self.nodes} node logs)")


def read_agreement(run_dir: Path, stations: list[str], qnus: list[str]) -> NodeAgreement:
    """The QNUs' agreement on the pairs of the run in `run_dir` (module docstring)."""
    from qnetlab.network import PairEvent, read_pairs

    verdicts: dict[tuple[str, int], dict[str, int]] = {}
    held = released = nodes = 0
    for station in stations:
        folder = run_dir / NODES_DIR / station
        for qnu in qnus:
            if not (folder / f"{qnu}_pairs.bin").exists():
                continue
            log = read_pairs(folder, qnu)
            nodes += 1
            last: dict[int, int] = {}
            for seq, event in zip(log["seq"].tolist(), log["event"].tolist(), strict=True):
                last[seq] = event  # in the order logged: the verdict after the OK
            held += sum(1 for e in last.values() if e == PairEvent.OK_SENT)
            released += sum(1 for e in last.values() if e == PairEvent.RELEASED)
            for seq, event in last.items():
                verdicts.setdefault((station, seq), {})[qnu] = event
    counts: Counter[str] = Counter()
    for by_qnu in verdicts.values():
        events = list(by_qnu.values())
        if events.count(PairEvent.DELIVERED) == 2:
            counts["delivered"] += 1
        elif PairEvent.DELIVERED in events:
            other = [e for e in events if e != PairEvent.DELIVERED]
            counts["awaiting" if other == [PairEvent.OK_SENT] else "contradictions"] += 1
    return NodeAgreement(counts["delivered"], counts["contradictions"], counts["awaiting"],
                         held, released, nodes)


def wait_for_verdicts(run_dir: Path, stations: list[str], qnus: list[str],
                      timeout: float) -> NodeAgreement:
    """`read_agreement` once no node holds a pair without its verdict (the orchestrator
    sends them as each request ends; a node may not have logged the last ones yet), or
    after `timeout` s, whichever comes first."""
    deadline = time.monotonic() + timeout
    while True:
        found = read_agreement(run_dir, stations, qnus)
        if (found.held_at_stop == 0 and found.awaiting == 0) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


__all__ = ["NODES_DIR", "NodeAgreement", "read_agreement", "wait_for_verdicts"]
