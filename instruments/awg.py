"""Role: an arbitrary waveform generator (its markers start the attempts of an experiment).

An `AWG` has a ``sample_rate`` (Hz) and channels numbered from 1 as on the front panel, each
with ``amplitude`` (V peak-to-peak full scale), ``offset`` (V), ``skew`` (s, a delay added to
the channel's analog and marker outputs) and ``output`` (bool). Waveforms are normalised to
full scale (samples in [-1, 1]); each carries marker bits. A sequence (`AwgStep` list) is
checked against the instrument's limits by `upload_sequence` before a single byte is sent.

Why the channel parameters are not abstract QCoDeS parameters: a driver's channels are
`InstrumentChannel`s built by the vendor driver (QCoDeS's own channel class, for instance),
not by the role, so the role cannot add abstract parameters to them before the vendor's
concrete ones. They are listed in `AWG.channel_parameters` and held by the role check
`_channel_parameters` instead: present on every channel, with the unit, settable with a
validator, and set and read back at the probe values. (``output`` is unitless, which the
conformance check holds for the same reason as in `instruments.role`.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from qcodes.instrument import InstrumentChannel

from .conformance import check_channel_parameters
from .errors import InstrumentRefusedError
from .role import ChannelParameter, Role, RoleParameter


class WaveformRejectedError(InstrumentRefusedError, ValueError):
    """A sequence the AWG cannot play; nothing was uploaded."""


@dataclass(frozen=True)
class AwgWaveform:
    """One channel's part of a step: samples and markers."""

    samples: np.ndarray
    """float, shape (n,): normalised to the channel's full scale, -1..1."""
    markers: np.ndarray | None = None
    """bool, shape (n_markers, n): marker m+1 high at sample i. None: all markers low."""

    def __len__(self) -> int:
        return int(np.asarray(self.samples).size)


@dataclass(frozen=True)
class AwgStep:
    """One step of a sequence: a waveform per channel (numbered from 1), all of one length,
    played ``repeat`` times. A channel left out idles at 0 V with its markers low."""

    waveforms: Mapping[int, AwgWaveform]
    repeat: int = 1


@dataclass(frozen=True)
class AwgLimits:
    """What the AWG can hold, as the driver reads it from the instrument."""

    n_channels: int
    n_markers: int
    """Markers per channel."""
    memory_samples: int
    """Waveform memory per channel, samples (all of a sequence's waveforms on a channel)."""
    min_samples: int = 1
    """Shortest waveform, samples."""
    granularity: int = 1
    """A waveform's length must be a multiple of this, samples."""



def validate_sequence(steps: Sequence[AwgStep], limits: AwgLimits, who: str = "AWG") -> None:
    """Refuse a sequence `limits` cannot hold (WaveformRejectedError naming the step, the
    channel, the problem and the fix). Mirrors what the instrument would refuse, so the
    refusal comes before any upload rather than half-way through one."""

    def refuse(where: str, problem: str, fix: str) -> WaveformRejectedError:
        return WaveformRejectedError(f"{who}: {where}: {problem}. Fix: {fix}")

    if not steps:
        raise refuse("sequence", "has no steps", "give at least one AwgStep")
    total: dict[int, int] = {}
    for k, step in enumerate(steps, start=1):
        where = f"step {k}"
        if int(step.repeat) != step.repeat or step.repeat < 1:
            raise refuse(where, f"repeat {step.repeat!r}", "repeat a step 1 or more times")
        if not step.waveforms:
            raise refuse(where, "has no waveform", "give a waveform for at least one channel")
        lengths = {ch: len(w) for ch, w in step.waveforms.items()}
        if len(set(lengths.values())) != 1:
            raise refuse(where, f"waveforms of different lengths {lengths} (samples)",
                         "give every channel of a step the same number of samples")
        for ch, wave in step.waveforms.items():
            at = f"{where}, channel {ch}"
            if not (isinstance(ch, int) and 1 <= ch <= limits.n_channels):
                raise refuse(at, "no such channel",
                             f"use channels 1..{limits.n_channels}")
            samples = np.asarray(wave.samples)
            n = samples.size
            if samples.ndim != 1 or not np.issubdtype(samples.dtype, np.number):
                raise refuse(at, f"samples of shape {samples.shape} and type {samples.dtype}",
                             "give a 1-D array of numbers")
            if n < limits.min_samples:
                raise refuse(at, f"{n} samples, fewer than the minimum {limits.min_samples}",
                             f"pad the waveform to at least {limits.min_samples} samples")
            if n % limits.granularity:
                raise refuse(at, f"{n} samples, not a multiple of {limits.granularity}",
                             f"pad to a multiple of {limits.granularity} samples")
            if not np.all(np.isfinite(samples)):
                raise refuse(at, "samples that are not finite", "replace NaN/inf samples")
            peak = float(np.max(np.abs(samples)))
            if peak > 1.0:
                raise refuse(at, f"samples up to {peak:g} of full scale, outside [-1, 1]",
                             "scale the waveform into [-1, 1] and set the channel's "
                             "amplitude (V) for the voltage you need")
            if wave.markers is not None:
                shape = np.shape(wave.markers)
                if shape != (limits.n_markers, n):
                    raise refuse(at, f"markers of shape {shape}",
                                 f"give markers of shape ({limits.n_markers}, {n}): one "
                                 "row per marker, one column per sample")
            total[ch] = total.get(ch, 0) + n
    for ch, n in sorted(total.items()):
        if n > limits.memory_samples:
            raise refuse(f"channel {ch}", f"{n} samples in all, more than the "
                         f"{limits.memory_samples} of waveform memory",
                         "shorten the waveforms, or repeat a shorter one with `repeat`")


