"""Training volumes for the generators: (defective skull, implant) pairs as 2-channel arrays.

Taught in notebook 04_vae. :func:`training_pairs` gives what notebooks 04–09 and 12 train on. Built on
:func:`cranialkit.preprocessing.stack_cases` (cached on disk), so every generator sees the same cases at the same
grid.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class TrainingPairs:
    """The training pairs of a generator: ``volumes`` ``(N, 2, S, S, S)`` float32 in {0, 1}, the grid's voxel size
    ``spacing_mm`` (mm, the spacing given to generated cases) and the ``dataset`` they come from."""

    volumes: np.ndarray
    spacing_mm: float
    dataset: object

    def __str__(self) -> str:
        n, _, size = self.volumes.shape[:3]
        skull, implant = self.volumes[:, 0].mean(), self.volumes[:, 1].mean()
        return (f"{n} training pairs on a {size}³ grid ({self.spacing_mm:.1f} mm per voxel); the defective skull "
                f"fills {skull:.1%} of the voxels, the implant {implant:.2%}")


def training_pairs(data: str = "phantom", n_subjects: int = 10, resolution: int = 32, seed: int = 0) -> TrainingPairs:
    """The pairs every generator of notebooks 04–09 learns from, at ``resolution``³ voxels.

    ``data = "phantom"``: the phantom dataset of ``n_subjects`` subjects (× 6 defect classes, made once under the
    data dir at ``max(64, resolution)``³ and resampled); otherwise a dataset folder with implants
    (:func:`cranialkit.data.datasets.load_dataset`).
    """
    from cranialkit.data.datasets import load_dataset, phantom_dataset

    if data == "phantom":
        dataset = phantom_dataset(n_subjects=n_subjects, resolution=max(64, int(resolution)), seed=seed)
    else:
        dataset = load_dataset(data)
    return TrainingPairs(pairs_from_dataset(dataset, resolution), grid_spacing_mm(dataset, resolution), dataset)


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
