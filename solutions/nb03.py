"""Solutions for notebook 03_registration_augmentation."""

from __future__ import annotations

import torch


def solve_03_folding_percent(det) -> float:
    """Percentage of voxels where the Jacobian determinant is <= 0."""
    det = torch.as_tensor(det)
    return float((det <= 0).float().mean() * 100)


def solve_03_new_cases(**_) -> object:
    """Ordered pairs of distinct subjects, each carrying every defect class."""

    def new_cases(n_subjects: int, n_classes: int) -> int:
        return n_subjects * (n_subjects - 1) * n_classes

    return new_cases
