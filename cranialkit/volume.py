"""The one volume type used everywhere: a 3D array plus its geometry in millimetres.

Taught in notebook 01_data_and_preprocessing.

Geometry follows NRRD/ITK conventions in LPS world space (mm):
``world = origin + direction @ (spacing * index)``, where ``index = (i, j, k)`` is the voxel index in the
array's own axis order and ``direction`` holds the unit world direction of axis i, j, k in its *columns*.
An oblique scan (gantry tilt) has a non-diagonal ``direction``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Voxel sizes a skull scan or mask can have (mm): CT and micro-CT lie between, a coarse phantom grid too. A value
# outside means a broken header (e.g. metres or micrometres), which would make every mm figure wrong.
SPACING_RANGE_MM = (0.05, 20.0)


def spacing_problem(spacing: np.ndarray) -> str | None:
    """Why ``spacing`` (mm per voxel, 3 values) is implausible for a skull volume, or None when it is plausible."""
    spacing = np.asarray(spacing, dtype=float)
    low, high = SPACING_RANGE_MM
    if not np.all(np.isfinite(spacing)) or np.any(spacing < low) or np.any(spacing > high):
        return f"implausible voxel spacing {np.round(spacing, 6).tolist()} mm (expected {low:g}–{high:g} mm)"
    return None


@dataclass(frozen=True)
class Grid:
    """Where a volume's voxels lie: shape (voxels), spacing (mm), origin (mm, LPS) and direction (3×3, columns)."""

    shape: tuple[int, int, int]
    spacing: np.ndarray
    origin: np.ndarray
    direction: np.ndarray

    def difference(self, other: Grid, tolerance_voxels: float = 0.01, direction_tolerance: float = 1e-3) -> str | None:
        """What differs between two grids (shape, spacing, origin or direction), or None when they agree.

        Spacing and origin may differ by ``tolerance_voxels`` of the smaller voxel size (mm rounding of headers,
        float32 NIfTI affines); direction cosines by ``direction_tolerance``.
        """
        if tuple(self.shape) != tuple(other.shape):
            return f"shape {tuple(self.shape)} vs {tuple(other.shape)} voxels"
        atol = tolerance_voxels * float(min(np.min(self.spacing), np.min(other.spacing)))
        if not np.allclose(self.spacing, other.spacing, rtol=0, atol=atol):
            return (f"spacing {np.round(self.spacing, 4).tolist()} vs {np.round(other.spacing, 4).tolist()} mm")
        if not np.allclose(self.direction, other.direction, rtol=0, atol=direction_tolerance):
            flipped = [a for a in range(3) if np.allclose(self.direction[:, a], -other.direction[:, a], atol=1e-3)]
            what = f" (axis {', '.join(map(str, flipped))} flipped)" if flipped else ""
            return f"direction{what} {np.round(self.direction, 3).tolist()} vs {np.round(other.direction, 3).tolist()}"
        if not np.allclose(self.origin, other.origin, rtol=0, atol=atol):
            shift = float(np.linalg.norm(self.origin - other.origin))
            return (f"origin {np.round(self.origin, 2).tolist()} vs {np.round(other.origin, 2).tolist()} mm "
                    f"({shift:.3g} mm apart)")
        return None


@dataclass
class Volume:
    """A 3D array with spacing (mm per voxel along each array axis), origin (mm) and direction (3×3)."""

    array: np.ndarray
    spacing: np.ndarray = field(default_factory=lambda: np.ones(3))
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise ValueError(f"a Volume needs a 3D array, got shape {self.array.shape}")
        self.spacing = np.asarray(self.spacing, dtype=float).reshape(3)
        self.origin = np.asarray(self.origin, dtype=float).reshape(3)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        if np.any(self.spacing <= 0) or not np.all(np.isfinite(self.spacing)):
            raise ValueError(f"spacing must be positive and finite, got {self.spacing}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def grid(self) -> Grid:
        """The volume's :class:`Grid` (shape, spacing, origin, direction), without its voxels."""
        return Grid(self.shape, self.spacing.copy(), self.origin.copy(), self.direction.copy())

    @property
    def affine(self) -> np.ndarray:
        """4×4 matrix mapping voxel index (i, j, k, 1) to LPS world coordinates in mm."""
        out = np.eye(4)
        out[:3, :3] = self.direction * self.spacing[None, :]
        out[:3, 3] = self.origin
        return out

    @property
    def extent_mm(self) -> np.ndarray:
        """Physical size of the grid along each array axis, in mm."""
        return np.asarray(self.shape) * self.spacing

    @property
    def is_oblique(self) -> bool:
        """True when the voxel axes are not the world axes (e.g. gantry tilt): ``direction`` is not diagonal."""
        return not np.allclose(self.direction, np.diag(np.diag(self.direction)), atol=1e-6)

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        """World coordinates (mm, LPS) of voxel indices, shape (..., 3) → (..., 3)."""
        index = np.asarray(index, dtype=float)
        return index @ (self.direction * self.spacing[None, :]).T + self.origin

    def world_to_index(self, point: np.ndarray) -> np.ndarray:
        """Continuous voxel indices of world points (mm, LPS), shape (..., 3) → (..., 3)."""
        point = np.asarray(point, dtype=float)
        return (point - self.origin) @ np.linalg.inv(self.direction * self.spacing[None, :]).T

    def with_array(self, array: np.ndarray) -> Volume:
        """A new Volume with the same geometry and another array of the same shape."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} differs from the volume's {self.array.shape}")
        return Volume(array, self.spacing.copy(), self.origin.copy(), self.direction.copy())

    def same_grid(self, other: Volume, atol: float = 1e-4) -> bool:
        """True when both volumes share shape, spacing, origin and direction (within ``atol`` mm)."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol)
            and np.allclose(self.direction, other.direction, atol=atol)
        )

    def __repr__(self) -> str:
        return (
            f"Volume(shape={self.shape}, dtype={self.array.dtype}, spacing={np.round(self.spacing, 4).tolist()} mm, "
            f"origin={np.round(self.origin, 2).tolist()} mm, oblique={self.is_oblique})"
        )
