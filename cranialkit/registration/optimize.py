"""Multi-level instance-optimization registration of skull masks: an affine stage, then a dense displacement field.

Taught in notebook 03_registration_augmentation.

Nothing is learned across pairs: for each (batch of) pair(s) the parameters of the transform are optimized directly
with Adam, a fixed number of iterations per pyramid level, coarse to fine.

1. Affine stage: ``theta`` ``(B, 3, 4)`` in normalized coordinates (see :mod:`.transforms`), started from the
   alignment of the centres of mass, optimized on the coarse levels (``affine_levels``).
2. Deformable stage: a DDF ``u`` in voxels of each level, added to the affine displacement, optimized level by
   level; the field of one level is upsampled to start the next. The loss per pair is
   ``similarity(warped source, target) + alpha * regularizer(u)``.

Similarity is computed on masks smoothed by ``sigma`` voxels on each level (a wider basin of attraction for thin
skull shells). Pairs in a batch do not interact: each pair's loss depends only on its own parameters and Adam works
element-wise, so registering B pairs at once gives the same result as registering them one by one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from cranialkit.registration.jacobian import folding_percent, jacobian_determinant, std_log_jacobian
from cranialkit.registration.losses import REGULARIZERS, SIMILARITIES, regularization_loss, similarity_loss
from cranialkit.registration.transforms import (
    affine_to_ddf,
    downsample,
    identity_affine,
    normalized_grid,
    pyramid_shapes,
    resize_ddf,
    smooth,
    warp,
    warp_mask,
)

DEFAULT_ALPHA = 1.0
"""Default diffusion weight: Dice >= 0.90 on phantom pairs at 64³ and 128³ with few folded voxels (notebook 03)."""

_DEFAULT_ITERATIONS = (100, 80, 60, 40, 25)  # coarse ... fine; the last `levels` of them are used


@dataclass
class RegistrationConfig:
    """Settings of :func:`register`. Iteration counts are per pyramid level, coarse to fine.

    alpha: weight of the regularizer (larger = smoother, less folding, lower Dice).
    levels: pyramid levels (each halves the grid; the finest is the input grid).
    affine_levels: how many of the coarsest levels the affine stage runs on (0 = no affine stage).
    affine_iterations, iterations: Adam steps per level for the affine and the deformable stage (default
        deformable: 80, 60, 40, 25 for 4 levels).
    affine_lr: Adam step for the affine (normalized units); lr: Adam step for the DDF (voxels).
    sigma: Gaussian smoothing of both masks before comparison, in voxels of each level (one value or one per level;
        default 1 voxel on the coarse levels, none on the finest, where the sharp masks decide the final Dice).
    similarity, affine_similarity: "mse", "dice" or "mse+dice" (deformable, affine stage).
    regularizer: "diffusion" (squared gradients) or "bending" (squared second derivatives).
    """

    alpha: float = DEFAULT_ALPHA
    levels: int = 4
    affine_levels: int = 2
    affine_iterations: int = 60
    iterations: int | Sequence[int] | None = None
    affine_lr: float = 0.01
    lr: float = 0.2
    sigma: float | Sequence[float] | None = None
    similarity: str = "mse+dice"
    affine_similarity: str = "mse"
    regularizer: str = "diffusion"
    min_size: int = 8

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if self.levels < 1:
            raise ValueError(f"levels must be >= 1, got {self.levels}")
        if self.iterations is None:  # fewer steps where they are expensive: 25 on the finest level, more when coarser
            extra = max(0, self.levels - len(_DEFAULT_ITERATIONS))
            self.iterations = (_DEFAULT_ITERATIONS[0],) * extra + _DEFAULT_ITERATIONS[-self.levels:]
        if isinstance(self.iterations, int):
            self.iterations = (self.iterations,) * self.levels
        self.iterations = tuple(int(i) for i in self.iterations)
        if len(self.iterations) != self.levels:
            raise ValueError(f"iterations needs one count per level ({self.levels}), got {self.iterations}")
        if any(i < 0 for i in self.iterations) or self.affine_iterations < 0:
            raise ValueError(f"iteration counts must be >= 0, got {self.iterations} and {self.affine_iterations}")
        if self.sigma is None:  # smooth coarse levels for a wide basin, match the sharp masks on the finest
            self.sigma = (1.0,) * (self.levels - 1) + (0.0,)
        if isinstance(self.sigma, (int, float)):
            self.sigma = (float(self.sigma),) * self.levels
        self.sigma = tuple(float(s) for s in self.sigma)
        if len(self.sigma) != self.levels:
            raise ValueError(f"sigma needs one value per level ({self.levels}), got {self.sigma}")
        if not 0 <= self.affine_levels <= self.levels:
            raise ValueError(f"affine_levels must be in 0..{self.levels}, got {self.affine_levels}")
        if self.similarity not in SIMILARITIES or self.affine_similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {self.similarity!r}, "
                             f"{self.affine_similarity!r}")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {self.regularizer!r}")
        if self.lr <= 0 or self.affine_lr <= 0:
            raise ValueError(f"learning rates must be > 0, got lr={self.lr}, affine_lr={self.affine_lr}")


@dataclass
class RegistrationResult:
    """The transforms found for B pairs, on the input grid.

    theta: ``(B, 3, 4)`` affine (normalized coordinates). ddf: ``(B, 3, D, H, W)`` full displacement (affine +
    deformable) in voxels of the input grid. history: per stage and level, the mean loss of each iteration.
    """

    theta: torch.Tensor
    ddf: torch.Tensor
    seconds: float
    history: list[dict] = field(default_factory=list)

    @property
    def affine_ddf(self) -> torch.Tensor:
        """The displacement of the affine stage alone (voxels)."""
        return affine_to_ddf(self.theta, self.ddf.shape[2:])

    def warp_mask(self, mask: torch.Tensor | np.ndarray, affine_only: bool = False) -> torch.Tensor:
        """Warp bool masks ``(B, D, H, W)`` (or one ``(D, H, W)`` for every pair) into the target space."""
        ddf = self.affine_ddf if affine_only else self.ddf
        masks = as_batch(mask, ddf.device)
        if masks.shape[0] == 1 and ddf.shape[0] > 1:
            masks = masks.expand(ddf.shape[0], -1, -1, -1, -1)
        return warp_mask(masks, ddf)[:, 0]

    def jacobian(self) -> torch.Tensor:
        """``det J`` of the full transform per voxel, ``(B, D, H, W)``."""
        return jacobian_determinant(self.ddf)


def as_batch(volumes: torch.Tensor | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """Masks ``(D, H, W)``, ``(B, D, H, W)`` or ``(B, 1, D, H, W)`` (numpy or torch) as float ``(B, 1, D, H, W)``."""
    tensor = torch.as_tensor(np.asarray(volumes) if isinstance(volumes, np.ndarray) else volumes)
    if tensor.ndim == 3:
        tensor = tensor[None, None]
    elif tensor.ndim == 4:
        tensor = tensor[:, None]
    if tensor.ndim != 5 or tensor.shape[1] != 1:
        raise ValueError(f"expected masks (D, H, W), (B, D, H, W) or (B, 1, D, H, W), got {tuple(tensor.shape)}")
    return tensor.to(device=device, dtype=torch.float32)


def center_of_mass_affine(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Translation-only affines ``(B, 3, 4)`` that move each target's centre of mass onto the source's."""
    grid = normalized_grid(source.shape[2:], source.device).flatten(1)  # (3, V)

    def centre(volume: torch.Tensor) -> torch.Tensor:  # pair by pair, so that batching does not change rounding
        weights = volume.flatten(1)
        return torch.cat([(w @ grid.T) / w.sum().clamp_min(1e-6) for w in weights.split(1)])  # (B, 3)

    theta = identity_affine(source.shape[0], source.device)
    theta[:, :, 3] = centre(source) - centre(target)
    return theta


