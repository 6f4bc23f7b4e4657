"""Solutions for notebook 11_two_stage_reconstruction."""

from __future__ import annotations


def solve_11_fine_voxels_per_coarse_voxel(coarse_transform, fine_config) -> float:
    """The coarse grid's voxel edge divided by the fine grid's (both in mm)."""
    return float(coarse_transform.spacing_mm[0] / fine_config.spacing_mm)


def solve_11_largest_gain(summaries: dict) -> str:
    """The defect class whose mean DSC rises most from "coarse" to "coarse + fine"."""
    skip = ("mean of classes", "all cases")
    coarse = {s["defect_class"]: s["dsc"] for s in summaries["coarse"] if s["defect_class"] not in skip}
    fine = {s["defect_class"]: s["dsc"] for s in summaries["coarse + fine"] if s["defect_class"] not in skip}
    return max(coarse, key=lambda c: fine[c] - coarse[c])
