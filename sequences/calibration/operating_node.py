"""A node's transducer at its link operating point, from its calibrated models.

The link needs two numbers of each node's transducer at the pump power it runs the link at:
the conversion efficiency and the added noise. The lab's graph measures the models, not those
numbers: `efficiency_map` commits eta_max and the pump power at C = 1, `added_noise_scan` the
intercept and slope of N_add against pump power. `LinkOperatingPoint` evaluates them at the
link pump power (eta = eta_max 4C/(1+C)^2, C = P/P1; N_add = n0 + k P) and commits
``transducer_efficiency`` and ``transducer_added_noise``, which the link's heralding
calibration reads (the other node's over the network).

With the models' errors in the store (``eta_max_error`` etc., committed with ``field:
stderr``: the combined statistical and systematic errors,
docs/fitting.md#systematic-uncertainty) it also commits ``transducer_efficiency_error``
and ``transducer_added_noise_error`` by first-order propagation, which the link's
prediction takes instead of its default relative error. The inputs' correlations are not
stored and are left out (eta_max with P1; n0 with k).

It measures nothing itself: `check_data` recomputes from the current models and is in spec
when the committed numbers still follow from them (a model recalibrated since moves them).
"""

from __future__ import annotations

import math

from .graph import (
    CalibrationContext,
    CalibrationNode,
    CalibrationOutcome,
    CheckOutcome,
    DataResult,
)

_INPUTS = ("eta_max", "pump_power_at_unit_cooperativity", "added_noise_intrinsic",
           "added_noise_slope")


class LinkOperatingPoint(CalibrationNode):
    """``<lab>.link_operating_point`` (module docstring)."""

    def __init__(self, lab: str, pump_power: float, *, depends_on: tuple[str, ...],
                 timeout: float = 3600.0, tolerance: float = 0.02) -> None:
        if pump_power <= 0:
            raise ValueError(f"{lab}: the link pump power must be > 0 W, got {pump_power}")
        super().__init__(f"{lab}.link_operating_point", scope=lab, depends_on=depends_on,
                         timeout=timeout, description="the transducer at the link's pump "
                         "power, from its calibrated models")
        self.pump_power = pump_power
        """W at the device."""
        self.tolerance = tolerance
        """Relative change of a committed number that puts the node out of spec."""

    def _evaluate(self, ctx: CalibrationContext) -> dict[str, tuple[float, str]] | str:
        stored = ctx.store(self.scope).current_values()
        missing = [k for k in _INPUTS if k not in stored]
        if missing:
            return f"no calibrated {', '.join(missing)} in the {self.scope} store"
        eta_max, p1, n0, k = (stored[name].value for name in _INPUTS)
        c = self.pump_power / p1
        values = {"transducer_efficiency": (eta_max * 4 * c / (1 + c) ** 2, ""),
                  "transducer_added_noise": (n0 + k * self.pump_power, "photons"),
                  "link_pump_power": (self.pump_power, "W")}
        errors = [stored.get(f"{name}_error") for name in _INPUTS]
        if all(e is not None for e in errors):
            e_eta, e_p1, e_n0, e_k = (float(e.value) for e in errors)  # type: ignore[union-attr]
            # eta = eta_max g(C), g = 4C/(1+C)^2, C = P/P1: d eta / d P1 = -eta_max g'(C) C / P1
            # with g'(C) = 4 (1 - C) / (1 + C)^3.
            g, dg = 4 * c / (1 + c) ** 2, 4 * (1 - c) / (1 + c) ** 3
            values["transducer_efficiency_error"] = (
                math.hypot(g * e_eta, eta_max * dg * c / p1 * e_p1), "")
            values["transducer_added_noise_error"] = (
                math.hypot(e_n0, self.pump_power * e_k), "photons")
        return values

    def calibrate(self, ctx: CalibrationContext) -> CalibrationOutcome:
        values = self._evaluate(ctx)
        if isinstance(values, str):
            return CalibrationOutcome(False, values)
        eta, n_add = values["transducer_efficiency"][0], values["transducer_added_noise"][0]
        if not (0 < eta <= 1 and n_add >= 0):
            return CalibrationOutcome(False, f"implausible: eta {eta:.3g}, N_add {n_add:.3g}")
        return CalibrationOutcome(True, f"at {self.pump_power * 1e3:.3g} mW: eta {eta:.4g}, "
                                  f"N_add {n_add:.4g}", values)

    def check_data(self, ctx: CalibrationContext) -> CheckOutcome:
        values = self._evaluate(ctx)
        if isinstance(values, str):
            return CheckOutcome(DataResult.BAD_DATA, values)
        store = ctx.store(self.scope)
        for name in ("transducer_efficiency", "transducer_added_noise"):
            old = store.current(name)
            new = values[name][0]
            if old is None or abs(new - old.value) > self.tolerance * abs(old.value):
                was = "nothing" if old is None else f"{old.value:.4g}"
                return CheckOutcome(DataResult.OUT_OF_SPEC, f"{name} now {new:.4g}, "
                                    f"committed {was}")
        return CheckOutcome(DataResult.IN_SPEC, "the committed numbers follow from the models")
