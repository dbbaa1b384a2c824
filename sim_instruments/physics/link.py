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

    A pulsed device fires no faster than its published repetition rate (`repetition_rate`).
    Its duty cycle is that rate times the pulse length (`TransducerPreset.pump_duty_cycle`,
    derived), so it sets no second limit; the heat a faster firing puts on the fridge is
    `presets.pulsed_heat_load` (docs/transducer.md, "Duty cycle and the fridge")."""
    rate = getattr(preset, "repetition_rate", None)
    return None if rate is None else float(rate)


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
