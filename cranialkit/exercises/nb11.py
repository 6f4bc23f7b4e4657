"""Checkers for the exercises of notebook 11_two_stage_reconstruction."""

from __future__ import annotations

import math

from cranialkit.exercises.registry import Feedback, exercise

_SUMMARY_ROWS = ("mean of classes", "all cases")


@exercise("11_fine_voxels_per_coarse_voxel")
def fine_voxels_per_coarse_voxel(answer, coarse_transform, fine_config) -> Feedback:
    """Coarse voxel edge (mm) over fine voxel edge (mm): how many fine voxels one coarse voxel spans."""
    coarse_mm = float(coarse_transform.spacing_mm.max())
    expected = coarse_mm / float(fine_config.spacing_mm)
    value = float(answer)
    if math.isclose(value, expected, rel_tol=0.02):
        return Feedback(True, f"right: a coarse voxel of {coarse_mm:.2f} mm spans {expected:.2f} fine voxels of "
                              f"{fine_config.spacing_mm:g} mm, so {expected ** 3:.0f} fine voxels fill it")
    if math.isclose(value, 1 / expected, rel_tol=0.02):
        return Feedback(False, "that is the inverse: divide the coarse voxel's edge by the fine one's")
    if math.isclose(value, coarse_mm, rel_tol=0.02):
        return Feedback(False, "that is the coarse voxel's edge in mm; divide it by the fine grid's spacing")
    if math.isclose(value, expected**3, rel_tol=0.05):
        return Feedback(False, "that is the number of fine voxels in a coarse voxel's volume; the exercise asks "
                               "along one edge")
    return Feedback(False, f"{value:g} is not it: the coarse grid's spacing is coarse_transform.spacing_mm, the fine "
                           "one fine_config.spacing_mm")


@exercise("11_largest_gain")
def largest_gain(answer, summaries: dict) -> Feedback:
    """The defect class where "coarse + fine" gains the most mean DSC over "coarse"."""
    coarse = {s["defect_class"]: s["dsc"] for s in summaries["coarse"] if s["defect_class"] not in _SUMMARY_ROWS}
    fine = {s["defect_class"]: s["dsc"] for s in summaries["coarse + fine"]
            if s["defect_class"] not in _SUMMARY_ROWS}
    gains = {c: fine[c] - coarse[c] for c in coarse if c in fine and math.isfinite(fine[c] - coarse[c])}
    if not gains:
        return Feedback(False, "the summaries hold no defect class scored by both stages")
    expected = max(gains, key=gains.get)
    if not isinstance(answer, str):
        return Feedback(False, "give the name of the defect class as a string, e.g. 'bilateral'")
    if answer == expected or (answer in gains and gains[answer] == gains[expected]):
        return Feedback(True, f"right: {answer!r} gains {gains[answer]:+.3f} DSC")
    if answer not in gains:
        return Feedback(False, f"{answer!r} is not a defect class here; the classes are {sorted(gains)}")
    if answer == max(fine, key=fine.get):
        return Feedback(False, "that class has the highest DSC with both stages, not the largest gain: subtract "
                               "the coarse DSC of each class first")
    return Feedback(False, f"{answer!r} gains {gains[answer]:+.3f}; another class gains more")
