"""Soft Dice loss for the reconstruction network (MONAI's ``DiceLoss`` on sigmoid probabilities).

Taught in notebook 10_unet_training.

Soft Dice = 1 − (2 Σ p·t + ε) / (Σ p + Σ t + ε) per case, averaged over the batch, where p = sigmoid(logits). It
does not care about the huge empty background of a skull volume, unlike voxel-wise cross-entropy.
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss

_DICE = DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5, reduction="mean")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean soft Dice loss of a batch: ``logits`` and ``target`` are ``(N, 1, D, H, W)``; target in {0, 1}."""
    if logits.shape != target.shape:
        raise ValueError(f"soft_dice_loss: logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    return _DICE(logits.float(), target.float())
