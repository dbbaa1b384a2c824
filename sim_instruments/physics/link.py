"""A node of the simulated link: its transducer preset at the preset's operating pump power.

The link itself is drawn per attempt as detector clicks in time (`link_clicks.LinkClicks`,
behind the station's time tagger twin, `sim_instruments.link_events.LinkEvents`) from the
outcome tree of `network.link_model`. The model: docs/link.md#3-imperfections-and-the-outcome-tree.
"""

from __future__ import annotations

from qnetlab.network.link_model import NodeOptics

from .presets import get_preset


def node_optics_from_preset(
    preset: str, fibre_length_km: float, collection_efficiency: float = 0.5
) -> NodeOptics:
    """A node whose transducer is a `presets` device at its operating pump power."""
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
    )


__all__ = ["node_optics_from_preset"]
