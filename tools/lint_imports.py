"""Check the import contracts of pyproject.toml: ``python tools/lint_imports.py``.

import-linter reads an installed package tree; the repository keeps the lab's folder names
(``instruments/``, ...) that install as ``qnetlab.instruments``, ..., so this checks the same
symlinked installed shape `tools/typecheck.py` builds, in a directory of its own under
``build/``. Exit status: import-linter's (0 when every contract is kept).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from typecheck import REPO, link_tree


def main() -> int:
    build = REPO / "build"
    build.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="lint-imports-", dir=build))
    try:
        link_tree(root)
        env = {**os.environ, "PYTHONPATH": str(root)}
        command = [sys.executable, "-c", "import sys; from importlinter.cli import "
                   "lint_imports_command; sys.exit(lint_imports_command())",
                   "--config", str(REPO / "pyproject.toml"), "--no-cache", *sys.argv[1:]]
        return subprocess.call(command, cwd=root, env=env)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
