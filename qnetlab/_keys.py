"""`qnetlab keys CONFIG`: generate the lab's CURVE keys into the config's key directory."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(verbs: Any) -> None:
    parser = verbs.add_parser(
        "keys", help="generate the lab's CURVE keys (station, orchestrator, nodes)",
        description="Generate a CURVE keypair for the station, the orchestrator and every node "
                    "of a network config, into its network.key_dir. Existing keypairs are "
                    "kept unless --overwrite; a public key file that does not match its "
                    "secret key is rewritten from it. Copy key_dir/public to every host and each "
                    "private/<name>.key_secret only to the host that runs <name>.")
    parser.add_argument("config", help="network YAML, e.g. lab_configs/two_node_link.yaml")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing keypairs (every host then needs the new "
                             "public keys)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from qnetlab.network.keys import LabKeyError, generate_lab_keys
    from qnetlab.network.network_config import load_network_config

    config = load_network_config(args.config)
    names = config.key_names()
    try:
        written = generate_lab_keys(config.key_dir, names, overwrite=args.overwrite)
    except LabKeyError as exc:
        raise exc.for_config(args.config) from None
    print(f"key directory: {config.key_dir}")
    for name in names:
        files = {p.suffix for p in written if p.stem == name}
        state = ("generated" if ".key_secret" in files
                 else "repaired (public key rewritten from the secret key)" if files
                 else "kept (exists)")
        print(f"  {name:<16} {state}")
    return 0
