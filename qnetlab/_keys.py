"""`qnetlab keys CONFIG`: generate the lab's CURVE keys into the config's key directory."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(verbs: Any) -> None:
    parser = verbs.add_parser(
        "keys", help="generate the lab's CURVE keys (station, orchestrator, nodes)",
        description="Generate a CURVE keypair for the station, the orchestrator and every node "
                    "of a network config, into its network.key_dir. Existing keypairs are "
                    "kept unless --overwrite. Copy key_dir/public to every host and each "
                    "private/<name>.key_secret only to the host that runs <name>.")
    parser.add_argument("config", help="network YAML, e.g. lab_configs/two_node_link.yaml")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing keypairs (every host then needs the new "
                             "public keys)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from network.config import load_network_config
    from network.keys import generate_lab_keys

    config = load_network_config(args.config)
    names = config.key_names()
    written = generate_lab_keys(config.key_dir, names, overwrite=args.overwrite)
    kept = [n for n in names if not any(p.stem == n for p in written)]
    print(f"key directory: {config.key_dir}")
    for name in names:
        print(f"  {name:<16} {'kept (exists)' if name in kept else 'generated'}")
    return 0
