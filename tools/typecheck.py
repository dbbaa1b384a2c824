"""Run mypy on the installed shape of qnetlab: ``python tools/typecheck.py [mypy options]``.

The repository keeps the lab's folder names (``instruments/``, ``drivers/``, ...), which install
as ``qnetlab.instruments``, ... (``[tool.setuptools.package-dir]`` in pyproject.toml). mypy
cannot follow that mapping, so this builds the installed tree from symbolic links in a
directory of its own under ``build/`` (two runs at once do not pull the tree from under each
other) and checks package ``qnetlab`` there with the repository's mypy settings; the mypy
cache is kept in ``build/typecheck-cache``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("instruments", "drivers", "sim_instruments", "sequences", "network")


def link_tree(root: Path) -> None:
    package = root / "qnetlab"
    package.mkdir(parents=True)
    for module in (REPO / "qnetlab").glob("*.py"):
        (package / module.name).symlink_to(module)
    for folder in FOLDERS:
        (package / folder).symlink_to(REPO / folder, target_is_directory=True)


def main() -> int:
    build = REPO / "build"
    build.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="typecheck-", dir=build))
    try:
        link_tree(root)
        command = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
                   "--cache-dir", str(build / "typecheck-cache"), "-p", "qnetlab",
                   *sys.argv[1:]]
        return subprocess.call(command, cwd=root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
