"""Checkers for the exercises of notebook 01_data_and_preprocessing."""

from __future__ import annotations

import numpy as np

from cranialkit import metrics, preprocessing
from cranialkit.exercises.registry import Feedback, call_answer, exercise
from cranialkit.volume import Volume


@exercise("01_implant_volume")
def implant_volume(answer: float, implant: Volume) -> Feedback:
    """The implant's volume in ml = voxel count × voxel volume (mm³) / 1000."""
    count = int(np.count_nonzero(implant.array))
    voxel_mm3 = float(np.prod(implant.spacing))
    expected = count * voxel_mm3 / 1000.0
    answer = float(answer)
    if np.isclose(answer, expected, rtol=0.01):
        return Feedback(True, f"right: {count} voxels × {voxel_mm3:.3f} mm³ = {expected:.2f} ml")
    if np.isclose(answer, count, rtol=0.01):
        return Feedback(False, "that is the number of voxels; multiply by the volume of one voxel (spacing)")
    if np.isclose(answer, expected * 1000, rtol=0.01):
        return Feedback(False, "that is in mm³; 1 ml = 1000 mm³")
    return Feedback(False, "not quite: count the implant's voxels and multiply by the product of the spacing")


@exercise("01_dice")
def dice_function(answer, seed: int = 0) -> Feedback:
    """A hand-written ``dice(a, b)`` must agree with :func:`cranialkit.metrics.dice`, including empty masks."""
    rng = np.random.default_rng(seed)
    cases = [(rng.random((12, 12, 12)) > 0.6, rng.random((12, 12, 12)) > 0.5) for _ in range(3)]
    cases.append((np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)))
    cases.append((np.ones((4, 4, 4), bool), np.zeros((4, 4, 4), bool)))
    for a, b in cases:
        expected = metrics.dice(a, b)
        result, problem = call_answer(answer, a, b)
        if problem is not None:
            if "ZeroDivisionError" in problem.message:
                return Feedback(False, "your function divides by zero when both masks are empty: define DSC = 1 there")
            return problem
        got = float(result)
        if not np.isfinite(got):
            return Feedback(False, "your function returns NaN/inf when both masks are empty: define DSC = 1 there")
        if not np.isclose(got, expected, atol=1e-6):
            if a.any() or b.any():
                return Feedback(False, f"got {got:.4f}, expected {expected:.4f}: DSC = 2|A∩B| / (|A|+|B|)")
            return Feedback(False, f"for two empty masks got {got}, expected 1.0 (they agree perfectly)")
    return Feedback(True, "your Dice agrees with cranialkit.metrics.dice, empty masks included")


@exercise("01_isotropic_shape")
def isotropic_shape(answer, volume: Volume, spacing_mm: float = 1.0) -> Feedback:
    """The shape of the grid that ``to_grid(volume, shape=None, spacing_mm=1.0)`` makes (crop + margin + pad)."""
    grid, _ = preprocessing.to_grid(volume, shape=None, spacing_mm=spacing_mm)
    expected = tuple(int(s) for s in grid.shape)
    try:
        answer = tuple(int(s) for s in answer)
    except (TypeError, ValueError):
        return Feedback(False, "give the shape as a tuple of three integers")
    if answer == expected:
        return Feedback(True, f"right: {expected} voxels at {spacing_mm} mm")
    if answer == tuple(volume.shape):
        return Feedback(False, "that is the original shape; resample with spacing_mm=1.0 and shape=None first")
    return Feedback(False, "not that shape: call preprocessing.to_grid(volume, shape=None, spacing_mm=1.0)")
