"""Geometric augmentation of (defective skull, implant) pairs: flips, crops, affine, binary noise.

Taught in notebook 02_geometric_augmentation.

Each transform is a small class with one job and a probability ``prob`` (TorchIO/MONAI style). A transform takes a
dict (keys ``"defective"``, ``"implant"`` and optionally ``"complete"``; other keys pass through unchanged) and
returns a new dict in which every mask got *the same* spatial change, so that the implant still fits the defect.
Masks are resampled with nearest-neighbour interpolation and stay binary. With ``soft=True`` (flips, affine, crops)
the values are fractions, e.g. the partial volumes of the fine stage (notebook 11): they are resampled trilinearly
and not thresholded.

Values may be

* a numpy array ``(D, H, W)`` (one case, e.g. inside a CPU ``DataLoader`` worker) — returned as a bool array, or
* a torch tensor ``(D, H, W)``, ``(C, D, H, W)`` or a batch ``(N, C, D, H, W)`` on any device (e.g. a GPU batch) —
  returned as a tensor of the same shape, dtype and device; every case of a batch gets its own random parameters.

Random parameters are always drawn on the CPU from ``generator`` (a ``torch.Generator``; the global torch RNG when
``None``), so the same generator state gives the same augmentation on a CPU worker and on a GPU batch, and a
trainer can reproduce a run exactly. Sampling uses ``torch.nn.functional.affine_grid``/``grid_sample`` rather than
MONAI's ``RandAffined`` because the latter draws one parameter set per call and cannot augment a GPU batch case by
case in one operation.

Presets (:func:`preset`): ``"none"``, ``"mild"`` and ``"extreme"`` (as in Wodzinski et al. 2024: rotations up to
45°, translations about 15 voxels at 256³, scaling 0.4–1.3, flips along every axis, plus crops and binary noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

MASK_KEYS = ("defective", "implant", "complete")
PRESETS = ("none", "mild", "extreme")


# --------------------------------------------------------------------------------------------------------------------
# Conversion between the accepted value types and a float batch (N, C, D, H, W)
# --------------------------------------------------------------------------------------------------------------------


def _to_batch(value: Any, key: str, soft: bool = False) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """A float batch ``(N, C, D, H, W)`` and a function that turns a transformed batch back into ``value``'s form
    (thresholded at 0.5 for masks; kept as fractions with ``soft``)."""
    if isinstance(value, np.ndarray):
        if value.ndim != 3:
            raise ValueError(f"augment: '{key}' must be a 3D array (D, H, W), got shape {value.shape}")
        batch = torch.from_numpy(np.ascontiguousarray(value)).float()[None, None]
        if soft:
            return batch, lambda out: out[0, 0].numpy().astype(value.dtype, copy=False)
        return batch, lambda out: (out[0, 0] > 0.5).numpy()
    if isinstance(value, torch.Tensor):
        if value.ndim not in (3, 4, 5):
            raise ValueError(
                f"augment: '{key}' must be a (D,H,W), (C,D,H,W) or (N,C,D,H,W) tensor, got {tuple(value.shape)}"
            )
        extra = 5 - value.ndim
        batch = value.float().reshape((1,) * extra + tuple(value.shape))
        dtype = value.dtype

        def restore(out: torch.Tensor) -> torch.Tensor:
            if soft:
                return out.reshape(value.shape).to(dtype)
            out = out.reshape(value.shape) > 0.5
            return out if dtype == torch.bool else out.to(dtype)

        return batch, restore
    raise TypeError(f"augment: '{key}' must be a numpy array or a torch tensor, got {type(value).__name__}")


def _mask_items(sample: dict, keys: Sequence[str]) -> list[str]:
    present = [k for k in keys if k in sample and sample[k] is not None]
    if not present:
        raise KeyError(f"augment: the sample has none of the keys {tuple(keys)} (it has {sorted(sample)})")
    return present


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


# --------------------------------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------------------------------


class RandomTransform:
    """Base class: applies :meth:`apply` to every case of the batch with probability ``prob`` (0–1); ``soft``
    values are fractions (trilinear, not thresholded) instead of masks."""

    def __init__(self, prob: float = 0.5, keys: Sequence[str] = MASK_KEYS, soft: bool = False):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"{type(self).__name__}: prob must be in [0, 1], got {prob}")
        self.prob = float(prob)
        self.keys = tuple(keys)
        self.soft = bool(soft)

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        keys = _mask_items(sample, self.keys)
        converted = {k: _to_batch(sample[k], k, self.soft) for k in keys}
        shapes = {k: tuple(b.shape[i] for i in (0, 2, 3, 4)) for k, (b, _) in converted.items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"{type(self).__name__}: masks differ in batch size or shape: {shapes}")
        n = next(iter(shapes.values()))[0]
        active = torch.rand(n, generator=generator) < self.prob
        params = self.draw(n, generator)  # drawn even when inactive, so the RNG stream does not depend on `prob`
        out = dict(sample)
        if not bool(active.any()):
            return out
        batches = {k: b for k, (b, _) in converted.items()}
        changed = self.apply(batches, params, active)
        for k, (_, restore) in converted.items():
            out[k] = restore(changed[k])
        return out

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """Random parameters for ``n`` cases (on the CPU)."""
        raise NotImplementedError

    def apply(self, batches: dict[str, torch.Tensor], params: dict, active: torch.Tensor) -> dict[str, torch.Tensor]:
        """Transform the float batches; cases where ``active`` is False must stay unchanged."""
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "keys")
        return f"{type(self).__name__}({fields})"


class RandomFlip(RandomTransform):
    """Mirror the volume along each axis in ``axes`` (0, 1, 2 = D, H, W), each axis independently with ``prob``.

    Axis 0 is the patient's left–right axis, so flipping it gives a plausible mirrored skull; flips along the other
    axes give implausible but still useful training shapes (the paper flips along all axes).
    """

    def __init__(self, prob: float = 0.5, axes: Sequence[int] = (0, 1, 2), keys: Sequence[str] = MASK_KEYS,
                 soft: bool = False):
        super().__init__(prob, keys, soft)
        if not axes or any(a not in (0, 1, 2) for a in axes):
            raise ValueError(f"RandomFlip: axes must be a non-empty subset of (0, 1, 2), got {axes}")
        self.axes = tuple(axes)

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        keys = _mask_items(sample, self.keys)
        converted = {k: _to_batch(sample[k], k, self.soft) for k in keys}
        n = next(iter(converted.values()))[0].shape[0]
        flips = torch.rand(n, len(self.axes), generator=generator) < self.prob
        out = dict(sample)
        for k, (batch, restore) in converted.items():
            batch = batch.clone()
            for case in range(n):
                dims = [2 + axis for axis, flip in zip(self.axes, flips[case]) if flip]
                if dims:
                    batch[case] = batch[case].flip([d - 1 for d in dims])
            out[k] = restore(batch)
        return out


def _rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(N, 3, 3)`` from angles ``(N, 3)`` in radians about axes 0, 1, 2 (applied 0, then 1, 2)."""
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    r0 = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], 1).view(-1, 3, 3)
    r1 = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1).view(-1, 3, 3)
    r2 = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1).view(-1, 3, 3)
    return r2 @ r1 @ r0


