"""The architecture notes the code cites live in the repository, and every cited section exists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTES = ROOT / "docs" / "architecture.md"
CITATION = re.compile(r"docs/architecture\.md[`'s,(\s]*\"([^\"]+)\"")
OUTSIDE = re.compile(r"ARCHITECTURE\.md|/tmp/[a-z]+\.md|\.\./shared/")
SUFFIXES = (".py", ".js", ".mjs", ".md", ".html", ".yaml", ".txt", ".sh")
NOT_OURS = {".git", ".venv", "node_modules", "build", ".local", "__pycache__", ".pytest_cache"}


def _sources() -> Iterator[tuple[str, str]]:
    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT)
        if path.suffix in SUFFIXES and path.is_file() and not NOT_OURS.intersection(relative.parts):
            yield relative.as_posix(), path.read_text(encoding="utf-8", errors="replace")


def test_every_cited_section_of_the_architecture_notes_exists():
    headings = [line.lstrip("#").strip().casefold() for line in NOTES.read_text(encoding="utf-8").splitlines()
                if line.startswith("## ")]
    cited: dict[str, list[str]] = {}
    for name, text in _sources():
        for section in CITATION.findall(text):
            cited.setdefault(" ".join(section.split()), []).append(name)
    assert "The label shape" in cited  # the pattern finds citations at all
    missing = {s: where for s, where in cited.items() if not any(h.startswith(s.casefold()) for h in headings)}
    assert not missing, f"sections cited but not in docs/architecture.md: {missing}"


def test_nothing_points_at_notes_outside_the_repository():
    found = [f"{name}: {match}" for name, text in _sources() if name != "tests/unit/test_docs.py"
             for match in OUTSIDE.findall(text)]
    assert found == []
