"""`qnetlab monitor CONFIG`: the lab live in a web page, from the telemetry its processes
publish. It never opens an instrument."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_PORT = 5006  # qnetlab.monitor.DEFAULT_PORT; here so `--help` need not import Bokeh


def add_parser(verbs: Any) -> None:
    parser = verbs.add_parser(
        "monitor", help="watch the lab live in a web browser (telemetry, never instruments)",
        description="Serve a web page that shows the lab live: the mixing-chamber "
                    "temperature and its interlock ceiling, pump power and state, microwave "
                    "drive, detector count rates, the running sequence (PAUSED with the "
                    "reason when the interlock holds it), the calibration graph, and per "
                    "link the herald rate, delivered pairs, fidelity, latency and every "
                    "error counter; for a bridge config, the orchestrator's live timeline "
                    "(switch configurations per station, and the requests). It subscribes "
                    "to the telemetry the config's processes publish (CURVE, with the key "
                    "'monitor' of `qnetlab keys CONFIG`) and "
                    "never opens an instrument, so it runs beside `characterize`, `run`, "
                    "`link` or `bringup`, on this host or another. Open the printed address "
                    "in any number of browsers; Ctrl-C stops it.",
    )
    parser.add_argument("config", help="lab, network or bridge YAML whose telemetry to show, "
                                       "e.g. lab_configs/transducer_bench.yaml, "
                                       "lab_configs/two_node_link.yaml or "
                                       "lab_configs/bridge_8.yaml (the bridge orchestrator's "
                                       "live timeline)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port of the page (default {DEFAULT_PORT}; 0: any free "
                             "port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve the page on (default 127.0.0.1: this machine "
                             "only)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop by itself after this many seconds")
    parser.add_argument("--silent-after", type=float, default=5.0,
                        help="say 'no telemetry from X for N s' once a publisher has been "
                             "quiet this long, s (default 5)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from qnetlab.instruments.errors import ConfigError
    from qnetlab.network.bridge.bridge_telemetry import bridge_config_endpoints, is_bridge_config
    from qnetlab.network.telemetry import telemetry_endpoints

    from .monitor.server import MonitorServer, wait

    if not 0 <= args.port <= 65535:
        raise ConfigError(args.config, "--port", f"{args.port} is not a TCP port",
                          "give --port a number from 1 to 65535 (0: any free port)")
    if args.max_seconds is not None and args.max_seconds < 0:
        raise ConfigError(args.config, "--max-seconds", f"{args.max_seconds} is negative",
                          "give a duration in seconds")
    # A bridge config names its orchestrator's telemetry address, or its run folder's
    # ready files do (then the orchestrator must have started first).
    found = bridge_config_endpoints(args.config) if is_bridge_config(args.config) \
        else telemetry_endpoints(args.config)
    server = MonitorServer(found.endpoints, found.key_dir, title=str(args.config),
                           host=args.host, port=args.port, silent_after_s=args.silent_after,
                           config=str(args.config))
    server.start()
    try:
        print(f"monitor: {server.url}  (Ctrl-C stops)", flush=True)
        for source, address in found.endpoints.items():
            print(f"  telemetry from {source}: {address}", flush=True)
        wait(args.max_seconds)
    except KeyboardInterrupt:  # Ctrl-C or a stop signal: the usual way to stop a monitor
        pass
    finally:
        server.stop()
    print("monitor: stopped", flush=True)
    return 0
