"""Test-session set-up: a private data directory, headless plotting, few threads, and the real-data path."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Set before cranialkit is imported anywhere: tests never write into the user's cache.
os.environ["CRANIALKIT_DATA_DIR"] = tempfile.mkdtemp(prefix="cranialkit-test-data-")
os.environ.setdefault("MPLBACKEND", "agg")
os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (real SkullFix/SkullBreak samples); skip the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA}")
    return SHARED_DATA
