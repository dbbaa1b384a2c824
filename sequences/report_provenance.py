"""Where a report came from: the provenance block of every HTML and JSON report.

Enough to reproduce or to distrust a result: the qnetlab version, the git commit of the
source it ran (and whether that tree had uncommitted changes), the config file and its
SHA-256 (the file on disk when the report was written), the simulation seed, the profile
(``sim`` twins or ``real`` addresses), the run ids the report covers, the time (UTC) and the
host. Nothing here is required: what cannot be known (no git, no config) is None and the
report says "unknown".
"""

from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["Provenance", "collect_provenance", "config_sha256", "git_state"]

_SOURCE_ROOT = Path(__file__).resolve().parent.parent
"""The checkout this package runs from (an editable install); a wheel's site-packages is no
git tree, and `git_state` then says so with None."""

GIT_TIMEOUT_S = 5.0
"""git answers a rev-parse in milliseconds; a hung one (a network file system) must not hang
the report."""


@dataclass(frozen=True)
class Provenance:
    """The provenance block (module docstring)."""

    version: str
    commit: str | None
    dirty: bool | None
    """True: the tree had uncommitted changes to tracked files; None: unknown (no git)."""
    config_path: str | None
    config_sha256: str | None
    seed: int | None
    profile: str | None
    run_ids: list[str] = field(default_factory=list)
    """The runs the report covers: '12', or 'node_a run 12' where several databases number
    their runs each from 1."""
    created: str = ""
    """ISO 8601, UTC, to the second."""
    host: str = ""
    python: str = ""

    def with_run_ids(self, run_ids: Iterable[int | str]) -> Provenance:
        """This provenance with `run_ids` added (in order, each once)."""
        merged = list(dict.fromkeys([*self.run_ids, *(str(r) for r in run_ids)]))
        return Provenance(**{**asdict(self), "run_ids": merged})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """(label, text) rows for the HTML table, in reading order."""
        def known(value: object) -> str:
            return "unknown" if value is None or value == "" else str(value)

        commit = known(self.commit)
        if self.commit is not None and self.dirty:
            commit += " (with uncommitted changes)"
        return [("qnetlab version", known(self.version)), ("git commit", commit),
                ("config", known(self.config_path)),
                ("config SHA-256", known(self.config_sha256)),
                ("seed", known(self.seed)), ("profile", known(self.profile)),
                ("run ids", ", ".join(self.run_ids) or "none"),
                ("written (UTC)", known(self.created)), ("host", known(self.host)),
                ("Python", known(self.python))]


def config_sha256(path: str | Path | None) -> str | None:
    """SHA-256 (hex) of the file's bytes, or None when there is no such file."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    return hashlib.sha256(p.read_bytes()).hexdigest()


def git_state(root: Path = _SOURCE_ROOT) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout at `root`; (None, None) when `root` is not the top
    of a git work tree or git is not installed. Read-only: rev-parse and status."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=GIT_TIMEOUT_S, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    # A site-packages inside some other repository is not this source's commit.
    if top is None or Path(top).resolve() != root.resolve():
        return None, None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qnetlab")
    except PackageNotFoundError:
        return "unknown (not installed)"


def collect_provenance(config_path: str | Path | None = None, *, seed: int | None = None,
                       profile: str | None = None,
                       run_ids: Iterable[int | str] = ()) -> Provenance:
    """The provenance of a report written now, from this process and host."""
    commit, dirty = git_state()
    return Provenance(
        version=_version(), commit=commit, dirty=dirty,
        config_path=None if config_path is None else str(Path(config_path).resolve()),
        config_sha256=config_sha256(config_path), seed=seed, profile=profile,
        run_ids=list(dict.fromkeys(str(r) for r in run_ids)),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        host=socket.gethostname(), python=platform.python_version())
