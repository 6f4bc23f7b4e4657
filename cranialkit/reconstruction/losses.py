"""Losses of the reconstruction networks: soft Dice (MONAI's ``DiceLoss`` on sigmoid probabilities), and soft Dice
plus binary cross-entropy for targets that are fractions.

Taught in notebooks 10_unet_training (soft Dice) and 11_two_stage_reconstruction (Dice + cross-entropy).

Soft Dice = 1 − (2 Σ p·t + ε) / (Σ p + Σ t + ε) per case, averaged over the batch, where p = sigmoid(logits). It
does not care about the huge empty background of a skull volume, unlike voxel-wise cross-entropy. With a target
that is the *share* of each voxel covered by the implant (partial volume, 0–1), soft Dice alone pushes p to 0 or 1;
cross-entropy is smallest exactly at p = t, so the sum learns the fractions that place a surface inside a voxel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

_DICE = DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5, reduction="mean")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean soft Dice loss of a batch: ``logits`` and ``target`` are ``(N, 1, D, H, W)``; target in {0, 1}."""
    if logits.shape != target.shape:
        raise ValueError(f"soft_dice_loss: logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    return _DICE(logits.float(), target.float())


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice plus binary cross-entropy (mean over voxels); ``target`` may hold fractions in [0, 1]."""
    if logits.shape != target.shape:
        raise ValueError(f"dice_bce_loss: logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    logits, target = logits.float(), target.float()
    return _DICE(logits, target) + F.binary_cross_entropy_with_logits(logits, target)


LOSSES = {"dice": soft_dice_loss, "dice+bce": dice_bce_loss}
