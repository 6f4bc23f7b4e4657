"""Solutions for notebook 13_visualize_reconstructions."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from cranialkit import metrics
from cranialkit.export import export_implant
from cranialkit.volume import Volume


def solve_13_mesh_volume(implant: Volume) -> float:
    with tempfile.TemporaryDirectory() as folder:
        report = export_implant(implant, Path(folder) / "implant.stl")
    return (report["volume_ml"] - report["voxel_volume_ml"]) / report["voxel_volume_ml"]


def solve_13_one_way_p95(predicted: Volume, truth: Volume) -> float:
    forward, _ = metrics.surface_distances(predicted.array, truth.array, predicted.spacing)
    return float(np.percentile(forward, 95))
