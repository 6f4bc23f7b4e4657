"""Test-session set-up: a private data directory, headless plotting, few threads, and the real-data path."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
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


def shell_pairs(n: int = 6, size: int = 16, seed: int = 0) -> np.ndarray:
    """``n`` skull-like test pairs ``(n, 2, S, S, S)``: a spherical shell of random size, its top cap as the
    implant (channel 1) and the rest as the defective skull (channel 0); float32 in {0, 1}."""
    rng = np.random.default_rng(seed)
    g = (np.mgrid[:size, :size, :size] + 0.5) / size - 0.5
    out = np.zeros((n, 2, size, size, size), np.float32)
    for i in range(n):
        r = np.sqrt((g**2).sum(0)) / rng.uniform(0.8, 1.0)
        skull = (r < 0.42) & (r > 0.3)
        cap = skull & (g[2] > rng.uniform(0.2, 0.3))
        out[i, 0], out[i, 1] = skull & ~cap, cap
    return out


def skullfix_like(root: Path, n_subjects: int = 6, shape: tuple[int, int, int] = (40, 40, 32), seed: int = 3) -> Path:
    """A tiny dataset in SkullFix's own layout (``training_set/{complete_skull,defective_skull,implant}/NNN.nrrd``)
    under ``root``: phantom skulls with a SkullFix-like defect on a non-cubic grid, standing in for real cases."""
    from cranialkit.data.phantom import make_phantom_dataset

    made = make_phantom_dataset(root / "phantoms", n_subjects=n_subjects, shape=shape, classes=("skullfix",),
                                seed=seed)
    for folder, source in (("complete_skull", made / "complete_skull"),
                           ("defective_skull", made / "defective_skull" / "skullfix"),
                           ("implant", made / "implant" / "skullfix")):
        target = root / "training_set" / folder
        target.mkdir(parents=True)
        for path in sorted(source.glob("*.nrrd")):
            shutil.move(path, target / path.name)
    shutil.rmtree(made)
    return root