def _resample(
    batches: dict[str, torch.Tensor], forward: torch.Tensor, shift_vox: torch.Tensor, active: torch.Tensor,
    soft: bool = False,
) -> dict[str, torch.Tensor]:
    """Resample float batches with nearest neighbour (trilinear when ``soft``), all with one sampling grid: output
    voxel ``y`` takes the input at ``x`` where ``y - c = forward @ (x - c) + shift_vox`` (``c`` = grid centre, voxel
    units, axis order D, H, W).

    Cases where ``active`` is False are returned unchanged.
    """
    keys = list(batches)
    channels = [batches[k].shape[1] for k in keys]
    batch = torch.cat([batches[k] for k in keys], dim=1)
    n, _, *size = batch.shape
    size_t = torch.tensor(size, dtype=torch.float64)
    inverse = torch.linalg.inv(forward)  # output -> input, in voxels about the centre
    # affine_grid works in normalized coordinates [-1, 1] (align_corners=False: u = (2x + 1) / size - 1) and in
    # (W, H, D) order; convert voxels about the centre to normalized units: u = x_c * 2 / size.
    half = size_t / 2
    theta = torch.zeros(n, 3, 4, dtype=torch.float64)
    theta_dhw = torch.diag_embed(1 / half) @ inverse @ torch.diag_embed(half.expand(n, 3))
    offset_dhw = -(inverse @ shift_vox.unsqueeze(-1)).squeeze(-1) / half
    order = [2, 1, 0]
    theta[:, :, :3] = theta_dhw[:, order][:, :, order]
    theta[:, :, 3] = offset_dhw[:, order]
    theta = theta.float().to(batch.device)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    moved = F.grid_sample(batch, grid, mode="bilinear" if soft else "nearest", padding_mode="zeros",
                          align_corners=False)
    keep = active.to(batch.device).view(n, 1, 1, 1, 1)
    moved = torch.where(keep, moved, batch)
    return dict(zip(keys, torch.split(moved, channels, dim=1)))


