"""Solutions for notebook 02_geometric_augmentation."""

from __future__ import annotations

import numpy as np
import torch

from cranialkit.augment.geometric import RandomAffine


def solve_02_flip_pair(**_) -> object:
    """A function that mirrors both masks along one axis and returns a new sample."""

    def flip_pair(sample: dict, axis: int) -> dict:
        return {**sample, "defective": np.flip(sample["defective"], axis), "implant": np.flip(sample["implant"], axis)}

    return flip_pair


def solve_02_scale_ratio(sample: dict) -> float:
    """Defective-skull voxels after halving the object's size, divided by those before."""
    transform = RandomAffine(prob=1.0, rotation_deg=0, scale=(0.5, 0.5), translation=0)
    scaled = transform(sample, torch.Generator().manual_seed(0))
    return np.count_nonzero(scaled["defective"]) / np.count_nonzero(sample["defective"])
