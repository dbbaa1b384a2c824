"""`qnetlab keys CONFIG`: generate the lab's CURVE keys into the config's key directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(verbs: Any) -> None:
    parser = verbs.add_parser(
        "keys", help="generate the lab's CURVE keys (station, orchestrator, nodes, monitor)",
        description="Generate a CURVE keypair for the station, the orchestrator, every node "
                    "and every lab that publishes telemetry with the network's keys, and for "
                    "the monitor, into a network config's network.key_dir; for a bridge config, "
                    "its orchestrator's, each station's, the workload application's and the "
                    "monitor's into its bridge.key_dir; or, for a lab "
                    "config, its telemetry publisher's and the monitor's into its "
                    "qnetlab.telemetry.key_dir. Existing keypairs are "
                    "kept unless --overwrite; a public key file that does not match its "
                    "secret key is rewritten from it. Copy key_dir/public to every host and each "
                    "private/<name>.key_secret only to the host that runs <name>.")
    parser.add_argument("config", help="network, bridge or lab YAML, e.g. "
                        "lab_configs/two_node_link.yaml or lab_configs/transducer_bench.yaml")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing keypairs (every host then needs the new "
                             "public keys)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from qnetlab.network.keys import LabKeyError, generate_lab_keys
    from qnetlab.network.network_config import config_kind, load_network_config
    from qnetlab.network.telemetry_config import (
        network_key_names,
        telemetry_key_names,
    )

    if _is_bridge(args.config):
        key_dir, names = _bridge_key_names(args.config)
    elif config_kind(args.config) == "network":
        config = load_network_config(args.config)
        key_dir, names = config.key_dir, network_key_names(config)
    else:
        key_dir, names = telemetry_key_names(args.config)
    try:
        written = generate_lab_keys(key_dir, names, overwrite=args.overwrite)
    except LabKeyError as exc:
        raise exc.for_config(args.config) from None
    print(f"key directory: {key_dir}")
    for name in names:
        files = {p.suffix for p in written if p.stem == name}
        state = ("generated" if ".key_secret" in files
                 else "repaired (public key rewritten from the secret key)" if files
                 else "kept (exists)")
        print(f"  {name:<16} {state}")
    return 0


def _is_bridge(path: str) -> bool:
    """Whether `path` is a bridge config (top-level 'bridge:'); anything unreadable is left
    to `config_kind` to name."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe").load(Path(path).read_text())
    except (OSError, YAMLError):
        return False
    return isinstance(data, dict) and "bridge" in data and "network" not in data


def _bridge_key_names(path: str) -> tuple[Path, list[str]]:
    """(bridge.key_dir, the bridge's key names); ConfigError when it has no key_dir."""
    from qnetlab.instruments.errors import ConfigError
    from qnetlab.network.bridge.bridge_config import load_bridge_config

    config = load_bridge_config(path)
    if config.key_dir is None:
        raise ConfigError(path, "bridge.key_dir", "missing: the bridge has no key directory "
                          "(`qnetlab bridge --stations` on one host makes keys per run)",
                          f"add 'key_dir: ../lab_data/keys/{config.name}' under bridge: to "
                          "run its processes across hosts")
    return config.key_dir, config.key_names()
