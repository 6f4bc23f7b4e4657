"""Checkers for the exercises of notebook 13_visualize_reconstructions."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from cranialkit import metrics
from cranialkit.exercises.registry import Feedback, exercise
from cranialkit.volume import Volume


@exercise("13_mesh_volume")
def mesh_volume(answer: float, implant: Volume) -> Feedback:
    """Relative difference (mesh − voxels) / voxels of the exported implant mesh."""
    from cranialkit.export import export_implant

    with tempfile.TemporaryDirectory() as folder:
        report = export_implant(implant, Path(folder) / "implant.stl")
    expected = (report["volume_ml"] - report["voxel_volume_ml"]) / report["voxel_volume_ml"]
    answer = float(answer)
    if abs(answer - expected) <= 0.002:
        return Feedback(True, f"right: {expected:+.2%} — within the 5 % a printable export must keep")
    if abs(answer - expected * 100) <= 0.2:
        return Feedback(False, "that looks like a percentage; give the fraction (e.g. 0.012 for 1.2 %)")
    if abs(answer + expected) <= 0.002:
        return Feedback(False, "sign flipped: compute (mesh − voxels) / voxels")
    return Feedback(False, "export the implant with export_implant and compare 'volume_ml' with 'voxel_volume_ml'")


@exercise("13_one_way_p95")
def one_way_p95(answer: float, predicted: Volume, truth: Volume) -> Feedback:
    """95th percentile of the distances from the predicted implant's surface to the true one's (mm)."""
    forward, backward = metrics.surface_distances(predicted.array, truth.array, predicted.spacing)
    expected = float(np.percentile(forward, 95))
    answer = float(answer)
    tolerance = 1e-3 + 1e-3 * expected
    if abs(answer - expected) <= tolerance:
        pooled = metrics.hd95(predicted.array, truth.array, predicted.spacing)
        return Feedback(True, f"right: {expected:.2f} mm one way; HD95 pools both directions: {pooled:.2f} mm")
    if abs(answer - float(np.percentile(backward, 95))) <= tolerance:
        return Feedback(False, "that is the other direction (true → predicted); take the first array returned")
    if abs(answer - metrics.hd95(predicted.array, truth.array, predicted.spacing)) <= tolerance:
        return Feedback(False, "that is HD95 (both directions pooled); use only predicted → true distances")
    if abs(answer - expected / float(np.mean(predicted.spacing))) <= 0.05 * expected + 1e-3:
        return Feedback(False, "that looks like voxels; pass the spacing so the distances are in mm")
    return Feedback(False, "np.percentile(forward, 95) with forward, _ = surface_distances(pred, truth, spacing)")
