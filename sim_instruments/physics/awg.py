"""Arbitrary waveform generator model: sequences of waveforms with markers, per-channel skew.

Steps of per-channel waveforms, repeated and looped; marker rising edges start attempts; each
sample leaves a channel at its time plus the channel's hidden skew and the user's skew.
Defaults follow the Tektronix AWG5208.

Model: docs/timing.md#2-awg-model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Waveform:
    """One channel's samples (normalised to full scale, -1..1) and marker bits."""

    samples: np.ndarray
    """float, shape (n,)."""
    markers: np.ndarray
    """bool, shape (n_markers, n): marker m high at sample i."""

    @classmethod
    def from_marker_pulses(
        cls, n_samples: int, pulses: Mapping[int, Sequence[tuple[int, int]]], n_markers: int = 4
    ) -> Waveform:
        """A flat waveform whose marker m is high over each [first, last) sample range."""
        markers = np.zeros((n_markers, n_samples), dtype=bool)
        for m, spans in pulses.items():
            for a, b in spans:
                markers[m, a:b] = True
        return cls(np.zeros(n_samples), markers)

    def __len__(self) -> int:
        return int(np.asarray(self.samples).size)


@dataclass(frozen=True)
class SequenceStep:
    waveforms: Mapping[int, Waveform]
    """Waveform per channel index; all of one length."""
    repeat: int = 1


@dataclass(frozen=True)
class AwgModel:
    """An AWG's parameters; rates in Hz (samples/s), times in ps."""

    n_channels: int = 8
    sample_rate: float = 2.5e9
    """f_s, samples/s (AWG5208: 2.5 GS/s, 5 GS/s with the option)."""
    memory_samples: int = 2_000_000_000
    """Waveform memory per channel, samples (AWG5208: 2 GSample, check)."""
    n_markers: int = 4
    """Markers per channel."""
    skews_ps: tuple[float, ...] = field(default_factory=lambda: (0.0,) * 8)
    """Intrinsic skew s_ch of each channel's outputs (analog and markers), ps."""

    def __post_init__(self) -> None:
        if len(self.skews_ps) != self.n_channels:
            raise ValueError(f"{len(self.skews_ps)} skews for {self.n_channels} channels")

    @property
    def sample_period_ps(self) -> float:
        return 1e12 / self.sample_rate

    def validate(self, sequence: Sequence[SequenceStep]) -> None:
        """Refuse a sequence this AWG cannot hold, before anything is played (ValueError)."""
        if not sequence:
            raise ValueError("empty sequence")
        total: dict[int, int] = {}
        for k, step in enumerate(sequence):
            if step.repeat < 1:
                raise ValueError(f"step {k}: repeat must be >= 1, got {step.repeat}")
            if not step.waveforms:
                raise ValueError(f"step {k} has no waveform")
            lengths = {ch: len(w) for ch, w in step.waveforms.items()}
            if len(set(lengths.values())) != 1:
                raise ValueError(f"step {k}: waveforms of different lengths {lengths}")
            for ch, w in step.waveforms.items():
                if not 0 <= ch < self.n_channels:
                    raise ValueError(f"step {k}: no channel {ch} (0..{self.n_channels - 1})")
                if len(w) == 0:
                    raise ValueError(f"step {k}, channel {ch}: empty waveform")
                if np.asarray(w.markers).shape != (self.n_markers, len(w)):
                    raise ValueError(
                        f"step {k}, channel {ch}: markers of shape {np.shape(w.markers)}, "
                        f"expected ({self.n_markers}, {len(w)})"
                    )
                if np.max(np.abs(w.samples)) > 1.0:
                    raise ValueError(f"step {k}, channel {ch}: samples outside [-1, 1]")
                total[ch] = total.get(ch, 0) + len(w)
        for ch, n in total.items():
            if n > self.memory_samples:
                raise ValueError(
                    f"channel {ch}: {n} samples exceed the memory of {self.memory_samples}"
                )

    def marker_edges(
        self,
        sequence: Sequence[SequenceStep],
        run_duration_s: float,
        *,
        start_ps: int = 0,
        user_skews_ps: Mapping[int, float] | None = None,
    ) -> dict[tuple[int, int], np.ndarray]:
        """Rising-edge times (int64 ps, sorted) of every marker during a run.

        Args:
            sequence: the steps, looped until the run ends.
            run_duration_s: how long the run lasts, s; edges of samples from then on are
                not played.
            start_ps: when sample 0 leaves the AWG before skew, ps.
            user_skews_ps: skew the user set per channel, ps (default 0).

        Returns:
            {(channel, marker): edge times}, for every channel the sequence uses.
        """
        self.validate(sequence)
        user = user_skews_ps or {}
        n_run = int(np.floor(run_duration_s * self.sample_rate + 1e-9))
        lengths = [len(next(iter(s.waveforms.values()))) for s in sequence]
        step_start = np.concatenate([[0], np.cumsum([n * s.repeat for n, s in
                                                     zip(lengths, sequence, strict=True)])])
        period = int(step_start[-1])
        n_loops = -(-n_run // period) if n_run > 0 else 0
        used = sorted({ch for s in sequence for ch in s.waveforms})

        out: dict[tuple[int, int], np.ndarray] = {}
        for ch in used:
            # one pass of the sequence as per-step marker arrays (idle low where unused)
            steps = [
                np.asarray(s.waveforms[ch].markers, dtype=bool) if ch in s.waveforms
                else np.zeros((self.n_markers, n), dtype=bool)
                for s, n in zip(sequence, lengths, strict=True)
            ]
            skew = self.skews_ps[ch] + float(user.get(ch, 0.0))
            for m in range(self.n_markers):
                idx = _edges_one_pass(
                    [st[m] for st in steps], [s.repeat for s in sequence], step_start
                )
                samples = (np.arange(n_loops, dtype=np.int64)[:, None] * period
                           + idx[None, :]).ravel()
                # sample 0 of a pass: the run starts from idle (markers low); a later pass
                # follows the last sample of the sequence
                if steps[0][m][0] and n_loops:
                    heads = [np.zeros(1, dtype=np.int64)]
                    if not steps[-1][m][-1]:
                        heads.append(np.arange(1, n_loops, dtype=np.int64) * period)
                    samples = np.concatenate([*heads, samples])
                samples = np.unique(samples[samples < n_run])
                times = np.rint(samples * self.sample_period_ps + skew).astype(np.int64)
                out[(ch, m)] = times + start_ps
        return out


def _edges_one_pass(
    markers: list[np.ndarray], repeats: list[int], step_start: np.ndarray
) -> np.ndarray:
    """Sample indices of rising edges within one pass, excluding the pass's sample 0.

    Within a step's waveform: where a sample is high and its predecessor low. Between
    repetitions and steps: where the first sample is high and the sample played before it
    (the end of the previous repetition or step) was low.
    """
    edges: list[np.ndarray] = []
    n_steps = len(markers)
    for k in range(n_steps):
        mk, n, rep = markers[k], markers[k].size, repeats[k]
        inner = np.flatnonzero(mk[1:] & ~mk[:-1]) + 1
        # the sample before repetition r > 0 is this step's last; before r = 0, the
        # previous step's last (the pass's sample 0 is handled by the caller)
        starts = step_start[k] + np.arange(rep, dtype=np.int64) * n
        if rep > 1 and mk[0] and not mk[-1]:
            edges.append(starts[1:])
        if k > 0 and mk[0] and not markers[k - 1][-1]:
            edges.append(starts[:1])
        edges.append((starts[:, None] + inner[None, :]).ravel())
    if not edges:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(edges)).astype(np.int64)
