"""Training volumes for the generators: (defective skull, implant) pairs as 2-channel arrays.

Taught in notebook 04_vae. Built on :func:`cranialkit.preprocessing.stack_cases` (cached on disk), so every
generator sees the same cases at the same grid.
"""

from __future__ import annotations

import numpy as np


def pairs_from_dataset(dataset, resolution: int) -> np.ndarray:
    """All cases of ``dataset`` at ``resolution``³ voxels as float32 ``(N, 2, S, S, S)`` in {0, 1}.

    Channel 0 = defective skull, channel 1 = implant. Cases without an implant cannot be learned from: a dataset
    made only of such cases raises ``ValueError``.
    """
    from cranialkit.preprocessing import stack_cases

    if int(resolution) < 8:
        raise ValueError(f"resolution must be at least 8 voxels, got {resolution}")
    arrays = stack_cases(dataset, (int(resolution),) * 3)
    if arrays.implant is None or len(arrays.implant) == 0:
        raise ValueError(f"{getattr(dataset, 'root', dataset)}: no cases with an implant to learn from")
    return np.stack([arrays.defective, arrays.implant], axis=1).astype(np.float32)


def grid_spacing_mm(dataset, resolution: int) -> float:
    """Mean voxel size (mm) of ``dataset``'s cases at ``resolution``³: the spacing to give generated cases."""
    from cranialkit.preprocessing import stack_cases

    arrays = stack_cases(dataset, (int(resolution),) * 3)
    return float(np.mean(arrays.spacing_mm))


def phantom_pairs(n_subjects: int = 10, resolution: int = 32, seed: int = 0,
                  phantom_resolution: int | None = None) -> tuple[np.ndarray, float]:
    """Pairs from the phantom dataset (made once under the data dir) and their grid spacing in mm.

    Phantoms are made at ``phantom_resolution`` (default ``max(64, resolution)``) and resampled to ``resolution``.
    """
    from cranialkit.data.datasets import phantom_dataset

    dataset = phantom_dataset(n_subjects=n_subjects, resolution=phantom_resolution or max(64, resolution), seed=seed)
    return pairs_from_dataset(dataset, resolution), grid_spacing_mm(dataset, resolution)


def implant_directions(volumes: np.ndarray) -> np.ndarray:
    """Unit vectors ``(N, 3)`` from the grid centre to each pair's implant centre of mass, in array axes.

    ``volumes`` are pairs ``(N, 2, S, S, S)`` (channel 1 = implant): where on the head each defect lies, to compare
    with the cone axes a generator samples (:func:`cranialkit.generative.sampling.sampled_defect_cones`). A pair
    without implant voxels has no direction: its row is NaN (plots skip it).
    """
    x = np.asarray(volumes)
    if x.ndim != 5 or x.shape[1] != 2:
        raise ValueError(f"expected pairs of shape (N, 2, S, S, S), got {x.shape}")
    implant = x[:, 1].reshape(len(x), -1).astype(np.float64)
    mass = implant.sum(1)
    grid = np.indices(x.shape[2:]).reshape(3, -1).T - (np.array(x.shape[2:]) - 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        centres = implant @ grid / mass[:, None]
    centres[mass <= 0] = np.nan
    return centres / np.linalg.norm(centres, axis=1, keepdims=True).clip(min=1e-9)
