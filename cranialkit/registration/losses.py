"""Similarity measures on (soft) skull masks and regularizers of a displacement field, one value per pair.

Taught in notebook 03_registration_augmentation.

Every function returns a tensor of shape ``(B,)``: one value per pair in the batch, so that summing them gives each
pair its own gradient (batched registration equals registering the pairs one by one).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from monai.losses import BendingEnergyLoss, DiceLoss, DiffusionLoss

SIMILARITIES = ("mse", "dice", "mse+dice")
REGULARIZERS = ("diffusion", "bending")

_DICE = DiceLoss(reduction="none", smooth_nr=1e-5, smooth_dr=1e-5)
_DIFFUSION = DiffusionLoss(reduction="none")
_BENDING = BendingEnergyLoss(reduction="none")


def _per_pair_mean(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).mean(dim=1)


def mse(warped: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of two (soft) masks in [0, 1], per pair."""
    return _per_pair_mean((warped - target) ** 2)


def soft_dice_loss(warped: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − soft Dice of two masks in [0, 1], per pair (MONAI :class:`~monai.losses.DiceLoss`)."""
    return _per_pair_mean(_DICE(warped, target))


def similarity_loss(warped: torch.Tensor, target: torch.Tensor, kind: str = "mse+dice") -> torch.Tensor:
    """The similarity term: ``"mse"``, ``"dice"`` (1 − soft Dice) or ``"mse+dice"`` (their sum), per pair.

    MSE on soft masks is smooth and pulls from far away (good on coarse, blurred levels); soft Dice weighs the thin
    skull against the large background and sharpens the fit on fine levels.
    """
    if kind == "mse":
        return mse(warped, target)
    if kind == "dice":
        return soft_dice_loss(warped, target)
    if kind == "mse+dice":
        return mse(warped, target) + soft_dice_loss(warped, target)
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")


def _pad(ddf: torch.Tensor) -> torch.Tensor:
    """Replicate one voxel around the field so that MONAI's central differences also cover the border voxels
    (unpadded, the outermost voxels would be free of any regularization and could drift far)."""
    return F.pad(ddf, (1, 1, 1, 1, 1, 1), mode="replicate")


def diffusion(ddf: torch.Tensor) -> torch.Tensor:
    """Diffusion regularizer: mean squared spatial gradient of the DDF (voxel/voxel, so resolution-free), per pair."""
    with warnings.catch_warnings():  # MONAI indexes with a list (a torch deprecation warning, harmless here)
        warnings.simplefilter("ignore", UserWarning)
        return _per_pair_mean(_DIFFUSION(_pad(ddf)))


def bending_energy(ddf: torch.Tensor) -> torch.Tensor:
    """Bending energy: mean squared second derivatives of the DDF (1/voxel), per pair."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _per_pair_mean(_BENDING(_pad(ddf)))


def regularization_loss(ddf: torch.Tensor, kind: str = "diffusion") -> torch.Tensor:
    """The regularizer of a DDF ``(B, 3, D, H, W)``: ``"diffusion"`` or ``"bending"``, per pair."""
    if kind == "diffusion":
        return diffusion(ddf)
    if kind == "bending":
        return bending_energy(ddf)
    raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {kind!r}")