def _channel_parameters(awg: Any) -> str | None:
    return check_channel_parameters(awg.awg_channels, awg.channel_parameters)


def _limits_sane(awg: Any) -> str | None:
    limits = awg.limits()
    if len(awg.awg_channels) != limits.n_channels:
        return f"{len(awg.awg_channels)} channels, limits say {limits.n_channels}"
    if not 1 <= limits.min_samples <= limits.memory_samples or limits.granularity < 1:
        return f"limits make no sense: {limits}"
    return None


def _refuses_bad_sequences(awg: Any) -> str | None:
    limits = awg.limits()
    n = max(limits.min_samples, limits.granularity)
    bad = AwgStep({1: AwgWaveform(np.full(n, 1.5))})
    try:
        awg.upload_sequence([bad], name="qnetlab_conformance")
    except WaveformRejectedError:
        return None
    return "a waveform at 1.5x full scale was not refused"


class AWG(Role):
    """An arbitrary waveform generator. See the module docstring for the contract.

    A driver implements `awg_channels` (channel number -> channel), `limits()`, and the
    upload and run primitives `_upload(...)`, `_run()`, `_stop()`, `_is_running()`.
    """

    role_parameters: ClassVar[tuple[RoleParameter, ...]] = (
        RoleParameter("sample_rate", "Hz", "Sample rate", probe=(1.0e9, 2.5e9)),
    )
    channel_parameters: ClassVar[tuple[ChannelParameter, ...]] = (
        ChannelParameter("amplitude", "V", probe=(0.5, 1.0), rel_tolerance=1e-4),
        ChannelParameter("offset", "V", probe=(0.1, 0.0), rel_tolerance=1e-4),
        ChannelParameter("skew", "s", probe=(100e-12, -50e-12, 0.0), rel_tolerance=1e-3),
        ChannelParameter("output", "", probe=(True, False)),
    )
    role_checks = (_channel_parameters, _limits_sane, _refuses_bad_sequences)

    # -- what a driver provides -------------------------------------------------------------
    @property
    def awg_channels(self) -> Mapping[int, InstrumentChannel[Any]]:
        """Channel number (from 1) -> channel."""
        raise NotImplementedError

    def limits(self) -> AwgLimits:
        raise NotImplementedError

    def _upload(self, steps: Sequence[AwgStep], name: str, limits: AwgLimits) -> None:
        """Send a validated sequence and assign it to the channels it uses."""
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def _is_running(self) -> bool:
        raise NotImplementedError

    # -- actions ----------------------------------------------------------------------------
    def upload_sequence(self, steps: Sequence[AwgStep], name: str = "qnetlab") -> None:
        """Check `steps` against the instrument's limits, then upload them as sequence `name`
        and assign each used channel its track. Raises WaveformRejectedError (nothing sent)
        for a sequence the instrument cannot hold."""
        limits = self.limits()
        validate_sequence(steps, limits, who=self.name)
        self._upload(steps, name, limits)

    def run(self) -> None:
        """Start playing the assigned sequence (it loops until `stop`)."""
        self._run()

    def stop(self) -> None:
        """Stop playing."""
        self._stop()

    def wait_until_done(self, timeout: float) -> None:
        """Return once the AWG has stopped; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while self._is_running():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{self.name} still playing after {timeout} s. A looping sequence plays "
                    "until stop(); call stop() or wait longer"
                )
            time.sleep(min(delay, left))
            delay = min(2 * delay, 0.5)

