"""Transducer presets, one per published device class, true to their papers.

Each preset carries its paper's operating point(s) (`OperatingPoint`): the efficiency and the
added noise **referred to the input** (`N_add = N_out / eta`, the model's convention, see
`transducer.TransducerModel.intrinsic_added_noise`), converted where the paper quotes the noise
at the output (the conversion is written in `OperatingPoint.conversion`). The model reproduces
every point exactly: the pump power of a point is the one at which the model's cooperativity
gives the paper's efficiency, and the heating is set so that the steady `N_add` passes through
the points (two points fix the floor n_0 and the slope k of `N_add = n_0 + k P_abs`; one point
uses `intrinsic_noise_share`). A paper that reports two best cases separately (best
efficiency, lowest noise) has two points: the model's one pump-power trade-off between them.

The simulated bench drives the pump continuously: its pump powers are those that reach the
paper's cooperativity on this model, not the paper's peak powers (pulsed devices reach C ~ 1
with Watt-scale pulses). The device's pulsing is described by `repetition_rate`,
`pump_pulse_length` and `pump_duty_cycle`, which the link model reads
(`physics.link.node_optics_from_preset`). Numbers not found in the paper (or not confirmed in
its abstract) are marked *(check)*; linewidths the papers do not state are typical of the
class. The table: docs/transducer.md#4-presets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from .transducer import TransducerModel

FAST_HEATING_SHARE = 0.7
"""Fraction of the heating slope in the fast channel (a modelling choice, not a paper's)."""


@dataclass(frozen=True)
class OperatingPoint:
    """One operating point a paper reports, as the preset reproduces it."""

    name: str
    pump_power: float
    """W at the device, on the simulated (CW) bench: where the model gives `efficiency`."""
    efficiency: float
    """Photon-number conversion efficiency at the device (the paper's total/external one)."""
    added_noise: float
    """N_add, photons referred to the input (N_out / efficiency)."""
    paper_added_noise: float
    """The noise as the paper quotes it (photons)."""
    paper_referred: Literal["input", "output"]
    """Where the paper refers `paper_added_noise`: input (= added_noise) or output."""
    source: str
    """Where in the paper the numbers are."""

    @property
    def conversion(self) -> str:
        """How `added_noise` follows from the paper's number."""
        if self.paper_referred == "input":
            return f"N_add = {self.paper_added_noise:g} (input-referred in the paper)"
        return (f"N_add = N_out / eta = {self.paper_added_noise:g} / {self.efficiency:g} = "
                f"{self.added_noise:.4g}")


@dataclass(frozen=True)
class TransducerPreset:
    """A published device: its model, its operating point(s) and its pulsing."""

    model: TransducerModel
    operating_pump_power: float
    """Pump power (W) of the primary operating point (`operating_points[0]`)."""
    quoted_efficiency: float
    """Efficiency at the primary operating point (the paper's headline)."""
    quoted_added_noise: float
    """Input-referred N_add (photons) at the primary operating point."""
    repetition_rate: float | None = None
    """Hz: the device's maximum attempt rate (pump pulses per second); None for CW."""
    pump_pulse_length: float | None = None
    """s: the pump pulse length; None for CW."""
    pump_duty_cycle: float = 1.0
    """0-1: fraction of the time the pump is on (repetition_rate * pump_pulse_length; 1 CW)."""
    operating_points: tuple[OperatingPoint, ...] = field(default=(), compare=False)
    """The paper's operating points, the primary first."""

    def __post_init__(self) -> None:
        if not 0 < self.pump_duty_cycle <= 1:
            raise ValueError(f"{self.model.name}: pump_duty_cycle must be in (0, 1], got "
                             f"{self.pump_duty_cycle}")
        pulsed = (self.repetition_rate, self.pump_pulse_length)
        if (pulsed[0] is None) != (pulsed[1] is None):
            raise ValueError(f"{self.model.name}: give both repetition_rate and "
                             "pump_pulse_length (pulsed) or neither (CW)")
        if self.repetition_rate is not None and self.pump_pulse_length is not None:
            if not (self.repetition_rate > 0 and self.pump_pulse_length > 0):
                raise ValueError(f"{self.model.name}: repetition_rate and pump_pulse_length "
                                 "must be > 0")
            duty = self.repetition_rate * self.pump_pulse_length
            if not math.isclose(duty, self.pump_duty_cycle, rel_tol=1e-9):
                raise ValueError(f"{self.model.name}: pump_duty_cycle {self.pump_duty_cycle} "
                                 f"is not repetition_rate * pump_pulse_length = {duty}")
        elif self.pump_duty_cycle != 1.0:
            raise ValueError(f"{self.model.name}: a CW preset has pump_duty_cycle 1")

    @property
    def pulsed(self) -> bool:
        return self.repetition_rate is not None


@dataclass(frozen=True)
class _Point:
    """A paper's operating point before its pump power is known."""

    name: str
    efficiency: float
    paper_added_noise: float
    referred: Literal["input", "output"]
    source: str
    high_cooperativity: bool = False
    """Take the C > optimum root (the pump beyond the efficiency peak)."""

    @property
    def added_noise(self) -> float:
        if self.referred == "input":
            return self.paper_added_noise
        return self.paper_added_noise / self.efficiency


def _cooperativity_for(internal: float, c_em: float = 0.0, high: bool = False) -> float:
    """The pump cooperativity at which the internal efficiency is `internal`.

    Electro-optic (c_em = 0): 4C/(1+C)^2; opto-mechanical: 4 c_em C/(1+c_em+C)^2, i.e.
    e C^2 + (2 a e - g) C + e a^2 = 0 with g = 4 (4 c_em), a = 1 (1 + c_em). The lower root
    unless `high`."""
    g, a = (4.0, 1.0) if c_em == 0 else (4.0 * c_em, 1.0 + c_em)
    e = internal
    b = g - 2.0 * a * e
    disc = b * b - 4.0 * e * e * a * a
    if disc < -1e-12 * b * b:
        raise ValueError(f"internal efficiency {internal} is above the peak")
    root = math.sqrt(max(disc, 0.0))
    return (b + root if high else b - root) / (2.0 * e)


def _preset(
    *,
    points: tuple[_Point, ...],
    intrinsic_noise_share: float = 0.3,
    absorbed_fraction: float = 0.005,
    repetition_rate: float | None = None,
    pump_pulse_length: float | None = None,
    **fields: object,
) -> TransducerPreset:
    """Build a preset whose efficiency and steady N_add pass through every point."""
    base = TransducerModel(
        intrinsic_added_noise=0.0,
        absorbed_fraction=absorbed_fraction,
        heating_noise_fast=0.0,
        heating_noise_slow=0.0,
        heating_tau_fast=fields.pop("heating_tau_fast", 1e-3),  # type: ignore[arg-type]
        heating_tau_slow=fields.pop("heating_tau_slow", 0.5),  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )
    peak = base.external_efficiency * (
        1.0 if base.kind == "electro_optic"
        else base.em_cooperativity / (1.0 + base.em_cooperativity))
    powers = []
    for p in points:
        internal = p.efficiency / base.external_efficiency
        if math.isclose(p.efficiency, peak, rel_tol=1e-12):
            c = 1.0 if base.kind == "electro_optic" else 1.0 + base.em_cooperativity
        else:
            c = _cooperativity_for(internal, base.em_cooperativity, p.high_cooperativity)
        powers.append(c * base.pump_power_at_unit_cooperativity)
    noise = [p.added_noise for p in points]
    if len(points) == 1:
        n0 = intrinsic_noise_share * noise[0]
        slope = (noise[0] - n0) / (absorbed_fraction * powers[0])
    else:  # two points fix the floor and the slope of N_add = n0 + slope * P_abs
        (p1, p2), (n1, n2) = powers[:2], noise[:2]
        slope = (n2 - n1) / (absorbed_fraction * (p2 - p1))
        n0 = n1 - slope * absorbed_fraction * p1
        if n0 < 0 or slope < 0:
            raise ValueError(f"{base.name}: the points need N_add rising with pump power")
    model = base.with_changes(
        intrinsic_added_noise=n0,
        heating_noise_fast=FAST_HEATING_SHARE * slope,
        heating_noise_slow=(1.0 - FAST_HEATING_SHARE) * slope,
    )
    ops = tuple(OperatingPoint(p.name, w, p.efficiency, p.added_noise, p.paper_added_noise,
                               p.referred, p.source) for p, w in zip(points, powers, strict=True))
    duty = (1.0 if repetition_rate is None or pump_pulse_length is None
            else repetition_rate * pump_pulse_length)
    first = ops[0]
    return TransducerPreset(model, first.pump_power, first.efficiency, first.added_noise,
                            repetition_rate, pump_pulse_length, duty, ops)


_COMMON = {
    "mw_resonance_frequency": 8.0e9,
    "optical_resonance_wavelength": 1550.12e-9,
}

SAHU_2022 = "Sahu et al., Nat. Commun. 13, 1276 (2022), arXiv:2107.08303"
HEASE_2020 = "Hease et al., PRX Quantum 1, 020315 (2020), arXiv:2005.12763"
WEAVER_2024 = "Weaver et al., Nat. Nanotech. 19, 166 (2024)"
JIANG_2023 = "Jiang et al., Nat. Phys. 19, 1423 (2023)"
ZHAO_2024 = "Zhao et al., arXiv:2406.02704 (2024)"
BRUBAKER_2022 = "Brubaker et al., PRX 12, 021062 (2022), arXiv:2112.13429; Urmey et al. 2025"

PRESETS: dict[str, TransducerPreset] = {
    # Sahu 2022, abstract: "0.16 (+0.02 -0.01) microwave input noise photons with a total
    # bidirectional transduction efficiency of 8.7 % (or up to 15 % with 0.41)" and "internal
    # pure conversion efficiency of up to 99.5 %" (taken at the 15 % point: eta_e eta_o =
    # 0.15 / 0.995). Short, Watt-scale pump pulses; the repetition rate is Hz-class, limited by
    # the heat each pulse leaves: 1 Hz and 250 ns here *(check: Methods)*.
    "bulk_eo_pulsed": _preset(
        name="bulk_eo_pulsed",
        reference=SAHU_2022,
        kind="electro_optic",
        external_efficiency=0.15 / 0.995,
        # the 8.7 % point at 1 mW on the bench: C = 0.211 there, 0.868 at the 15 % point
        pump_power_at_unit_cooperativity=1e-3 / _cooperativity_for(0.087 * 0.995 / 0.15),
        points=(
            _Point("low_noise", 0.087, 0.16, "input", "abstract: 8.7 % at 0.16 input photons"),
            _Point("max_efficiency", 0.15, 0.41, "input",
                   "abstract: up to 15 % at 0.41 input photons, internal 99.5 %"),
        ),
        repetition_rate=1.0,  # Hz *(check)*: "Hz-class" pulsed operation
        pump_pulse_length=250e-9,  # s *(check)*
        mw_linewidth=10e6,  # typical of the class
        mw_coupling_ratio=0.6,
        optical_linewidth=30e6,  # typical of the class
        **_COMMON,
    ),
    # Hease 2020, abstract: "added output noise of less than or equal to 0.074 photons",
    # "bandwidth of 10.7 MHz and total (internal) photon conversion efficiency of 0.03 %
    # (0.67 %)", "1.48 mW" the highest CW pump power. Input-referred: 0.074 / 3e-4 = 247.
    "bulk_eo_cw": _preset(
        name="bulk_eo_cw",
        reference=HEASE_2020,
        kind="electro_optic",
        # internal efficiency 0.67 % at 1.48 mW: C = 1.68e-3 there
        external_efficiency=3e-4 / 6.7e-3,
        pump_power_at_unit_cooperativity=1.48e-3 / _cooperativity_for(6.7e-3),
        points=(_Point("max_power", 3e-4, 0.074, "output",
                       "abstract: N_out <= 0.074 at 1.48 mW, total efficiency 0.03 %"),),
        mw_linewidth=10.7e6,  # the paper's conversion bandwidth
        mw_coupling_ratio=0.5,
        optical_linewidth=25e6,  # typical of the class
        **_COMMON,
    ),
    # Weaver 2024: integrated piezo-optomechanical transducer, efficiency ~0.9 % and "a few"
    # added photons (3 here) *(check)*, 14.8 MHz bandwidth; pulsed pump at up to 100 kHz
    # repetition *(check)*, 1 us pulses *(check)*.
    "piezo_om_integrated": _preset(
        name="piezo_om_integrated",
        reference=WEAVER_2024,
        kind="optomechanical",
        external_efficiency=0.018,
        em_cooperativity=1.0,
        pump_power_at_unit_cooperativity=2e-3,  # C_om = 1 + C_em at 4 mW: the peak
        points=(_Point("peak", 0.009, 3.0, "input", "efficiency ~0.9 %, N_add 'a few'"),),
        repetition_rate=100e3,  # Hz *(check)*
        pump_pulse_length=1e-6,  # s *(check)*
        mw_linewidth=14.8e6,
        mw_coupling_ratio=0.55,
        optical_linewidth=1.0e9,
        **_COMMON,
    ),
    # Jiang 2023: piezo-optomechanical heralded photon addition; efficiency 5 % and N_add ~100
    # as this repository had them *(check)*. Pump absorption heating adds < 2 photons (the
    # issue's reading of the paper), so the floor carries the rest: 1.5 of the 100 is
    # heating here (intrinsic share 0.985). Pulsed: ~15 Hz heralding from 10 kHz attempts of
    # 1 us pulses *(check)*.
    "piezo_om": _preset(
        name="piezo_om",
        reference=JIANG_2023,
        kind="optomechanical",
        external_efficiency=0.10,
        em_cooperativity=1.0,
        pump_power_at_unit_cooperativity=2e-3,
        points=(_Point("peak", 0.05, 100.0, "input",
                       "N_add ~100 *(check)*, pump heating < 2 photons"),),
        intrinsic_noise_share=0.985,
        repetition_rate=10e3,  # Hz *(check)*
        pump_pulse_length=1e-6,  # s *(check)*
        mw_linewidth=1.0e6,
        mw_coupling_ratio=0.55,
        optical_linewidth=1.0e9,
        **_COMMON,
    ),
    # Zhao 2024, abstract: "Under the optimal settings for high efficiency (low noise), we
    # measure an external efficiency of 2.2 % (0.47 %) and an input-referred added noise of
    # 0.94 (0.58)"; continuous laser drive. Electrostatic + optomechanical silicon device.
    "silicon_cw": _preset(
        name="silicon_cw",
        reference=ZHAO_2024,
        kind="optomechanical",
        external_efficiency=0.044,
        em_cooperativity=1.0,
        pump_power_at_unit_cooperativity=1e-3,
        points=(
            _Point("max_efficiency", 0.022, 0.94, "input", "abstract: 2.2 % at 0.94"),
            _Point("low_noise", 0.0047, 0.58, "input", "abstract: 0.47 % at 0.58"),
        ),
        mw_linewidth=2.0e6,
        mw_coupling_ratio=0.5,
        optical_linewidth=0.8e9,
        **_COMMON,
    ),
    # Brubaker 2022, abstract: "a maximum efficiency of 47 % and minimum input-referred added
    # noise of 3.2 photons in upconversion", continuous operation. The two are separate best
    # cases: the low-noise point is taken at C_om = 1 (efficiency 0.30 *(check)*) and the
    # noise at the 47 % point is 4.0 *(check)*; Urmey 2025 (arXiv:2507.09873): eta ~0.4,
    # ~20 kHz band, N_add ~3, throughput eta B D ~7 kHz. Its 3 MHz optical line moves by more
    # than its width per minute in the realistic lab and lies between the TSL-570's 12.5 MHz
    # steps: the pump is locked to the cavity there (lab_configs/membrane_bench.yaml,
    # pump_lock.py, docs/simulation.md#the-pump-lock).
    "membrane_eom": _preset(
        name="membrane_eom",
        reference=BRUBAKER_2022,
        kind="optomechanical",
        # C_em = 3, C_om = 4 at 4 mW: internal 0.75, eta = 0.47
        external_efficiency=0.47 / 0.75,
        em_cooperativity=3.0,
        pump_power_at_unit_cooperativity=1e-3,
        points=(
            _Point("max_efficiency", 0.47, 4.0, "input",
                   "abstract: maximum efficiency 47 % (its N_add 4.0 *(check)*)"),
            _Point("low_noise", 0.47 / 0.75 * 0.48, 3.2, "input",
                   "abstract: minimum N_add 3.2 (its efficiency, C_om = 1, *(check)*)"),
        ),
        mw_linewidth=20e3,
        mw_coupling_ratio=0.6,
        optical_linewidth=3.0e6,
        heating_tau_slow=5.0,
        **_COMMON,
    ),
}


def get_preset(name: str) -> TransducerPreset:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise KeyError(f"unknown transducer preset {name!r}; choose one of: {known}") from None