def dice_per_pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dice of two batches of binary masks ``(B, ...)`` per pair; two empty masks give 1."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter, total = (a * b).sum(1), a.sum(1) + b.sum(1)
    return torch.where(total > 0, 2 * inter / total.clamp_min(1e-12), torch.ones_like(total))


def _pyramid(volume: torch.Tensor, shapes: list[tuple[int, ...]], sigmas: Sequence[float]) -> list[torch.Tensor]:
    """Downsampled, smoothed copies of each volume, coarse to fine. Pair by pair: batched convolutions may round
    differently, and Adam would amplify that, so a pair would not register the same in another batch."""
    return [
        torch.cat([smooth(downsample(volume[b : b + 1], shape), sigma) for b in range(volume.shape[0])])
        for shape, sigma in zip(shapes, sigmas)
    ]


def register(
    source: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    config: RegistrationConfig | None = None,
    device: torch.device | str = "cpu",
    deformable: bool = True,
) -> RegistrationResult:
    """Register source masks onto target masks (both ``(D, H, W)``, ``(B, D, H, W)`` or ``(B, 1, D, H, W)``).

    Returns the transform that pulls the source into the target's space (``warped = source(x + ddf(x))``).
    ``deformable=False`` stops after the affine stage.
    """
    config = config or RegistrationConfig()
    start = time.perf_counter()
    src, tgt = as_batch(source, device), as_batch(target, device)
    if src.shape != tgt.shape:
        raise ValueError(f"source {tuple(src.shape)} and target {tuple(tgt.shape)} must have the same shape")
    if min(src.shape[2:]) < 3:
        raise ValueError(f"grid {tuple(src.shape[2:])} is too small to register (need >= 3 voxels per axis)")
    shapes = pyramid_shapes(src.shape[2:], config.levels, config.min_size)
    src_levels, tgt_levels = _pyramid(src, shapes, config.sigma), _pyramid(tgt, shapes, config.sigma)
    history: list[dict] = []

    theta = center_of_mass_affine(src, tgt)
    theta = theta.detach().requires_grad_(True)
    for level in range(config.affine_levels):
        optimizer, schedule = _adam([theta], config.affine_lr, config.affine_iterations)
        losses = []
        for _ in range(config.affine_iterations):
            optimizer.zero_grad(set_to_none=True)
            warped = warp(src_levels[level], affine_to_ddf(theta, shapes[level]))
            loss = similarity_loss(warped, tgt_levels[level], config.affine_similarity)
            loss.sum().backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.detach())
        history.append(_record("affine", level, shapes[level], losses))
    theta = theta.detach()

    if not deformable:
        ddf = affine_to_ddf(theta, src.shape[2:])
        return RegistrationResult(theta, ddf, time.perf_counter() - start, history)

    u = torch.zeros(src.shape[0], 3, *shapes[0], device=src.device)
    for level, shape in enumerate(shapes):
        u = resize_ddf(u, shape).detach().requires_grad_(True)
        affine_part = affine_to_ddf(theta, shape)
        optimizer, schedule = _adam([u], config.lr, config.iterations[level])
        losses = []
        for _ in range(config.iterations[level]):
            optimizer.zero_grad(set_to_none=True)
            warped = warp(src_levels[level], affine_part + u)
            loss = similarity_loss(warped, tgt_levels[level], config.similarity)
            if config.alpha > 0:
                loss = loss + config.alpha * regularization_loss(u, config.regularizer)
            loss.sum().backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.detach())
        history.append(_record("deformable", level, shape, losses))
    u = resize_ddf(u.detach(), src.shape[2:])
    ddf = affine_to_ddf(theta, src.shape[2:]) + u
    return RegistrationResult(theta, ddf, time.perf_counter() - start, history)


