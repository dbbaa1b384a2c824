"""docs/ has no broken relative links or anchors, and every docs page the code names exists."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_doc_links",
                                                  ROOT / "tools" / "check_doc_links.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_links_resolve(capsys: pytest.CaptureFixture[str]) -> None:
    assert _checker().main() == 0, capsys.readouterr().out


@pytest.mark.parametrize(("heading", "anchor"), [
    ("6. The control plane", "6-the-control-plane"),
    ("The peak fit", "the-peak-fit"),
    ("3. Counting and dead time", "3-counting-and-dead-time"),
    ("2. Time: virtual, paced, wall", "2-time-virtual-paced-wall"),
])
def test_slug_follows_github_rules(heading: str, anchor: str) -> None:
    assert _checker().slug(heading) == anchor
