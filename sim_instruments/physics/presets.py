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
with Watt-scale pulses). The device's pulsing is described by `repetition_rate` and
`pump_pulse_length` (their product is `pump_duty_cycle`), which the link model reads
(`physics.link.node_optics_from_preset`); `pulsed_heat_load` gives the average pump power a
firing rate puts on the fridge.

Where each number comes from is in each preset's `source` (listed at the end of this
docstring): a number is either *verified*, with the stored text it was checked against
(paper, section or abstract, and the copy read), or *not verified*, with why and where the
value came from. Only the papers' abstracts (and, for Jiang 2023, the journal's abstract page)
were available as text when the presets were last checked (session 24); nothing was
contradicted, and numbers from the papers' bodies are marked not verified. Linewidths the
papers do not state are typical of the class. The table: docs/transducer.md#4-presets.
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
    """A published device: its model, its operating point(s), its pulsing and its sources."""

    model: TransducerModel
    operating_pump_power: float
    """Pump power (W) of the primary operating point (`operating_points[0]`)."""
    quoted_efficiency: float
    """Efficiency at the primary operating point (the paper's headline)."""
    quoted_added_noise: float
    """Input-referred N_add (photons) at the primary operating point."""
    repetition_rate: float | None = None
    """Hz: the device's attempt rate as published (pump pulses per second); None for CW."""
    pump_pulse_length: float | None = None
    """s: the pump pulse length; None for CW."""
    operating_points: tuple[OperatingPoint, ...] = field(default=(), compare=False)
    """The paper's operating points, the primary first."""
    source: str = field(default="", compare=False)
    """Where every number of this preset comes from: verified (and against what) or not."""

    def __post_init__(self) -> None:
        pulsed = (self.repetition_rate, self.pump_pulse_length)
        if (pulsed[0] is None) != (pulsed[1] is None):
            raise ValueError(f"{self.model.name}: give both repetition_rate and "
                             "pump_pulse_length (pulsed) or neither (CW)")
        if self.repetition_rate is not None and self.pump_pulse_length is not None:
            if not (self.repetition_rate > 0 and self.pump_pulse_length > 0):
                raise ValueError(f"{self.model.name}: repetition_rate and pump_pulse_length "
                                 "must be > 0")
            if self.repetition_rate * self.pump_pulse_length > 1.0:
                raise ValueError(f"{self.model.name}: pulses of {self.pump_pulse_length} s "
                                 f"do not fit in a period of 1 / {self.repetition_rate} Hz")

    @property
    def pulsed(self) -> bool:
        return self.repetition_rate is not None

    @property
    def pump_duty_cycle(self) -> float:
        """0-1: the fraction of the time the pump is on at the published repetition rate,
        `repetition_rate * pump_pulse_length` (1 for CW). Derived, not an independent number:
        the heat a faster firing rate puts on the fridge is `pulsed_heat_load`."""
        if self.repetition_rate is None or self.pump_pulse_length is None:
            return 1.0
        return self.repetition_rate * self.pump_pulse_length


def pulsed_heat_load(preset: TransducerPreset, rate: float | None = None,
                     peak_power: float | None = None) -> float:
    """W: the average pump power the device absorbs (the load on the mixing chamber, as
    `world.LabWorld` applies it) when fired `rate` times per second (Hz; default the preset's
    `repetition_rate`) with pulses of `pump_pulse_length` at `peak_power` (W at the device;
    default the primary operating point's pump power on the simulated bench, which is the
    model's CW-equivalent power, not the paper's peak). A CW preset's pump is always on."""
    power = preset.operating_pump_power if peak_power is None else peak_power
    if preset.pump_pulse_length is None:
        duty = 1.0
    else:
        fired = preset.repetition_rate if rate is None else rate
        duty = min(1.0, float(fired or 0.0) * preset.pump_pulse_length)
    return preset.model.absorbed_fraction * power * duty
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
    source: str = "",
    **fields: object,
) -> TransducerPreset:
    """Build a preset whose efficiency and steady N_add pass through every point; `source`
    says where each number comes from."""
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
    first = ops[0]
    return TransducerPreset(model, first.pump_power, first.efficiency, first.added_noise,
                            repetition_rate, pump_pulse_length, ops, source.strip())