class RandomAffine(RandomTransform):
    """Random rotation, isotropic scaling and translation about the grid centre, the same for all masks.

    ``rotation_deg``: maximum absolute angle about each axis (uniform in [-a, a]); ``scale``: (min, max) zoom
    factor of the object (0.5 halves its size); ``translation``: maximum shift along each axis as a fraction of the
    grid size (0.06 = 15 voxels at 256³, about 4 voxels at 64³). Parts moved out of the grid are lost (zeros).
    """

    def __init__(
        self,
        prob: float = 0.5,
        rotation_deg: float | Sequence[float] = 15.0,
        scale: tuple[float, float] = (0.9, 1.1),
        translation: float = 0.03,
        keys: Sequence[str] = MASK_KEYS,
        soft: bool = False,
    ):
        super().__init__(prob, keys, soft)
        rotation = np.broadcast_to(np.asarray(rotation_deg, dtype=float), (3,))
        if np.any(rotation < 0) or np.any(rotation > 180):
            raise ValueError(f"RandomAffine: rotation_deg must be in [0, 180], got {rotation_deg}")
        if not (0 < scale[0] <= scale[1]):
            raise ValueError(f"RandomAffine: scale must be (min, max) with 0 < min <= max, got {scale}")
        if not 0 <= translation < 0.5:
            raise ValueError(f"RandomAffine: translation is a fraction of the grid size in [0, 0.5), got {translation}")
        self.rotation_deg = tuple(float(r) for r in rotation)
        self.scale = (float(scale[0]), float(scale[1]))
        self.translation = float(translation)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        limits = torch.tensor(self.rotation_deg, dtype=torch.float64) * math.pi / 180
        angles = (2 * torch.rand(n, 3, generator=generator, dtype=torch.float64) - 1) * limits
        zoom = _uniform(n, *self.scale, generator)
        shift = (2 * torch.rand(n, 3, generator=generator, dtype=torch.float64) - 1) * self.translation
        return {"angles": angles, "zoom": zoom, "shift": shift}

    def matrices(self, params: dict) -> torch.Tensor:
        """Forward matrices ``(N, 3, 3)`` (input → output, voxel units about the centre)."""
        return _rotation_matrix(params["angles"]) * params["zoom"].view(-1, 1, 1)

    def apply(self, batches: dict[str, torch.Tensor], params: dict, active: torch.Tensor) -> dict[str, torch.Tensor]:
        forward = self.matrices(params)
        size = torch.tensor(next(iter(batches.values())).shape[2:], dtype=torch.float64)
        shift_vox = params["shift"] * size
        return _resample(batches, forward, shift_vox, active, self.soft)