def _adam(params: list[torch.Tensor], lr: float, iterations: int):
    """Adam with a cosine decay of the step to 5 % over the level, so that each level settles instead of jittering."""
    optimizer = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(iterations, 1), eta_min=0.05 * lr)
    return optimizer, schedule


def _record(stage: str, level: int, shape: tuple[int, ...], losses: list[torch.Tensor]) -> dict:
    per_iteration = torch.stack(losses).mean(dim=1).cpu().tolist() if losses else []
    return {"stage": stage, "level": level, "shape": list(shape), "loss": per_iteration}


def summarize(
    result: RegistrationResult, source: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray
) -> list[dict]:
    """Per pair: Dice after registration (warped source vs target), affine-only Dice, Dice before, folding % and
    std of log|J| over the grid, and seconds per pair (wall time of the batch / B)."""
    device = result.ddf.device
    tgt = as_batch(target, device)[:, 0] > 0.5
    src = as_batch(source, device)[:, 0] > 0.5
    det = result.jacobian()
    rows = {
        "dice": dice_per_pair(result.warp_mask(src), tgt),
        "dice_affine": dice_per_pair(result.warp_mask(src, affine_only=True), tgt),
        "dice_before": dice_per_pair(src, tgt),
        "folding_percent": folding_percent(det),
        "std_log_jacobian": std_log_jacobian(det),
    }
    batch = result.ddf.shape[0]
    return [
        {**{k: float(v[b]) for k, v in rows.items()}, "seconds": result.seconds / batch} for b in range(batch)
    ]
