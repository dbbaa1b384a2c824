"""Check that docs/ has no broken relative links or anchors, and that every ``docs/<page>.md``
(``#anchor``) named in the code exists. Run from the repository root:
``python tools/check_doc_links.py``; exits 1 and lists what is broken.

Anchors follow GitHub's slugs: lower case, punctuation other than ``-`` and ``_`` dropped,
spaces to ``-``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CODE_DIRS = ("instruments", "drivers", "sim_instruments", "sequences", "network", "qnetlab",
             "tests", "lab_configs")


def slug(heading: str) -> str:
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.*)$", page.read_text(), re.M)}


def check_target(where: str, page: Path, anchor: str) -> list[str]:
    if not page.exists():
        return [f"{where}: no such file {page.relative_to(ROOT)}"]
    if anchor and page.suffix == ".md" and anchor not in anchors(page):
        return [f"{where}: no heading #{anchor} in {page.relative_to(ROOT)}"]
    return []


def main() -> int:
    problems: list[str] = []
    for md in sorted(DOCS.glob("*.md")):
        text = md.read_text()
        if text.count("```") % 2:
            problems.append(f"{md.relative_to(ROOT)}: unbalanced code fence")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # an external address
            path, _, anchor = target.partition("#")
            page = (md.parent / path).resolve() if path else md
            problems += check_target(str(md.relative_to(ROOT)), page, anchor)
    for folder in CODE_DIRS:
        for src in sorted((ROOT / folder).rglob("*")):
            if src.suffix not in (".py", ".yaml") or "__pycache__" in src.parts:
                continue
            for m in re.finditer(r"docs/([\w\-]+\.md)(?:#([\w\-]+))?", src.read_text()):
                problems += check_target(str(src.relative_to(ROOT)), DOCS / m.group(1),
                                         m.group(2) or "")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
