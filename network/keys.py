"""The lab's CURVE keys: generating them, loading them, and securing sockets with them.

Layout of a key directory (the `zmq.auth.create_certificates` file format)::

    <key_dir>/public/<name>.key            one per process of the lab; safe to copy to every host
    <key_dir>/private/<name>.key_secret    only on the host that runs <name>; mode 0600

A server socket (`make_curve_server`) accepts only clients whose public key is in
``<key_dir>/public`` (checked by the ZAP handler that `start_authenticator` runs for the
context), so a process without a lab key can neither receive heralds nor inject one.

The ZAP handler also names who holds the key: every message a server socket receives over an
authenticated connection carries the ZAP User-Id property set to the key's owner, the name of
its public key file (``node_a`` for ``public/node_a.key``; `key_owner` reads it). A peer's
routing identity, by contrast, is whatever the peer chose to call itself, so any holder of
any lab key could claim to be another process; a server that acts on who a peer is must go
by `key_owner` (the orchestrator does, see `network.orchestrator`).
Two key files holding one public key would make the owner ambiguous: refused.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from instruments.errors import QnetlabError

_FIX = "run `qnetlab keys CONFIG` to generate the lab's keys"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class KeyError_(QnetlabError):  # trailing "_": not builtins.KeyError
    """A key directory or key file is missing or unreadable. Names the path and the fix."""

    def __init__(self, path: Path, problem: str, fix: str = _FIX) -> None:
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(f"{path}: {problem}. Fix: {fix}")


def public_dir(key_dir: Path) -> Path:
    return Path(key_dir) / "public"


def private_dir(key_dir: Path) -> Path:
    return Path(key_dir) / "private"


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"key name {name!r}: use letters, digits, '_', '.', '-' "
                         "(it becomes a file name)")


def generate_lab_keys(key_dir: Path, names: Iterable[str], *,
                      overwrite: bool = False) -> list[Path]:
    """Create a CURVE keypair per name; return the files written (public and secret).

    Existing keypairs are kept unless `overwrite` (other hosts may already hold their public
    keys). Secret files are written inside a 0700 directory and are 0600 before they appear.
    """
    key_dir = Path(key_dir)
    names = list(names)
    for name in names:
        _check_name(name)
    public, private = public_dir(key_dir), private_dir(key_dir)
    public.mkdir(parents=True, exist_ok=True)
    private.mkdir(parents=True, exist_ok=True)
    private.chmod(0o700)
    written: list[Path] = []
    for name in names:
        public_file, secret_file = public / f"{name}.key", private / f"{name}.key_secret"
        if not overwrite and public_file.exists() and secret_file.exists():
            continue
        if not overwrite and (public_file.exists() or secret_file.exists()):
            present, absent = ((public_file, secret_file) if public_file.exists()
                               else (secret_file, public_file))
            raise KeyError_(absent, f"missing, but {present.name} exists",
                            "copy the matching file from the host that generated it, or "
                            "regenerate with overwrite (every host then needs the new "
                            "public key)")
        # mkdtemp makes a 0700 directory, so the secret is never readable by others.
        with tempfile.TemporaryDirectory(dir=private) as staging:
            new_public, new_secret = zmq.auth.create_certificates(staging, name)
            os.chmod(new_secret, 0o600)
            os.chmod(new_public, 0o644)
            os.replace(new_secret, secret_file)
            os.replace(new_public, public_file)
        written += [public_file, secret_file]
    return written


def _load(path: Path) -> tuple[bytes, bytes | None]:
    if not path.parent.is_dir():
        raise KeyError_(path.parent, "key directory not found")
    if not path.is_file():
        raise KeyError_(path, "key file not found")
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as err:
        raise KeyError_(path, f"not a readable CURVE certificate ({err})") from None


def load_keypair(key_dir: Path, name: str) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys of `name` from ``<key_dir>/private/<name>.key_secret``."""
    _check_name(name)
    path = private_dir(key_dir) / f"{name}.key_secret"
    public, secret = _load(path)
    if not secret:
        raise KeyError_(path, "holds no secret key")
    return public, secret


def load_public_key(key_dir: Path, name: str) -> bytes:
    """The Z85 public key of `name` from ``<key_dir>/public/<name>.key``."""
    _check_name(name)
    return _load(public_dir(key_dir) / f"{name}.key")[0]


class LabAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler thread, giving each allowed CURVE client its key's owner (the
    name of its public key file) as User-Id instead of the Z85 key."""

    def __init__(self, context: zmq.Context, owners: dict[bytes, str]) -> None:
        super().__init__(context)
        self.owners = dict(owners)
        """Z85 public key -> owner name; read by the ZAP thread, never changed after start."""

    def curve_user_id(self, client_public_key: bytes) -> str:
        # Called by the ZAP thread for allowed keys only, with the raw 32-byte key. A key the
        # map lacks (allowed by a later configure_curve elsewhere) keeps pyzmq's Z85 id,
        # which names no process, so it can never pass for one.
        owner = self.owners.get(z85.encode(client_public_key))
        return owner if owner is not None else super().curve_user_id(client_public_key)


def key_owners(key_dir: Path) -> dict[bytes, str]:
    """Z85 public key -> owner name (the file's stem) for every ``<key_dir>/public/*.key``.
    Raises `KeyError_` for an unreadable file or two files holding the same key."""
    public = public_dir(key_dir)
    if not public.is_dir():
        raise KeyError_(public, "public key directory not found")
    owners: dict[bytes, str] = {}
    for path in sorted(public.glob("*.key")):
        key = _load(path)[0]  # a bad file would make zmq.auth silently allow no one
        if key in owners:
            raise KeyError_(path, f"same public key as {owners[key]}.key, so the key's owner "
                            "is ambiguous", "give every process its own keypair "
                            "(`qnetlab keys CONFIG`) and remove the copy")
        owners[key] = path.stem
    if not owners:
        raise KeyError_(public, "no public keys (*.key) in the key directory")
    return owners


def start_authenticator(context: zmq.Context, key_dir: Path) -> LabAuthenticator:
    """Start the ZAP handler of `context`: CURVE clients whose public key is in
    ``<key_dir>/public`` are allowed, no one else, and each message from them carries its
    key's owner as User-Id (`key_owner`). Call before binding server sockets; `.stop()` it
    before terminating the context."""
    owners = key_owners(key_dir)
    authenticator = LabAuthenticator(context, owners)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(public_dir(key_dir)))
    return authenticator


def key_owner(frame: zmq.Frame) -> str | None:
    """The owner of the key that authenticated the connection `frame` came in on (a frame
    received with ``copy=False`` on a socket made by `make_curve_server` under
    `start_authenticator`); None when the connection carries no User-Id (CURVE off)."""
    try:
        owner = frame.get("User-Id")
    except zmq.ZMQError:  # EINVAL: no such property on this message
        return None
    return owner if isinstance(owner, str) else None


def make_curve_server(socket: zmq.Socket, key_dir: Path, name: str) -> None:
    """Make `socket` a CURVE server with `name`'s keypair. Set before `bind`."""
    public, secret = load_keypair(key_dir, name)
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    socket.curve_server = True


def make_curve_client(socket: zmq.Socket, key_dir: Path, name: str,
                      server: str) -> None:
    """Make `socket` a CURVE client with `name`'s keypair, trusting only the server whose
    public key is ``<key_dir>/public/<server>.key``. Set before `connect`."""
    server_key = load_public_key(key_dir, server)
    public, secret = load_keypair(key_dir, name)
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    socket.curve_serverkey = server_key