_COMMON = {
    "mw_resonance_frequency": 8.0e9,
    "optical_resonance_wavelength": 1550.12e-9,
}

SAHU_2022 = "Sahu et al., Nat. Commun. 13, 1276 (2022), arXiv:2107.08303"
HEASE_2020 = "Hease et al., PRX Quantum 1, 020315 (2020), arXiv:2005.12763"
WEAVER_2024 = "Weaver et al., Nat. Nanotech. 19, 166 (2024), arXiv:2210.15702"
JIANG_2023 = "Jiang et al., Nat. Phys. 19, 1423 (2023)"
ZHAO_2024 = "Zhao et al., arXiv:2406.02704 (2024)"
BRUBAKER_2022 = "Brubaker et al., PRX 12, 021062 (2022), arXiv:2112.13429; Urmey et al. 2025"

# The texts each preset's numbers were checked against (stored copies; session 24).
_SAHU_ABSTRACT = ("published abstract (Nat. Commun. 13, 1276; copy: "
                  "research-explorer.ista.ac.at/record/10924)")
_NOT_IN_ABSTRACT = ("not verified: only the abstract was available as text, the paper's body "
                    "(Methods) was not")

PRESETS: dict[str, TransducerPreset] = {
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
        repetition_rate=1.0,  # Hz, not verified (see source)
        pump_pulse_length=250e-9,  # s, not verified (see source)
        mw_linewidth=10e6,  # typical of the class
        mw_coupling_ratio=0.6,
        optical_linewidth=30e6,  # typical of the class
        source=f"""
Sahu et al., "Quantum-enabled interface between microwave and telecom light", {SAHU_2022}.
- eta 8.7 % at N_add 0.16 and eta 15 % at N_add 0.41 (two operating points): verified,
  {_SAHU_ABSTRACT}: "0.16+0.02-0.01 microwave input noise photons with a total bidirectional
  transduction efficiency of 8.7% (or up to 15% with 0.41+0.02-0.02)". Input-referred in the
  paper (arXiv abstract, ar5iv.labs.arxiv.org/html/2107.08303: N_in^oe = 0.16, microwave to
  optics; 1.11 in the reverse direction): no conversion.
- internal efficiency 99.5 %: verified, same abstract ("internal pure conversion efficiency
  of up to 99.5%"). Taking it at the 15 % point (eta_e eta_o = 0.15 / 0.995) is this
  preset's choice; the abstract does not say at which point.
- pulsed, nanosecond pulses: verified, same abstract ("short and high-power optical pump
  pulses", "electro-optic modulation on nanosecond-timescales"). Watt-scale peaks: Blesin et
  al. 2024 (arXiv, sec. D "Pulsed transduction", copy: transduction.tech) on a bulk
  electro-optic transducer "employing Watt-scale optical pumping" (their ref. [36], not
  checked to be this paper).
- repetition rate 1 Hz: {_NOT_IN_ABSTRACT}; value from this repository's earlier preset
  (origin unrecorded). Plausible, not derived: with 250 ns pulses of 1 W the fridge model's
  5 uW allows ~20 pulses/s if the whole pulse is dissipated at the mixing chamber, ~4000 at
  the model's 0.5 % absorbed (`pulsed_heat_load`, docs/transducer.md#4-presets).
- pump pulse length 250 ns: {_NOT_IN_ABSTRACT}; value from this repository's earlier preset
  (origin unrecorded); "nanosecond-timescales" in the abstract is consistent with it.
- pump duty cycle 2.5e-7: repetition rate x pulse length (derived).
- linewidths (10 MHz microwave, 30 MHz optical), microwave coupling 0.6: typical of the
  class, not from the paper.""",
        **_COMMON,
    ),
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
        source=f"""
Hease et al., "Bidirectional electro-optic wavelength conversion in the quantum ground
state", {HEASE_2020}. All numbers verified against the published abstract (copy:
research-explorer.ista.ac.at/record/9114):
- added noise: "added output noise of less than or equal to 0.074 photons" (output-referred,
  an upper bound), converted: N_add = N_out / eta = 0.074 / 3e-4 = 246.7 input photons.
- efficiency: "total (internal) photon conversion efficiency of 0.03% (0.67%)".
- pump: "the highest available pump power of 1.48 mW" (continuous), the operating point;
  heating "1.1 added output noise photons per second" there (not modelled separately).
- bandwidth: "high bandwidth of 10.7 MHz" (the microwave linewidth here).
- CW: the abstract's device runs a continuous pump; no pulsing.
- optical linewidth 25 MHz, microwave coupling 0.5: typical of the class, not from the
  paper.""",
        **_COMMON,
    ),
    "piezo_om_integrated": _preset(
        name="piezo_om_integrated",
        reference=WEAVER_2024,
        kind="optomechanical",
        external_efficiency=0.018,
        em_cooperativity=1.0,
        pump_power_at_unit_cooperativity=2e-3,  # C_om = 1 + C_em at 4 mW: the peak
        points=(_Point("peak", 0.009, 3.0, "input", "efficiency ~0.9 %, N_add 'a few'"),),
        repetition_rate=100e3,  # Hz, not verified (see source)
        pump_pulse_length=1e-6,  # s, not verified (see source)
        mw_linewidth=14.8e6,
        mw_coupling_ratio=0.55,
        optical_linewidth=1.0e9,
        source=f"""
Weaver et al., "An integrated microwave-to-optics interface for scalable quantum computing",
{WEAVER_2024}. The stored text is the arXiv abstract (ar5iv.labs.arxiv.org/html/2210.15702),
cut off after "transduction efficiencies"; the journal reference is not verified.
- N_add 3 input photons: verified only as "measuring added noise that is limited to a few
  photons" (the abstract frames the requirement as "input referred noise"); 3 is this
  preset's reading of "a few".
- pulsed, high repetition rate: verified that the abstract names "large bandwidth and high
  repetition rate" among the conditions the device is built to meet; not a number.
- efficiency 0.9 %: not verified: the stored abstract ends before the number; value from
  this repository's earlier preset.
- bandwidth 14.8 MHz (the microwave linewidth here): not verified, likewise.
- repetition rate 100 kHz and pump pulse length 1 us: not verified: the paper's text was
  not available; values from this repository's earlier preset (origin unrecorded).
- pump duty cycle 0.1: repetition rate x pulse length (derived).
- optical linewidth 1 GHz, microwave coupling 0.55: typical of the class.""",
        **_COMMON,
    ),
    # Jiang 2023's heating is the abstract's "< 2 microwave photons": 1.5 of the 100 here.
    "piezo_om": _preset(
        name="piezo_om",
        reference=JIANG_2023,
        kind="optomechanical",
        external_efficiency=0.10,
        em_cooperativity=1.0,
        pump_power_at_unit_cooperativity=2e-3,
        points=(_Point("peak", 0.05, 100.0, "input",
                       "abstract: 5 % at input-referred N_add ~100 (continuous operation); "
                       "optical absorption adds < 2 microwave photons"),),
        intrinsic_noise_share=0.985,
        repetition_rate=10e3,  # Hz, not verified (see source)
        pump_pulse_length=1e-6,  # s, not verified (see source)
        mw_linewidth=1.0e6,
        mw_coupling_ratio=0.55,
        optical_linewidth=1.0e9,
        source=f"""
Jiang et al., "Optically heralded microwave photon addition", {JIANG_2023}. Verified against
the journal's abstract (copy: nature.com/articles/s41567-023-02129-w; it names Nature
Physics 2023, volume and page not checked):
- eta 5 % at input-referred N_add ~100: verified, "continuous operation of the transducer
  with 5% frequency conversion efficiency, input-referred added noise of ~100". These are
  the CW numbers; the abstract gives no efficiency or noise for the pulsed operation, so the
  pulsed preset uses them.
- pump heating < 2 photons: verified, "Optical absorption in the device generates thermal
  noise of less than two microwave photons". Reading it as the pump-heating share of the
  CW N_add (1.5 of the 100 here, intrinsic share 0.985) is this preset's; the abstract does
  not say at which operating point the bound holds.
- heralding rate 15 Hz: verified, "pulsed microwave photon generation at a heralding rate of
  15 Hz" (not a preset field; the link model computes its own herald rate).
- repetition rate 10 kHz and pump pulse length 1 us: not verified: the paper's text (Methods)
  was not available; values from this repository's earlier preset (origin unrecorded).
- pump duty cycle 0.01: repetition rate x pulse length (derived).
- 1 MHz microwave linewidth: the extended-data caption (copy: preview-www.nature.com/articles/
  s41567-023-02129-w/figures/8) says the mechanical linewidth "increases to ~1 MHz" with the
  pump on; used here as the conversion band. Optical linewidth 1 GHz: typical of the class.""",
        **_COMMON,
    ),
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
        source=f"""
Zhao et al., "Quantum-enabled continuous microwave-to-optics frequency conversion",
{ZHAO_2024}. Verified against the arXiv abstract (copy: arxiv.org/html/2406.02704v1):
- two operating points: "Under the optimal settings for high efficiency (low noise), we
  measure an external efficiency of 2.2% (0.47%) and an input-referred added noise of 0.94
  (0.58) in microwave-to-optics conversion": (2.2 %, 0.94) and (0.47 %, 0.58),
  input-referred, no conversion.
- CW: "quantum-enabled operation with a continuous laser drive".
- linewidths (2 MHz microwave, 0.8 GHz optical), microwave coupling 0.5: typical of the
  class, not from the abstract.""",
        **_COMMON,
    ),
    # Its 3 MHz optical line moves by more than its width per minute in the realistic lab and
    # lies between the TSL-570's 12.5 MHz steps: the pump is locked to the cavity there
    # (lab_configs/membrane_bench.yaml, pump_lock.py, docs/simulation.md#the-pump-lock).
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
                   "abstract: maximum efficiency 47 % (its N_add 4.0 not verified)"),
            _Point("low_noise", 0.47 / 0.75 * 0.48, 3.2, "input",
                   "abstract: minimum N_add 3.2 (its efficiency, at C_om = 1, not verified)"),
        ),
        mw_linewidth=20e3,
        mw_coupling_ratio=0.6,
        optical_linewidth=3.0e6,
        heating_tau_slow=5.0,
        source=f"""
Brubaker et al., "Optomechanical ground-state cooling in a continuous and efficient
electro-optic transducer", {BRUBAKER_2022}. The stored text is the arXiv v1 abstract (copy:
fdokumen.com, "arXiv:2112.13429v1"); the journal reference is not verified.
- maximum efficiency 47 % and minimum input-referred N_add 3.2: verified, "The transducer
  achieves a maximum efficiency of 47% and minimum input-referred added noise of 3.2 photons
  in upconversion". Two best cases reported separately: two operating points.
- CW: verified, "an efficient and continuously operating electro-optomechanical transducer".
- N_add 4.0 at the 47 % point: not verified: the paper's body (its noise-versus-power
  figure) was not available; value from this repository's earlier preset. It only has to
  exceed 3.2 for the two points to be one pump-power trade-off.
- efficiency 0.3008 at the 3.2 point: not verified; this preset's choice: the low-noise
  point at C_om = 1, i.e. 0.47 / 0.75 x 4 x 3 x 1 / (1 + 3 + 1)^2.
- Urmey et al., arXiv:2507.09873 (2025; copy: arxiv.org/html/2507.09873v1, abstract), the
  same device class: "efficiency-bandwidth-duty-cycle product of 7 kHz" and "input-referred
  added noise of 3 photons": verified. Its eta ~0.4 and ~20 kHz band (the 20 kHz microwave
  linewidth here): not verified, values from this repository's earlier preset.
- optical linewidth 3 MHz, microwave coupling 0.6, slow heating 5 s: typical of the class
  (3 MHz matters for the pump lock: lab_configs/membrane_bench.yaml).""",
        **_COMMON,
    ),
}

__doc__ = (__doc__ or "") + "\nSources, per preset:\n\n" + "\n\n".join(
    f"{name}:\n{preset.source}" for name, preset in PRESETS.items())


def get_preset(name: str) -> TransducerPreset:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise KeyError(f"unknown transducer preset {name!r}; choose one of: {known}") from None
