"""Transforms for registration: affine matrices, dense displacement fields (DDF), warping and the pyramid.

Taught in notebook 03_registration_augmentation.

Conventions (all batched, same code on CPU and GPU):
- Volumes are tensors ``(B, C, D, H, W)``; spatial axes ``D, H, W`` are the array axes i, j, k.
- A transform maps every *target* voxel ``x`` to the *source* point it pulls from: ``warped(x) = source(x + u(x))``.
- A DDF ``u`` is ``(B, 3, D, H, W)`` in **voxels of the grid it lives on**, channel c along axis c (i, j, k).
  On a grid with isotropic spacing ``s`` mm, a displacement of 1 voxel is ``s`` mm.
- An affine ``theta`` is ``(B, 3, 4)`` acting on **normalized coordinates** ``n = 2 x / (S - 1) - 1`` in [-1, 1]
  (``align_corners=True``), in axis order (i, j, k): ``n' = theta[:, :, :3] @ n + theta[:, :, 3]``. Normalized
  coordinates make the affine independent of the pyramid level.
- Pyramid levels sample the same [-1, 1] cube at fewer points (``align_corners=True``), so a DDF moves between
  levels by trilinear interpolation and a rescale by ``(S_new - 1) / (S_old - 1)`` per axis.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers import GaussianFilter


def identity_affine(batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(batch, 3, 4)`` identity affines (normalized coordinates)."""
    eye = torch.eye(3, 4, device=device)
    return eye.unsqueeze(0).repeat(batch, 1, 1)


def normalized_grid(shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """``(3, D, H, W)`` normalized coordinates in [-1, 1] of every voxel of a grid of ``shape``."""
    axes = [torch.linspace(-1.0, 1.0, int(s), device=device) for s in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)


def _half_extent(shape: Sequence[int], device: torch.device | str) -> torch.Tensor:
    """``(1, 3, 1, 1, 1)`` voxels per unit of normalized coordinate: ``(S - 1) / 2`` per axis."""
    half = torch.tensor([(int(s) - 1) / 2.0 for s in shape], device=device)
    return half.view(1, 3, 1, 1, 1)


def affine_to_ddf(theta: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The DDF (voxels of ``shape``) of the affine ``theta`` ``(B, 3, 4)`` given in normalized coordinates."""
    if theta.ndim != 3 or theta.shape[1:] != (3, 4):
        raise ValueError(f"theta must have shape (B, 3, 4), got {tuple(theta.shape)}")
    grid = normalized_grid(shape, theta.device).flatten(1)  # (3, V)
    # Pair by pair: a batched matmul (and its backward) may round differently from a single one, and the optimizer
    # would amplify that; this way a pair registers bit for bit the same in any batch.
    moved = torch.cat([t[:, :, :3] @ grid + t[:, :, 3:] for t in theta.split(1)])  # (B, 3, V)
    ddf_normalized = (moved - grid).view(theta.shape[0], 3, *[int(s) for s in shape])
    return ddf_normalized * _half_extent(shape, theta.device)


def resize_ddf(ddf: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Resample a DDF to another grid of the same [-1, 1] cube, rescaling its voxel units to the new grid."""
    shape = tuple(int(s) for s in shape)
    old = ddf.shape[2:]
    if tuple(old) == shape:
        return ddf
    resized = F.interpolate(ddf, size=shape, mode="trilinear", align_corners=True)
    scale = torch.tensor([(n - 1) / (o - 1) for n, o in zip(shape, old)], device=ddf.device, dtype=ddf.dtype)
    return resized * scale.view(1, 3, 1, 1, 1)


def warp(image: torch.Tensor, ddf: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Pull ``image`` ``(B, C, D, H, W)`` through ``ddf`` (voxels); outside the grid counts as 0 (background).

    ``mode="bilinear"`` is trilinear interpolation in 3D. Same result as MONAI's
    :class:`~monai.networks.blocks.Warp` (tested), written out with ``torch.nn.functional.grid_sample`` because
    MONAI 1.6's ``Warp`` rebuilds its reference grid on the CPU at every call (its cache check never matches) —
    on a GPU that host work and copy made registration 3–5× slower.
    """
    if image.shape[0] != ddf.shape[0] or image.shape[2:] != ddf.shape[2:]:
        raise ValueError(f"image {tuple(image.shape)} and ddf {tuple(ddf.shape)} disagree in batch or grid size")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    shape = tuple(int(s) for s in ddf.shape[2:])
    grid, half_extent = _cached_grid(shape, ddf.device, ddf.dtype)
    points = grid + ddf / half_extent
    # grid_sample wants the last axis in (x, y, z) = (k, j, i) order.
    sample_at = points.permute(0, 2, 3, 4, 1).flip(-1)
    return F.grid_sample(image, sample_at, mode=mode, padding_mode="zeros", align_corners=True)


@functools.lru_cache(maxsize=4)
def _cached_grid(shape: tuple[int, ...], device: torch.device,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`normalized_grid` as ``(1, 3, D, H, W)`` and :func:`_half_extent`, kept for the few grid shapes of a
    pyramid so that the optimization loop makes neither again (nor copies them to the GPU) at every step."""
    return normalized_grid(shape, device).to(dtype).unsqueeze(0), _half_extent(shape, device).to(dtype)


def warp_mask(mask: torch.Tensor, ddf: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Warp a binary mask by trilinear interpolation, then threshold (smoother edges than nearest neighbour)."""
    return warp(mask.float(), ddf, mode="bilinear") >= threshold


def smooth(volume: torch.Tensor, sigma_voxels: float) -> torch.Tensor:
    """Gaussian smoothing with standard deviation ``sigma_voxels`` (MONAI separable filter); 0 returns the input."""
    if sigma_voxels <= 0:
        return volume
    return GaussianFilter(spatial_dims=3, sigma=float(sigma_voxels)).to(volume.device)(volume)


def pyramid_shapes(shape: Sequence[int], levels: int, min_size: int = 8) -> list[tuple[int, ...]]:
    """Grid shapes from coarse to fine: each level halves the previous one (not below ``min_size`` voxels)."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    shapes = []
    for level in range(levels - 1, -1, -1):
        factor = 2**level
        shapes.append(tuple(max(min(int(s), min_size), math.ceil(int(s) / factor)) for s in shape))
    return shapes


def downsample(volume: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Resample ``volume`` to a coarser ``shape`` after Gaussian anti-aliasing (sigma = half the step)."""
    shape = tuple(int(s) for s in shape)
    if tuple(volume.shape[2:]) == shape:
        return volume
    step = max(o / n for o, n in zip(volume.shape[2:], shape))
    blurred = smooth(volume, 0.5 * step)
    return F.interpolate(blurred, size=shape, mode="trilinear", align_corners=True)