class RandomCrop(RandomTransform):
    """Crop a random box covering a fraction f ∈ [``min_fraction``, 1] of each axis and resize it back to the grid.

    Like torchvision's ``RandomResizedCrop`` in 3D: the skull is seen partly (out-of-box parts are cut off) and
    enlarged by 1/f. The box lies inside the grid.
    """

    def __init__(self, prob: float = 0.5, min_fraction: float = 0.75, keys: Sequence[str] = MASK_KEYS,
                 soft: bool = False):
        super().__init__(prob, keys, soft)
        if not 0 < min_fraction <= 1:
            raise ValueError(f"RandomCrop: min_fraction must be in (0, 1], got {min_fraction}")
        self.min_fraction = float(min_fraction)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        fraction = _uniform(n, self.min_fraction, 1.0, generator)
        position = torch.rand(n, 3, generator=generator, dtype=torch.float64)  # where the box sits, 0 … 1
        return {"fraction": fraction, "position": position}

    def apply(self, batches: dict[str, torch.Tensor], params: dict, active: torch.Tensor) -> dict[str, torch.Tensor]:
        size = torch.tensor(next(iter(batches.values())).shape[2:], dtype=torch.float64)
        fraction = params["fraction"].view(-1, 1)
        box_centre = (params["position"] - 0.5) * (1 - fraction) * size  # voxels from the grid centre
        forward = torch.diag_embed((1 / fraction).expand(-1, 3))
        shift_vox = -box_centre / fraction
        return _resample(batches, forward, shift_vox, active, self.soft)


def _cross_kernel(device: torch.device) -> torch.Tensor:
    """The 6-connected structuring element (a 3×3×3 cross) as a conv3d kernel."""
    kernel = torch.zeros(1, 1, 3, 3, 3, device=device)
    kernel[0, 0, 1, 1, :] = kernel[0, 0, 1, :, 1] = kernel[0, 0, :, 1, 1] = 1
    return kernel


