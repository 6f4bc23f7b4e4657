"""Jacobian determinant of a transform, folding and smoothness summaries.

Taught in notebook 03_registration_augmentation.

For the transform ``x -> x + u(x)`` with ``u`` in voxels, the Jacobian is ``J = I + grad u`` (central differences,
one-sided at the border). ``det J`` is the local volume change: 1 = preserved, 2 = doubled, <= 0 = the transform
folds space over itself there (not invertible): such voxels are counted as *folded*.
"""

from __future__ import annotations

import torch


def jacobian_determinant(ddf: torch.Tensor) -> torch.Tensor:
    """``det(I + grad u)`` per voxel, ``(B, D, H, W)``, for a DDF ``(B, 3, D, H, W)`` in voxels."""
    if ddf.ndim != 5 or ddf.shape[1] != 3:
        raise ValueError(f"ddf must have shape (B, 3, D, H, W), got {tuple(ddf.shape)}")
    # grads[c][a] = d u_c / d x_a, each (B, D, H, W)
    grads = [torch.gradient(ddf[:, c], dim=(1, 2, 3)) for c in range(3)]
    j = [[grads[c][a] + (1.0 if a == c else 0.0) for a in range(3)] for c in range(3)]
    return (
        j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1])
        - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
        + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0])
    )


def _masked(values: torch.Tensor, mask: torch.Tensor | None) -> list[torch.Tensor]:
    """Per-pair 1D tensors of the values inside ``mask`` (all voxels when ``mask`` is None)."""
    if mask is None:
        return [v.flatten() for v in values]
    mask = mask.reshape(values.shape).bool()
    return [v[m] for v, m in zip(values, mask)]


def folding_percent(det: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Percentage of voxels (inside ``mask`` if given) where ``det J <= 0``, per pair ``(B,)``."""
    parts = _masked(det, mask)
    return torch.stack([(p <= 0).float().mean() * 100.0 if p.numel() else p.new_zeros(()) for p in parts])


def std_log_jacobian(det: torch.Tensor, mask: torch.Tensor | None = None, clip: float = 1e-9) -> torch.Tensor:
    """Smoothness summary: standard deviation of ``log(det J)`` (clipped at ``clip``), per pair ``(B,)``.

    0 for a rigid or affine transform; larger for rougher fields (Learn2Reg's SDlogJ).
    """
    parts = _masked(det, mask)
    return torch.stack([torch.log(p.clamp_min(clip)).std() if p.numel() > 1 else p.new_zeros(()) for p in parts])
