"""Implant quality metrics of the AutoImplant challenges: DSC, boundary DSC and HD95 (mm), spacing-aware.

Taught in notebook 01_data_and_preprocessing (and used for evaluation in notebooks 10–13).

Definitions (``docs/DESIGN.md``, "Metrics"), on the implant (predicted vs true) at the case's grid and spacing:

- DSC  = 2|A∩B| / (|A|+|B|).
- bDSC = DSC of the two implants after removing every voxel farther than ``distance_mm`` (10 mm) from the
  defective skull (Euclidean distance transform of the defective skull's background, with spacing): how well the
  implant fits the rim of the defect.
- HD95 = 95th percentile of the pooled, symmetric surface distances in mm. Surface = mask minus its erosion with a
  6-connected structuring element; the distances of each surface's voxels to the other surface (distance
  transform with spacing, anisotropic spacing included) are pooled into one set.

Edge cases: both masks empty → DSC 1 and HD95 0 (a perfect "nothing"); exactly one empty → DSC 0 and HD95 inf.
bDSC applies the DSC rule to the restricted masks (so two implants that both lie farther than ``distance_mm`` from
the defective skull score 1).

Distance transforms run on the bounding box of the masks plus a margin (exact, and much faster than on a 512³
grid): every surface voxel lies inside the box, and a margin of ``distance_mm`` keeps every defective-skull voxel
that can be within ``distance_mm`` of the implants.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

_SIX_CONNECTED = ndimage.generate_binary_structure(3, 1)


def _as_bool(mask: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(getattr(mask, "array", mask))
    if array.ndim != 3:
        raise ValueError(f"{name}: expected a 3D mask, got shape {array.shape}")
    if array.dtype != bool:
        if not np.all((array == 0) | (array == 1)):
            raise ValueError(f"{name}: not a binary mask (values other than 0 and 1)")
        array = array.astype(bool)
    return array


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = _as_bool(pred, "pred"), _as_bool(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth have different shapes: {pred.shape} vs {truth.shape}")
    return pred, truth


def _spacing(spacing: Sequence[float] | np.ndarray | None) -> np.ndarray:
    if spacing is None:
        return np.ones(3)
    values = np.asarray(spacing, dtype=float).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, 3)
    if values.size != 3 or np.any(values <= 0) or not np.all(np.isfinite(values)):
        raise ValueError(f"spacing must be three positive finite numbers (mm per voxel), got {spacing}")
    return values


def _crop_box(masks: Sequence[np.ndarray], margin: Sequence[int]) -> tuple[slice, ...]:
    """Bounding box of the union of ``masks`` grown by ``margin`` voxels per axis (clipped to the grid)."""
    union = np.logical_or.reduce(masks)
    box = []
    for axis in range(3):
        present = np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != axis)))
        start = max(int(present[0]) - int(margin[axis]), 0)
        stop = min(int(present[-1]) + 1 + int(margin[axis]), union.shape[axis])
        box.append(slice(start, stop))
    return tuple(box)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice similarity coefficient 2|A∩B| / (|A|+|B|) of two binary masks (1.0 when both are empty)."""
    pred, truth = _pair(pred, truth)
    total = int(pred.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, truth).sum()) / total


def boundary_dice(pred: np.ndarray, truth: np.ndarray, defective: np.ndarray,
                  spacing: Sequence[float] | np.ndarray | None = None, distance_mm: float = 10.0) -> float:
    """Boundary Dice: DSC of ``pred`` and ``truth`` restricted to voxels within ``distance_mm`` of ``defective``.

    Distance = Euclidean distance transform (mm, with ``spacing``) of the defective skull's background.
    """
    pred, truth = _pair(pred, truth)
    defective = _as_bool(defective, "defective")
    if defective.shape != pred.shape:
        raise ValueError(f"defective has shape {defective.shape}, the implants {pred.shape}")
    spacing = _spacing(spacing)
    if not distance_mm > 0:
        raise ValueError(f"distance_mm must be positive, got {distance_mm}")
    if not (pred.any() or truth.any()):
        return 1.0
    margin = np.ceil(distance_mm / spacing).astype(int) + 1
    box = _crop_box([pred, truth], margin)
    near_defective = defective[box]
    if not near_defective.any():  # no defective voxel within reach: both restricted masks are empty
        return 1.0
    distance = ndimage.distance_transform_edt(~near_defective, sampling=spacing)
    band = distance <= distance_mm
    return dice(pred[box] & band, truth[box] & band)


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a binary mask: the mask minus its erosion with a 6-connected structuring element."""
    mask = _as_bool(mask, "mask")
    return mask & ~ndimage.binary_erosion(mask, structure=_SIX_CONNECTED, border_value=0)


def surface_distances(pred: np.ndarray, truth: np.ndarray,
                      spacing: Sequence[float] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``pred`` to ``truth``'s surface, and from ``truth``'s to ``pred``'s.

    Both masks must be non-empty.
    """
    pred, truth = _pair(pred, truth)
    if not (pred.any() and truth.any()):
        raise ValueError("surface_distances needs two non-empty masks")
    spacing = _spacing(spacing)
    box = _crop_box([pred, truth], (1, 1, 1))
    surface_pred, surface_truth = surface(pred[box]), surface(truth[box])
    to_truth = ndimage.distance_transform_edt(~surface_truth, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~surface_pred, sampling=spacing)
    return to_truth[surface_pred], to_pred[surface_truth]


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | np.ndarray | None = None) -> float:
    """95th percentile (mm) of the pooled symmetric surface distances; 0 if both empty, inf if one is empty."""
    pred, truth = _pair(pred, truth)
    spacing = _spacing(spacing)
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not (has_pred or has_truth):
        return 0.0
    if not (has_pred and has_truth):
        return float("inf")
    forward, backward = surface_distances(pred, truth, spacing)
    return float(np.percentile(np.concatenate([forward, backward]), 95))


def evaluate_implant(pred: np.ndarray, truth: np.ndarray, defective: np.ndarray,
                     spacing: Sequence[float] | np.ndarray | None = None) -> dict[str, float]:
    """All three challenge metrics of a predicted implant: ``{"dsc", "bdsc", "hd95"}`` (HD95 in mm)."""
    return {
        "dsc": dice(pred, truth),
        "bdsc": boundary_dice(pred, truth, defective, spacing),
        "hd95": hd95(pred, truth, spacing),
    }