def dilate(mask: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Binary dilation of a float batch ``(N, 1, D, H, W)`` with a 6-connected cross, ``radius`` times."""
    kernel = _cross_kernel(mask.device)
    for _ in range(radius):
        mask = (F.conv3d(mask, kernel, padding=1) > 0.5).float()
    return mask


def erode(mask: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Binary erosion of a float batch ``(N, 1, D, H, W)`` with a 6-connected cross, ``radius`` times."""
    kernel = _cross_kernel(mask.device)
    for _ in range(radius):
        mask = (F.conv3d(mask, kernel, padding=1) > 6.5).float()
    return mask


class RandomBinaryNoise(RandomTransform):
    """Random morphological erosion or dilation of the defective skull in random patches (segmentation noise).

    With equal chance the defective skull is eroded or dilated (6-connected cross, radius 1 … ``max_radius``
    voxels), but a voxel that this would change is changed only inside random blobs covering about ``coverage`` of
    the volume (a coarse random field, upsampled) and there with probability ``fraction``. A thin skull (2 voxels at
    64³) would vanish under a full erosion; this keeps it and roughens its surface instead. The implant loses the
    voxels that a dilated skull now covers, so input and implant stay disjoint; the complete skull (a target) is
    left unchanged.
    """

    def __init__(self, prob: float = 0.3, max_radius: int = 1, coverage: float = 0.5, fraction: float = 0.5,
                 blob_grid: int = 4):
        super().__init__(prob, keys=MASK_KEYS)
        if max_radius < 1:
            raise ValueError(f"RandomBinaryNoise: max_radius must be >= 1 voxel, got {max_radius}")
        if not 0 < coverage <= 1 or not 0 < fraction <= 1:
            raise ValueError(f"RandomBinaryNoise: coverage and fraction must be in (0, 1], got {coverage}, {fraction}")
        self.max_radius = int(max_radius)
        self.coverage = float(coverage)
        self.fraction = float(fraction)
        self.blob_grid = int(blob_grid)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        dilate_flag = torch.rand(n, generator=generator) < 0.5
        radius = torch.randint(1, self.max_radius + 1, (n,), generator=generator)
        field = torch.rand(n, 1, self.blob_grid, self.blob_grid, self.blob_grid, generator=generator)
        seeds = torch.randint(0, 2**62, (n,), generator=generator)  # per-voxel draws, made only where needed
        return {"dilate": dilate_flag, "radius": radius, "field": field, "seeds": seeds}

    def apply(self, batches: dict[str, torch.Tensor], params: dict, active: torch.Tensor) -> dict[str, torch.Tensor]:
        if "defective" not in batches:
            raise KeyError("RandomBinaryNoise needs a 'defective' mask")
        skull = batches["defective"]
        size = skull.shape[2:]
        blobs = F.interpolate(params["field"].to(skull.device), size=size, mode="trilinear", align_corners=False)
        blobs = blobs > (1 - self.coverage)
        noisy = skull.clone()
        for case in range(skull.shape[0]):
            if not active[case]:
                continue
            r = int(params["radius"][case])
            x = skull[case : case + 1]
            changed = dilate(x, r) if params["dilate"][case] else erode(x, r)
            voxels = torch.rand(tuple(size), generator=torch.Generator().manual_seed(int(params["seeds"][case])))
            where = blobs[case, 0] & (voxels.to(skull.device) < self.fraction)
            noisy[case, 0] = torch.where(where, changed[0, 0], x[0, 0])
        out = dict(batches)
        out["defective"] = noisy
        if "implant" in batches:
            out["implant"] = batches["implant"] * (noisy < 0.5)
        return out


class Compose:
    """Apply transforms one after the other with one random generator (``Compose([])`` is the identity)."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        for transform in self.transforms:
            sample = transform(sample, generator)
        return sample

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        return f"Compose([\n  {inner}\n])" if self.transforms else "Compose([])"


def preset(name: str, soft: bool = False, keys: Sequence[str] = MASK_KEYS) -> Compose:
    """A named augmentation pipeline: ``"none"`` (identity), ``"mild"`` or ``"extreme"`` (the paper's ranges).

    ``soft=True`` is the same pipeline for partial volumes (fractions, resampled trilinearly), without the binary
    noise, which only makes sense for masks. ``keys``: the volumes of a sample that move together.
    """
    if name == "none":
        return Compose([])
    if name == "mild":
        transforms = [
            RandomFlip(prob=0.5, axes=(0,), keys=keys, soft=soft),
            RandomAffine(prob=0.5, rotation_deg=10.0, scale=(0.9, 1.1), translation=0.03, keys=keys, soft=soft),
            RandomBinaryNoise(prob=0.1, max_radius=1),
        ]
    elif name == "extreme":
        transforms = [
            RandomFlip(prob=0.5, axes=(0, 1, 2), keys=keys, soft=soft),
            RandomCrop(prob=0.2, min_fraction=0.75, keys=keys, soft=soft),
            RandomAffine(prob=0.8, rotation_deg=45.0, scale=(0.4, 1.3), translation=0.06, keys=keys, soft=soft),
            RandomBinaryNoise(prob=0.3, max_radius=1),
        ]
    else:
        raise ValueError(f"unknown augmentation preset {name!r}; choose one of {PRESETS}")
    return Compose([t for t in transforms if not (soft and isinstance(t, RandomBinaryNoise))])


def augment_batch(
    defective: torch.Tensor,
    target: torch.Tensor,
    transform: Callable,
    generator: torch.Generator | None = None,
    target_key: str = "implant",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a training batch ``(N, 1, D, H, W)`` of inputs and targets (on any device) with one transform."""
    out = transform({"defective": defective, target_key: target}, generator)
    return out["defective"], out[target_key]
