"""`qnetlab monitor`: the lab live in a web page (Bokeh server), fed by telemetry.

The monitor subscribes to the publishers a config names (`qnetlab.network.telemetry`) and
never opens an instrument, so it runs beside a sequence, `link` or `bringup`, on any host.

- `MonitorState` (state.py): telemetry folded into bounded per-series histories; pure Python.
- timeline.py: a bridge orchestrator's timeline (switch configurations per station,
  requests) folded from its telemetry; pure Python.
- panels.py: the text panels (values with SI units, sequences, calibration graph, links,
  the bridge's stations).
- page.py: one Bokeh document per browser session, streaming from the state.
- `MonitorServer` (server.py): one subscriber thread and one Bokeh server for all pages.

Names load on first use, so the state is usable without importing Bokeh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qnetlab.lazy_exports import lazy_attributes

if TYPE_CHECKING:
    from .server import DEFAULT_PORT, MonitorServer
    from .state import HISTORY_POINTS, MonitorState

_MODULE_OF = {"DEFAULT_PORT": ".server", "MonitorServer": ".server",
              "HISTORY_POINTS": ".state", "MonitorState": ".state"}

__all__ = ["DEFAULT_PORT", "HISTORY_POINTS", "MonitorServer", "MonitorState"]

__getattr__, __dir__ = lazy_attributes(__name__, _MODULE_OF, __all__, globals())
