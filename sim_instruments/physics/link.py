"""A node of the simulated link: its transducer preset at the preset's operating pump power.

The link itself is drawn per attempt as detector clicks in time (`link_clicks.LinkClicks`,
behind the station's time tagger twin, `sim_instruments.link_events.LinkEvents`) from the
outcome tree of `network.link_model`. The model: docs/link.md#3-imperfections-and-the-outcome-tree.
"""

from __future__ import annotations

from qnetlab.network.link_model import NodeOptics

from .presets import TransducerPreset, get_preset


def repetition_limit(preset: TransducerPreset) -> float | None:
    """Hz, the fastest a preset's device can be fired, or None (continuous wave: no limit).

    A pulsed device (`repetition_rate`, Hz) fires no faster than its repetition rate; a pump
    duty cycle d with pulses of length T_p (`pump_duty_cycle`, `pump_pulse_length`: the heat
    the fridge can take) allows at most d / T_p pulses per second. The smaller of the two."""
    limits = []
    rate = getattr(preset, "repetition_rate", None)
    if rate is not None:
        limits.append(float(rate))
    pulse = getattr(preset, "pump_pulse_length", None)
    duty = getattr(preset, "pump_duty_cycle", 1.0)
    if pulse is not None and duty is not None and duty < 1.0:
        limits.append(float(duty) / float(pulse))
    return min(limits) if limits else None


def node_optics_from_preset(
    preset: str, fibre_length_km: float, collection_efficiency: float = 0.5,
    memory_t2: float | None = None,
) -> NodeOptics:
    """A node whose transducer is a `presets` device at its operating pump power: its
    efficiency, added noise, conversion bandwidth (the microwave mode's linewidth, which sets
    the emitted photon's shape) and repetition limit; `memory_t2` (s) is the node memory's."""
    try:
        found = get_preset(preset)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    model, power = found.model, found.operating_pump_power
    return NodeOptics(
        fibre_length_km=fibre_length_km,
        transducer_efficiency=model.efficiency(power, 0.0, 0.0),
        transducer_added_noise=model.steady_added_noise(model.absorbed_fraction * power),
        collection_efficiency=collection_efficiency,
        conversion_bandwidth=model.mw_linewidth,
        memory_t2=memory_t2,
        repetition_limit=repetition_limit(found),
    )


__all__ = ["node_optics_from_preset", "repetition_limit"]
