"""The lab's CURVE keys: generating them, loading them, and securing sockets with them.

A key directory holds ``public/<name>.key`` (one per process, safe to copy to every host) and
``private/<name>.key_secret`` (only on the host that runs <name>, mode 0600), the
`zmq.auth.create_certificates` format. A server socket (`make_curve_server`) admits only
clients whose public key is in ``<key_dir>/public``; the ZAP handler tags each message with
the key's owner (`key_owner`), which is how a server must tell who a peer is. `check_lab_keys`
finds a public key file that does not match its secret before anything starts.

Details: docs/link.md#keys.
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

from qnetlab.instruments.errors import ConfigError

CONFIG = "CONFIG"
"""Stands for the lab config's path in a fix, until `LabKeyError.for_config` fills it in."""
_FIX = f"run `qnetlab keys {CONFIG}` to generate the lab's keys"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class LabKeyError(ConfigError):  # trailing "_": not builtins.KeyError
    """A key directory or key file is missing, unreadable or does not match its pair. Names
    the path and the fix. A config error (the CLI's exit code 2): the lab's keys are part of
    its configuration."""

    def __init__(self, path: Path, problem: str, fix: str = _FIX) -> None:
        self.path = path
        super().__init__(str(path), "", problem, fix)

    def for_config(self, config_path: str | Path) -> LabKeyError:
        """The same error with the lab config's real path in the fix."""
        return LabKeyError(self.path, self.problem, self.fix.replace(CONFIG, str(config_path)))


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
            if _repair_public(public_file, secret_file):
                written.append(public_file)
            continue
        if not overwrite and (public_file.exists() or secret_file.exists()):
            present, absent = ((public_file, secret_file) if public_file.exists()
                               else (secret_file, public_file))
            raise LabKeyError(absent, f"missing, but {present.name} exists",
                            "copy the matching file from the host that generated it, or "
                            f"regenerate with `qnetlab keys {CONFIG} --overwrite` (every host "
                            "then needs the new public key)")
        # mkdtemp makes a 0700 directory, so the secret is never readable by others.
        with tempfile.TemporaryDirectory(dir=private) as staging:
            new_public, new_secret = zmq.auth.create_certificates(staging, name)
            os.chmod(new_secret, 0o600)
            os.chmod(new_public, 0o644)
            os.replace(new_secret, secret_file)
            os.replace(new_public, public_file)
        written += [public_file, secret_file]
    return written


def derived_public(secret: bytes) -> bytes:
    """The Z85 public key that belongs to the Z85 `secret` key."""
    return zmq.curve_public(secret)


def _repair_public(public_file: Path, secret_file: Path) -> bool:
    """Rewrite `public_file` from the secret key when it holds another key (a stale copy,
    another process's key); whether it was rewritten. The secret is the authority: it never
    leaves its host, and the public key is derived from it."""
    _, secret = _load(secret_file)
    if not secret:
        raise LabKeyError(secret_file, "holds no secret key")
    public = derived_public(secret)
    try:
        if _load(public_file)[0] == public:
            return False
    except LabKeyError:
        pass  # unreadable: rewritten like a wrong one
    staging = public_file.with_name(f".{public_file.name}.new")
    staging.write_text("#   ZeroMQ CURVE Public Certificate (rewritten by qnetlab keys "
                       "from the secret key)\nmetadata\ncurve\n"
                       f'    public-key = "{public.decode()}"\n')
    os.chmod(staging, 0o644)
    os.replace(staging, public_file)
    return True


def check_lab_keys(key_dir: Path, names: Iterable[str]) -> None:
    """Raise `LabKeyError` naming the file and the fix unless every process of `names` has
    its secret key, its public key file, no two public key files hold one key, and each
    public key file holds the public half of its owner's secret (derived from it): a
    mismatched copy would otherwise show only as handshakes that silently never complete."""
    names = list(names)
    for name in names:
        load_keypair(key_dir, name)
        load_public_key(key_dir, name)
    key_owners(key_dir)  # two files with one key: names the copy
    for name in names:
        secret_file = private_dir(key_dir) / f"{name}.key_secret"
        public_file = public_dir(key_dir) / f"{name}.key"
        stored, secret = load_keypair(key_dir, name)
        public = derived_public(secret)
        if stored != public:
            raise LabKeyError(secret_file, "its public key line does not belong to its secret "
                            "key (the file is damaged)",
                            f"restore it from a backup, or regenerate with `qnetlab keys "
                            f"{CONFIG} --overwrite` (every host then needs the new public "
                            "keys)")
        if load_public_key(key_dir, name) != public:
            raise LabKeyError(public_file, f"does not hold {name}'s public key (it does not "
                            f"match {secret_file.name}), so every handshake with {name} "
                            "would fail", f"run `qnetlab keys {CONFIG}` (it rewrites the file "
                            f"from the secret key), or copy public/{name}.key from the host "
                            f"that runs {name}")


def _load(path: Path) -> tuple[bytes, bytes | None]:
    if not path.parent.is_dir():
        raise LabKeyError(path.parent, "key directory not found")
    if not path.is_file():
        raise LabKeyError(path, "key file not found")
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as err:
        raise LabKeyError(path, f"not a readable CURVE certificate ({err})") from None


def load_keypair(key_dir: Path, name: str) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys of `name` from ``<key_dir>/private/<name>.key_secret``."""
    _check_name(name)
    path = private_dir(key_dir) / f"{name}.key_secret"
    public, secret = _load(path)
    if not secret:
        raise LabKeyError(path, "holds no secret key")
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
    Raises `LabKeyError` for an unreadable file or two files holding the same key."""
    public = public_dir(key_dir)
    if not public.is_dir():
        raise LabKeyError(public, "public key directory not found")
    owners: dict[bytes, str] = {}
    for path in sorted(public.glob("*.key")):
        key = _load(path)[0]  # a bad file would make zmq.auth silently allow no one
        if key in owners:
            raise LabKeyError(path, f"same public key as {owners[key]}.key, so the key's owner "
                            "is ambiguous", f"run `qnetlab keys {CONFIG}` (it rewrites each "
                            "public key file from its owner's secret key), or remove the copy")
        owners[key] = path.stem
    if not owners:
        raise LabKeyError(public, "no public keys (*.key) in the key directory")
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
