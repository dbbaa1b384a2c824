"""Slow, seeded drifts of the realistic simulated lab (``LabWorld.ideal is False``).

What drifts, and how (numbers and sources: `DriftSettings` and
docs/simulation.md#drift-realistic-lab):

* the transducer's optical resonance: lab and fridge temperature, strain (an
  Ornstein-Uhlenbeck process), plus, for lithium-niobate (electro-optic) devices, a
  deterministic photorefractive shift that builds up while the pump light is on and relaxes
  slowly in the dark;
* the microwave resonance (two-level-system spectral diffusion of the superconducting
  resonator: OU);
* the pump power delivered to the device (fibre coupling and polarization into the fridge:
  a relative OU factor);
* each detection path's efficiency (fibre coupling and polarization at a polarization-
  sensitive SNSPD: a relative OU factor per detector channel);
* each time-tagger input's hidden delay (cable and fibre lengths with the lab temperature,
  the TDC's electronics: OU in ps per input).

Every OU process is stationary (the lab has been drifting long before the bench is opened):
``x(0) ~ N(0, sigma^2)`` and
``x(t + dt) = x(t) e^(-dt/tau) + sigma sqrt(1 - e^(-2 dt/tau)) N(0, 1)``, the exact
transition, on a fixed grid of ``tau / STEPS_PER_TAU`` from lab time 0. The grid is drawn a
block of `STEPS_PER_TAU` steps at a time, each block from its own named generator
(``world.rng("drift/<quantity>/<block>")``), so the value at a lab time depends only on the
seed and that time: never on how often, or in which order, the world is read. Between grid
points a process is linearly interpolated (`OrnsteinUhlenbeck.value`; the variance dips by at
most ``sigma^2 / (2 STEPS_PER_TAU)``, 0.2 %) or held (`OrnsteinUhlenbeck.held`: the pump
factor, so the world's heating and fridge, integrated exactly for piecewise-constant inputs,
stay exact).

Nothing here draws a random number unless the world is realistic: an ideal world never
evaluates a drift.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace

import numpy as np

STEPS_PER_TAU = 256
"""Grid points per correlation time (and per generator block)."""

RngFactory = Callable[[str], np.random.Generator]
"""A named, seeded generator (``LabWorld.rng``)."""


@dataclass(frozen=True)
class OUSpec:
    """A stationary Ornstein-Uhlenbeck process: standard deviation and correlation time.

    Its autocorrelation is ``sigma^2 exp(-|lag| / tau)``; over a lag ``dt`` it moves by
    ``sigma sqrt(2 (1 - exp(-dt / tau)))`` rms.
    """

    sigma: float
    """Stationary standard deviation (the quantity's unit)."""
    tau: float
    """Correlation time, s."""

    def __post_init__(self) -> None:
        if not (self.sigma >= 0 and math.isfinite(self.sigma)):
            raise ValueError(f"OU sigma must be finite and >= 0, got {self.sigma}")
        if not (self.tau > 0 and math.isfinite(self.tau)):
            raise ValueError(f"OU tau must be a finite time > 0 s, got {self.tau}")

    def rms_change(self, dt: float) -> float:
        """Root-mean-square change over a lag of `dt` seconds."""
        return self.sigma * math.sqrt(2.0 * -math.expm1(-abs(dt) / self.tau))


@dataclass(frozen=True)
class DriftSettings:
    """The drifts' amplitudes and time scales (realistic lab only).

    Sources: the numbers marked "typical" are not from a data sheet; they are of the order
    labs report, chosen so that an hour moves each quantity by a fraction of what a
    calibration's quick check tolerates and a day by more (the point of `qnetlab calibrate`'s
    timeouts). See docs/simulation.md#drift-realistic-lab for the reasoning.
    """

    optical: OUSpec = OUSpec(sigma=30e6, tau=2 * 3600.0)
    """Optical resonance, Hz. Typical: a cryogenic optical resonator moves by tens of MHz
    over hours (mixing-chamber and still temperature, pulse-tube strain, the fibre-to-
    resonator coupler); comparable to the 25-30 MHz linewidths of the bulk electro-optic
    presets, which is why labs re-scan the pump onto the line. An hour moves it
    ~27 MHz rms."""
    microwave: OUSpec = OUSpec(sigma=10e3, tau=1800.0)
    """Microwave resonance, Hz. Typical: two-level-system spectral diffusion gives
    superconducting resonators fractional frequency fluctuations of order 1e-7..1e-6 over
    minutes to hours (Burnett et al., Nat. Commun. 5, 4119 (2014); Gao et al., APL 92,
    152505 (2008)); 10 kHz at 8 GHz is 1.25e-6."""
    pump_delivery: OUSpec = OUSpec(sigma=0.01, tau=3600.0)
    """Relative drift of the pump power delivered to the device (fibre coupling and
    polarization into the fridge; the laser's own power stability is the laser's).
    Typical: 1 % over an hour."""
    detection: OUSpec = OUSpec(sigma=0.03, tau=1200.0)
    """Relative drift of each detection path's efficiency. Typical: fibre polarization
    wanders over minutes with temperature and stress (Brida et al., quant-ph/0610185) and
    fibre-coupled SNSPDs have a polarization extinction ratio of 1.1-2 (Fei et al., a
    fibre-coupled SNSPD with ratio ~2), so the efficiency wanders by a few per cent; 3 %."""
    tagger_delay: OUSpec = OUSpec(sigma=3.0, tau=2 * 3600.0)
    """Each tagger input's hidden delay, ps. A fibre's transit time changes by 6.7 ppm/K
    (Bergman, Eng and Johnston, Electron. Lett. 19, 865 (1983)), a coaxial cable's by tens
    of ppm/K, so tens of ns of cable and fibre move by ~1 ps per kelvin of lab temperature
    (HVAC cycles of ~1 K over hours), and the TDC's own delay drifts with its temperature.
    Typical: 3 ps over two hours."""
    photorefractive_shift_per_watt: float = 10e6 / 1e-3
    """Saturated photorefractive shift of the optical resonance per watt of pump at the
    device, Hz/W (electro-optic, lithium-niobate devices only). The photorefractive effect
    lowers the extraordinary index, so the resonance moves to higher frequency. Typical:
    10 MHz per mW (thin-film devices show GHz; a bulk resonator less)."""
    photorefractive_tau_on: float = 1800.0
    """Build-up time of the photorefractive shift under illumination, s (typical: minutes
    to an hour)."""
    photorefractive_tau_dark: float = 10 * 3600.0
    """Decay time in the dark, s: the space charge is long-lived, recovery takes over 10 h
    (Ren et al., arXiv:2409.12354 (2024); at cryogenic temperature Xu et al., Opt. Lett. 46,
    432 (2021), arXiv:2012.10775)."""


def drift_settings(raw: object) -> DriftSettings:
    """`DriftSettings` with the entries of a lab config's ``qnetlab.simulation.drift``
    mapping changed: an OU process as ``{sigma: S, tau: T}`` (either may be left out), the
    photorefractive numbers as numbers. Raises ValueError naming the bad entry."""
    if not isinstance(raw, dict):
        raise ValueError("expected a mapping such as {microwave: {sigma: 1.0e3}}")
    base = DriftSettings()
    changes: dict[str, object] = {}
    for key, value in raw.items():
        current = getattr(base, str(key), None)
        if current is None:
            known = ", ".join(f.name for f in fields(DriftSettings))
            raise ValueError(f"unknown drift {key!r}; known: {known}")
        if isinstance(current, OUSpec):
            if not isinstance(value, dict) or not set(value) <= {"sigma", "tau"} or any(
                    isinstance(v, bool) or not isinstance(v, int | float)
                    for v in value.values()):
                raise ValueError(f"{key}: expected {{sigma: S, tau: T}} in the quantity's unit "
                                 f"and s, got {value!r}")
            changes[str(key)] = replace(current, **{k: float(v) for k, v in value.items()})
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        else:
            changes[str(key)] = float(value)
    return replace(base, **changes)  # type: ignore[arg-type]


class OrnsteinUhlenbeck:
    """One stationary OU process on the lab clock, reproducible from its generators."""

    def __init__(self, spec: OUSpec, rng: RngFactory, name: str) -> None:
        self.spec = spec
        self.name = name
        self._rng = rng
        self.step = spec.tau / STEPS_PER_TAU
        """Grid step, s."""
        self._a = math.exp(-1.0 / STEPS_PER_TAU)
        self._s = spec.sigma * math.sqrt(-math.expm1(-2.0 / STEPS_PER_TAU))
        self._starts: list[float] = []
        """Value at the first grid point of each block computed so far."""
        self._block: tuple[int, np.ndarray] | None = None
        """The last block computed: (index, its STEPS_PER_TAU + 1 grid values)."""
        self._lock = threading.Lock()
        """Emulators read the world from server threads too (the tagger's recorder)."""

    def _generator(self, block: int) -> np.random.Generator:
        return self._rng(f"drift/{self.name}/{block}")

    def _grid_block(self, block: int) -> np.ndarray:
        """Grid values ``block * STEPS_PER_TAU .. (block + 1) * STEPS_PER_TAU`` inclusive."""
        with self._lock:
            return self._grid_block_locked(block)

    def _grid_block_locked(self, block: int) -> np.ndarray:
        if self._block is not None and self._block[0] == block:
            return self._block[1]
        if not self._starts:
            # The first value comes from block 0's own generator, before its steps.
            self._starts.append(self.spec.sigma * float(self._generator(0).standard_normal()))
        while len(self._starts) <= block:
            b = len(self._starts) - 1
            self._starts.append(float(self._compute(b)[-1]))
        values = self._compute(block)
        self._block = (block, values)
        return values

    def _compute(self, block: int) -> np.ndarray:
        rng = self._generator(block)
        if block == 0:
            rng.standard_normal()  # the initial value's draw (see _grid_block)
        z = rng.standard_normal(STEPS_PER_TAU).tolist()
        x = self._starts[block]
        out = [x]
        a, s = self._a, self._s
        for zi in z:  # plain floats: the same arithmetic whatever the cadence
            x = a * x + s * zi
            out.append(x)
        return np.asarray(out)

    def grid(self, index: int) -> float:
        """The value at grid point `index` (time ``index * step``)."""
        if index < 0:
            raise ValueError(f"no drift before lab time 0 (grid point {index})")
        block, k = divmod(index, STEPS_PER_TAU)
        return float(self._grid_block(block)[k])

    def index(self, t: float) -> int:
        """The grid cell holding lab time `t` (s)."""
        return max(0, math.floor(t / self.step))

    def value(self, t: float) -> float:
        """The process at lab time `t` (s), linearly interpolated between grid points."""
        i = self.index(t)
        frac = min(max(t / self.step - i, 0.0), 1.0)
        x0 = self.grid(i)
        return x0 if frac == 0.0 else x0 + frac * (self.grid(i + 1) - x0)

    def held(self, t: float) -> float:
        """The process held over its grid cell: the value at the cell's start."""
        return self.grid(self.index(t))

    def cells(self, t0: float, t1: float) -> Iterator[tuple[float, float]]:
        """(duration s, held value) of each grid cell piece covering [t0, t1)."""
        i, last = self.index(t0), self.index(t1)
        start = t0
        while i < last:
            edge = (i + 1) * self.step
            if edge > start:
                yield edge - start, self.grid(i)
                start = edge
            i += 1
        if t1 > start:
            yield t1 - start, self.grid(last)


@dataclass(frozen=True)
class DriftState:
    """The drifts at one lab time (what the realistic lab has moved by; ideal: all zero)."""

    time: float
    """Lab time, s."""
    optical_shift: float
    """Optical resonance frequency shift, Hz (temperature/strain plus photorefractive)."""
    photorefractive_shift: float
    """Of which photorefractive, Hz."""
    mw_shift: float
    """Microwave resonance frequency shift, Hz."""
    pump_factor: float
    """Pump power delivered to the device over the nominal (1: no drift)."""
    detection_factors: dict[str, float] = field(default_factory=dict)
    """Detection channel -> efficiency over the nominal, for the channels read so far."""
    tagger_delays_ps: dict[str, float] = field(default_factory=dict)
    """Tagger input -> hidden-delay shift, ps, for the inputs read so far."""


class LabDrift:
    """All the slow drifts of one world (see the module docstring)."""

    def __init__(self, rng: RngFactory, settings: DriftSettings | None = None, *,
                 photorefractive: bool = False) -> None:
        self.settings = settings or DriftSettings()
        self._rng = rng
        s = self.settings
        self.optical = OrnsteinUhlenbeck(s.optical, rng, "optical_resonance")
        self.microwave = OrnsteinUhlenbeck(s.microwave, rng, "mw_resonance")
        self.pump = OrnsteinUhlenbeck(s.pump_delivery, rng, "pump_delivery")
        self._detection: dict[str, OrnsteinUhlenbeck] = {}
        self._tagger: dict[str, OrnsteinUhlenbeck] = {}
        self.photorefractive = photorefractive
        """True for lithium-niobate (electro-optic) devices."""
        self.photorefractive_shift = 0.0
        """Hz, integrated with the world's pump (`integrate`)."""

    # -- the processes ---------------------------------------------------------------------
    def detection_process(self, channel: str) -> OrnsteinUhlenbeck:
        if channel not in self._detection:
            self._detection[channel] = OrnsteinUhlenbeck(self.settings.detection, self._rng,
                                                         f"detection/{channel}")
        return self._detection[channel]

    def tagger_process(self, tagger_input: str) -> OrnsteinUhlenbeck:
        if tagger_input not in self._tagger:
            self._tagger[tagger_input] = OrnsteinUhlenbeck(
                self.settings.tagger_delay, self._rng, f"tagger_delay/{tagger_input}")
        return self._tagger[tagger_input]

    # -- values at a lab time ----------------------------------------------------------------
    def optical_shift(self, t: float) -> float:
        """Optical resonance shift at `t`, Hz: the OU part plus the photorefractive shift as
        last integrated (the world integrates up to now before it reads this)."""
        return self.optical.value(t) + self.photorefractive_shift

    def mw_shift(self, t: float) -> float:
        return self.microwave.value(t)

    def pump_factor(self, t: float) -> float:
        """Delivered over nominal pump power (held per grid cell; never below 0)."""
        return max(0.0, 1.0 + self.pump.held(t))

    def detection_factor(self, channel: str, t: float) -> float:
        """Efficiency over nominal of detection `channel` (never below 0)."""
        return max(0.0, 1.0 + self.detection_process(channel).value(t))

    def tagger_delay_ps(self, tagger_input: str, t: float) -> float:
        return self.tagger_process(tagger_input).value(t)

    # -- the pump-driven state --------------------------------------------------------------
    def pump_cells(self, t0: float, t1: float) -> Iterator[tuple[float, float]]:
        """(duration s, pump factor) over [t0, t1), constant on each piece."""
        for dt, x in self.pump.cells(t0, t1):
            yield dt, max(0.0, 1.0 + x)

    def integrate(self, dt: float, pump_power_at_device: float) -> None:
        """Let the photorefractive shift evolve `dt` seconds under a constant pump (W):
        towards ``shift_per_watt * P`` with tau_on while lit, towards 0 with tau_dark
        in the dark (exact for a constant pump)."""
        if not self.photorefractive or dt <= 0:
            return
        s = self.settings
        if pump_power_at_device > 0:
            target = s.photorefractive_shift_per_watt * pump_power_at_device
            tau = s.photorefractive_tau_on
        else:
            target, tau = 0.0, s.photorefractive_tau_dark
        self.photorefractive_shift = target + (self.photorefractive_shift - target) * math.exp(
            -dt / tau)

    def state(self, t: float) -> DriftState:
        """Every drift at lab time `t` (channels and inputs: those read so far)."""
        return DriftState(
            time=t, optical_shift=self.optical_shift(t),
            photorefractive_shift=self.photorefractive_shift, mw_shift=self.mw_shift(t),
            pump_factor=self.pump_factor(t),
            detection_factors={c: self.detection_factor(c, t) for c in self._detection},
            tagger_delays_ps={k: self.tagger_delay_ps(k, t) for k in self._tagger})
