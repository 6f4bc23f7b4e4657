"""The product speaks of the method, not of the project's history (docs/DESIGN.md, section 5).

No notebook, module, doc, solution, benchmark script or README mentions sessions, engineers or lent machines;
notebook prose, modules and the hand-written docs carry no dates of runs. The benchmark records and the page
generated from them are the one place where dates belong: they are provenance data (when a figure was measured),
so only the date rule skips them.
Nothing outside tests/ and dev/ points at the sample data or documents beside the repository.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HISTORY = re.compile(r"session \d|engineer|lent machine", re.IGNORECASE)
DATE = re.compile(r"\b(19|20)\d{2}-\d{2}-\d{2}\b")
OUTSIDE = re.compile(r"\.\./shared|shared/data|shared/DESIGN")
SKIPPED_DIRS = {".git", ".venv", "outputs", "__pycache__", ".pytest_cache", ".ruff_cache", "tests", "dev",
                ".ipynb_checkpoints"}
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".toml", ".yml", ".yaml", ".cfg", ".txt", ".json", ""}


def _product_files() -> list[Path]:
    files = [*REPO.glob("notebooks/*.ipynb"), *REPO.glob("cranialkit/**/*.py"), *REPO.glob("docs/**/*.md"),
             *REPO.glob("docs/**/*.json"), *REPO.glob("solutions/*.py"), *REPO.glob("benchmarks/*.py"),
             REPO / "README.md"]
    return sorted(p for p in files if p.is_file())


def _prose(path: Path) -> str:
    """What a reader reads: a notebook's markdown cells (its code is checked through its comments below), or the
    whole file."""
    if path.suffix != ".ipynb":
        return path.read_text()
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def _notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def _hits(pattern: re.Pattern, text: str) -> list[str]:
    return [line.strip()[:100] for line in text.splitlines() if pattern.search(line)]


@pytest.mark.parametrize("path", _product_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_history_words(path: Path):
    text = _prose(path) + ("\n" + _notebook_code(path) if path.suffix == ".ipynb" else "")
    hits = _hits(HISTORY, text)
    assert not hits, f"{path.relative_to(REPO)}: speaks of the project's history: {hits}"


@pytest.mark.parametrize("path", [p for p in _product_files() if p.name != "BENCHMARKS.md" and p.suffix != ".json"],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_no_dates_of_runs(path: Path):
    hits = _hits(DATE, _prose(path))
    assert not hits, f"{path.relative_to(REPO)}: a date in the text (results belong in cells and records): {hits}"


def test_nothing_outside_tests_and_dev_points_beside_the_repository():
    hits = []
    for path in REPO.rglob("*"):
        parts = set(path.relative_to(REPO).parts)
        if (not path.is_file() or parts & SKIPPED_DIRS or any(p.endswith(".egg-info") for p in parts)
                or path.suffix not in TEXT_SUFFIXES):
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        hits += [f"{path.relative_to(REPO)}: {line}" for line in _hits(OUTSIDE, text)]
    assert not hits, "only tests/ and dev/ may use data beside the repository:\n" + "\n".join(hits)


def test_the_patterns_catch_what_they_are_for():
    assert HISTORY.search("as in Session 7") and HISTORY.search("five other engineers") and HISTORY.search(
        "on the lent machine")
    assert DATE.search("measured 2026-12-04") and not DATE.search("time.strftime('%Y-%m-%d')")
    assert OUTSIDE.search("see ../shared/DESIGN.md") and not OUTSIDE.search("a shared data directory")
