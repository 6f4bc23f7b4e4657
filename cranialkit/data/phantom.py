"""Procedural skull phantoms and cranial defects, deterministic per seed, in millimetres.

Taught in notebook 01_data_and_preprocessing.

Why: real skull datasets are large, licensed and slow to download; a phantom that looks like a skull (a vault with
outer and inner tables 4–10 mm apart, 170–200 mm long and 135–160 mm wide, a sloped skull-base cut with a floor,
two orbits and a foramen magnum) lets every notebook run in seconds on a laptop, with the same file layout and the
same code paths as SkullBreak/SkullFix.

How: every structure is an implicit field in world millimetres (positive inside), evaluated on a coarse grid of
about :data:`COARSE_SPACING_MM` and upsampled trilinearly (torch) before thresholding at zero. Fields are smooth, so
surfaces stay smooth at any resolution and shapes do not depend on it; the cost is dominated by one upsampling per
mask (a 256³ skull with its five SkullBreak defects takes about 2 s on one core; benchmarks/phantom_speed.py).

Orientation (as the real data, LPS world, identity direction): axis 0 = right→left, axis 1 = anterior→posterior
(face and orbits at LOW axis-1 index), axis 2 = inferior→superior (vault top at HIGH axis-2 index).

Defects (:func:`make_defect`) follow SkullBreak's classes (bilateral, fronto-orbital, parieto-temporal, random_1,
random_2: unions of spheres with an elastic distortion) and SkullFix's cubic hole in the upper vault. They are
placed relative to the skull found in the volume (bounding box and ray-marched outer surface), so they also work
on real complete skulls.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cranialkit.io import write_volume
from cranialkit.jobs import Manifest, atomic_write_text
from cranialkit.volume import Volume

SKULLBREAK_CLASSES = ("bilateral", "frontoorbital", "parietotemporal", "random_1", "random_2")
SKULLFIX_CLASS = "skullfix"
PHANTOM_CLASSES = SKULLBREAK_CLASSES + (SKULLFIX_CLASS,)

COARSE_SPACING_MM = 2.0
"""Grid spacing (mm) on which the smooth fields are evaluated before upsampling to the target grid."""

PHANTOM_FORMAT_VERSION = 1
"""Bumped whenever the generator changes its output, so that a resumed dataset never mixes two versions."""

_MAX_SHAPE_TERMS = 10  # low-order polynomial terms of the direction used for per-subject shape variation


# ----------------------------------------------------------------------------------------------------------------------
# Skull parameters
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SkullParameters:
    """Anatomical parameters of one phantom skull (lengths in mm, world LPS coordinates of the vault centre)."""

    length_mm: float  # outer anterior-posterior length of the vault (axis 1)
    width_mm: float  # outer left-right width (axis 0)
    height_mm: float  # outer height of the vault above its centre, ×2 (axis 2 semi-axis × 2)
    centre_mm: tuple[float, float, float]  # vault ellipsoid centre
    taper: float  # how much narrower the forehead is than the occiput (0.1 = ±10 % of the width)
    thickness_mm: float  # mean thickness of the vault (outer table to inner table)
    temporal_thinning_mm: float  # thinner bone over the temporal squama
    shape_coefficients: tuple[float, ...]  # low-frequency radial deformation (fractions of the radius)
    thickness_coefficients: tuple[float, ...]  # low-frequency thickness variation (fractions of the thickness)
    base_drop_mm: float  # skull-base cut below the vault centre at the front (y = centre − length/2)
    base_slope: float  # dz/dy of the base cut (negative: lower towards the back)
    floor_rise_front_mm: float  # cranial floor above the cut at the front (orbit roofs)
    floor_rise_back_mm: float  # cranial floor above the cut at the back
    floor_thickness_mm: float
    orbit_spacing_mm: float  # distance between orbit centres
    orbit_radii_mm: tuple[float, float]  # (horizontal, vertical) orbit radii
    orbit_height_mm: float  # orbit centres above the skull-base cut at the front
    face_height_mm: float  # how far the face hint reaches below the cut
    face_half_width_mm: float
    face_thickness_mm: float
    nasal_radii_mm: tuple[float, float]  # (horizontal, vertical) radii of the nasal aperture
    foramen_radii_mm: tuple[float, float]  # (left-right, anterior-posterior) foramen magnum radii


def skull_parameters(seed: int) -> SkullParameters:
    """Draw the parameters of subject ``seed`` (deterministic; every parameter varies smoothly and independently)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5C011]))
    length = rng.uniform(172.0, 198.0)
    width = rng.uniform(137.0, 158.0)
    height = rng.uniform(0.78, 0.86) * length
    return SkullParameters(
        length_mm=float(length),
        width_mm=float(width),
        height_mm=float(height),
        centre_mm=(float(rng.normal(0, 1.5)), float(rng.normal(4.0, 2.0)), float(rng.uniform(-10.0, -2.0))),
        taper=float(rng.uniform(0.08, 0.15)),
        thickness_mm=float(rng.uniform(6.5, 8.5)),
        temporal_thinning_mm=float(rng.uniform(1.0, 2.5)),
        shape_coefficients=tuple(float(v) for v in rng.normal(0.0, 0.015, _MAX_SHAPE_TERMS)),
        thickness_coefficients=tuple(float(v) for v in rng.normal(0.0, 0.12, _MAX_SHAPE_TERMS)),
        base_drop_mm=float(rng.uniform(20.0, 28.0)),
        base_slope=float(rng.uniform(-0.22, -0.12)),
        floor_rise_front_mm=float(rng.uniform(18.0, 23.0)),
        floor_rise_back_mm=float(rng.uniform(4.0, 9.0)),
        floor_thickness_mm=float(rng.uniform(4.0, 6.0)),
        orbit_spacing_mm=float(rng.uniform(58.0, 68.0)),
        orbit_radii_mm=(float(rng.uniform(16.0, 19.0)), float(rng.uniform(15.0, 18.0))),
        orbit_height_mm=float(rng.uniform(0.0, 4.0)),
        face_height_mm=float(rng.uniform(32.0, 42.0)),
        face_half_width_mm=float(rng.uniform(0.36, 0.42) * width),
        face_thickness_mm=float(rng.uniform(4.0, 5.5)),
        nasal_radii_mm=(float(rng.uniform(10.0, 13.0)), float(rng.uniform(14.0, 18.0))),
        foramen_radii_mm=(float(rng.uniform(13.0, 16.0)), float(rng.uniform(16.0, 19.0))),
    )


def _direction_terms(ux: np.ndarray, uy: np.ndarray, uz: np.ndarray) -> list[np.ndarray]:
    """Low-order polynomials of a unit direction: a cheap stand-in for low-degree spherical harmonics."""
    return [ux, uy, uz, ux * uy, uy * uz, ux * uz, ux * ux - uy * uy, 3 * uz * uz - 1, ux * uy * uz, uy * uy * uy]


# ----------------------------------------------------------------------------------------------------------------------
# Grids: coarse evaluation and upsampling
# ----------------------------------------------------------------------------------------------------------------------
def _coarse_factors(spacing: np.ndarray) -> np.ndarray:
    """Integer upsampling factor per axis so that the coarse grid spacing is about COARSE_SPACING_MM."""
    return np.maximum(1, np.floor(COARSE_SPACING_MM / np.asarray(spacing) + 1e-6)).astype(int)


def _coarse_world(volume: Volume, start: np.ndarray, stop: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, ...]:
    """World coordinates (mm, float32, broadcastable) of the coarse sample points of the box [start, stop).

    Coarse sample ``c`` along an axis sits at fine index ``start + (c + 0.5) * f - 0.5`` — the cell-centred
    convention of ``torch.nn.functional.interpolate(..., align_corners=False)``.
    """
    n = -(-(stop - start) // factors)
    index = [start[a] + (np.arange(n[a]) + 0.5) * factors[a] - 0.5 for a in range(3)]
    axes = volume.direction * volume.spacing[None, :]  # columns: mm per voxel step along each array axis
    world = []
    for w in range(3):
        coordinate = np.float32(volume.origin[w])
        for a in range(3):
            shape = [1, 1, 1]
            shape[a] = -1
            coordinate = coordinate + (axes[w, a] * index[a]).astype(np.float32).reshape(shape)
        world.append(coordinate)
    return tuple(world)


def _upsample_positive(field: np.ndarray, factors: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """Trilinearly upsample a coarse field by ``factors`` and return the mask ``field > 0`` cropped to ``size``."""
    import torch  # here, not at the top: the command line lists the phantom classes without starting torch

    tensor = torch.from_numpy(np.ascontiguousarray(field, dtype=np.float32))[None, None]
    if np.any(factors > 1):
        tensor = torch.nn.functional.interpolate(
            tensor, scale_factor=tuple(float(f) for f in factors), mode="trilinear", align_corners=False
        )
    mask = (tensor[0, 0, : size[0], : size[1], : size[2]] > 0).numpy()
    return mask


def _full(shape: tuple[int, ...], *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.broadcast_to(a, shape) for a in arrays)


# ----------------------------------------------------------------------------------------------------------------------
# The complete skull
# ----------------------------------------------------------------------------------------------------------------------
def _outer_depth(px: np.ndarray, py: np.ndarray, pz: np.ndarray, p: SkullParameters) -> tuple[np.ndarray, list]:
    """Depth (mm) below the outer table along the ray from the vault centre, and the direction terms used."""
    a, b, c = p.width_mm / 2, p.length_mm / 2, p.height_mm / 2
    r = np.sqrt(px * px + py * py + pz * pz) + np.float32(1e-3)
    terms = _direction_terms(px / r, py / r, pz / r)
    taper = 1 + p.taper * np.clip(py / b, -1.2, 1.2)  # narrower forehead (py < 0), wider occiput
    rho = np.sqrt((px / (a * taper)) ** 2 + (py / b) ** 2 + (pz / c) ** 2) + np.float32(1e-6)
    deformation = sum(k * t for k, t in zip(p.shape_coefficients, terms))
    return r * (1 + deformation) / rho - r, terms


def _skull_field(x: np.ndarray, y: np.ndarray, z: np.ndarray, p: SkullParameters, voxel_mm: float) -> np.ndarray:
    """Signed field (≈ mm, positive inside bone) of the complete skull at world points (x, y, z)."""
    b = p.length_mm / 2
    px, py, pz = np.broadcast_arrays(x - p.centre_mm[0], y - p.centre_mm[1], z - p.centre_mm[2])
    depth, terms = _outer_depth(px, py, pz, p)
    variation = sum(k * t for k, t in zip(p.thickness_coefficients, terms))
    thickness = p.thickness_mm * (1 + 0.6 * np.tanh(variation)) - p.temporal_thinning_mm * terms[0] ** 2
    thickness = np.maximum(np.clip(thickness, 4.0, 10.0), 1.5 * voxel_mm)  # ≥ 1.5 voxels: no gaps at 64³
    shell = np.minimum(depth, thickness - depth)

    # Skull-base cut: a sloped plane, lower towards the back.
    cut = pz + p.base_drop_mm - p.base_slope * (py + b)  # > 0 above the cut
    # Orbits: elliptic tunnels along the anterior-posterior axis, centred near the front of the cut.
    orbit_z = -p.base_drop_mm + p.orbit_height_mm
    rx, rz = p.orbit_radii_mm
    outside_orbits = np.ones_like(px)
    for side in (-1, 1):
        ellipse = np.sqrt(((px - side * p.orbit_spacing_mm / 2) / rx) ** 2 + ((pz - orbit_z) / rz) ** 2)
        outside_orbits = np.minimum(outside_orbits, (ellipse - 1) * min(rx, rz))
    outside_orbits = np.maximum(outside_orbits, py + 0.45 * b)  # only the front part of the skull
    vault = np.minimum(shell, cut)

    # Face hint: the front of the outer table extruded straight down below the cut (cheek bones, maxilla), with
    # the nasal aperture between the orbits.
    face_depth, _ = _outer_depth(px, py, np.maximum(pz, np.float32(-p.base_drop_mm)), p)
    face_thickness = max(p.face_thickness_mm, 1.5 * voxel_mm)
    face = np.minimum(np.minimum(face_depth, face_thickness - face_depth), np.minimum(cut + p.face_height_mm, 2 - cut))
    narrowing = 1 - 0.35 * np.clip(-cut / p.face_height_mm, 0, 1)  # the maxilla is narrower than the cheeks
    face = np.minimum(face, np.minimum(-0.5 * b - py, p.face_half_width_mm * narrowing - np.abs(px)))
    nx, nz = p.nasal_radii_mm
    nasal = (np.sqrt((px / nx) ** 2 + ((pz - orbit_z + 0.9 * rz) / nz) ** 2) - 1) * min(nx, nz)
    face = np.minimum(face, nasal)

    # Cranial floor: a plate above the cut (higher at the front: orbit roofs), inside the outer table,
    # with the foramen magnum (an ellipse) in its posterior half.
    rise = p.floor_rise_front_mm + (p.floor_rise_back_mm - p.floor_rise_front_mm) * np.clip((py + b) / (2 * b), 0, 1)
    above = cut - rise
    fx, fy = p.foramen_radii_mm
    foramen = (np.sqrt((px / fx) ** 2 + ((py - 0.32 * b) / fy) ** 2) - 1) * min(fx, fy)
    floor = np.minimum(np.minimum(above, p.floor_thickness_mm - above), np.minimum(depth, foramen))
    bone = np.minimum(np.maximum(np.maximum(vault, face), floor), outside_orbits)
    return bone.astype(np.float32)


def centred_geometry(shape: tuple[int, int, int], field_of_view_mm: float) -> Volume:
    """An empty bool volume of ``shape`` covering ``field_of_view_mm`` (isotropic, identity direction, centred)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be three sizes of at least 8 voxels, got {shape}")
    if not field_of_view_mm > 0:
        raise ValueError(f"field_of_view_mm must be positive, got {field_of_view_mm}")
    spacing = np.full(3, float(field_of_view_mm) / max(shape))
    origin = -(np.asarray(shape) - 1) / 2 * spacing
    return Volume(np.zeros(shape, dtype=bool), spacing, origin, np.eye(3))


def make_skull(seed: int, shape: tuple[int, int, int] = (64, 64, 64), field_of_view_mm: float = 240.0) -> Volume:
    """A complete phantom skull (bool Volume) for subject ``seed``.

    Spacing is isotropic ``field_of_view_mm / max(shape)`` mm (3.75 mm at 64³ with the default 240 mm), direction
    is the identity and the grid is centred on the world origin. The same seed gives the same skull at every
    resolution (up to sampling).
    """
    grid = centred_geometry(shape, field_of_view_mm)
    params = skull_parameters(seed)
    factors = _coarse_factors(grid.spacing)
    x, y, z = _coarse_world(grid, np.zeros(3, int), np.asarray(grid.shape), factors)
    field = _skull_field(x, y, z, params, float(grid.spacing.min()))
    bone = _upsample_positive(field, factors, grid.shape)
    if not bone.any():
        raise ValueError(f"field_of_view_mm={field_of_view_mm} with shape {shape} leaves no skull in the grid")
    return grid.with_array(bone)


# ----------------------------------------------------------------------------------------------------------------------
# Defects
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _SkullFrame:
    """Where the skull is in a volume: vault centre (world mm), size (mm) and the world 'up' directions."""

    centre: np.ndarray
    width_mm: float
    length_mm: float
    lower_k: int


def _bounding_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index box [start, stop) of the True voxels."""
    start, stop = [], []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        start.append(present[0])
        stop.append(present[-1] + 1)
    return np.asarray(start), np.asarray(stop)


def _skull_frame(complete: Volume) -> _SkullFrame:
    """Estimate the vault centre: bounding-box centre in axes 0/1, half a width below the top along axis 2."""
    start, stop = _bounding_box(complete.array)
    extent = (stop - start) * complete.spacing
    centre_index = (start + stop - 1) / 2.0
    centre_index[2] = (stop[2] - 1) - (extent[0] / 2) / complete.spacing[2]
    centre_index[2] = max(centre_index[2], (start[2] + stop[2] - 1) / 2.0)
    centre = complete.origin + complete.direction @ (complete.spacing * centre_index)
    return _SkullFrame(centre, float(extent[0]), float(extent[1]), int(start[2]))


def _outer_radius(complete: Volume, centre: np.ndarray, direction: np.ndarray) -> float:
    """Distance (mm) from ``centre`` to the outermost bone voxel along ``direction`` (ray marching)."""
    step = 0.5 * float(complete.spacing.min())
    distances = np.arange(0.0, 400.0, step)
    points = centre[None, :] + distances[:, None] * direction[None, :]
    to_index = np.linalg.inv(complete.direction * complete.spacing[None, :])
    index = np.rint((points - complete.origin[None, :]) @ to_index.T).astype(int)
    inside = np.all((index >= 0) & (index < np.asarray(complete.shape)), axis=1)
    hits = np.zeros(len(distances), dtype=bool)
    hits[inside] = complete.array[tuple(index[inside].T)]
    if not hits.any():
        return 0.0
    return float(distances[np.flatnonzero(hits)[-1]])


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """World unit vector: azimuth 0° = anterior (−y), 90° = left (+x); elevation 90° = superior (+z)."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.array([np.sin(az) * np.cos(el), -np.cos(az) * np.cos(el), np.sin(el)])


def _frame_axes(axis: np.ndarray, roll_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to ``axis``: e1 ≈ horizontal, e2 ≈ 'up' in the plane, rotated by ``roll``."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([0.0, -1.0, 0.0])
    e1 = _unit(np.cross(helper, axis))
    e2 = np.cross(axis, e1)
    roll = np.radians(roll_deg)
    return np.cos(roll) * e1 + np.sin(roll) * e2, -np.sin(roll) * e1 + np.cos(roll) * e2


class _ElasticWarp:
    """A smooth random displacement (mm): a sum of a few plane waves, so region edges look irregular."""

    def __init__(self, rng: np.random.Generator, amplitude_mm: float, wavelength_mm: float, waves: int = 4):
        self.vectors = [_unit(rng.normal(size=3)) * 2 * np.pi / (wavelength_mm * rng.uniform(0.7, 1.3))
                        for _ in range(waves)]
        self.amplitudes = [rng.normal(size=3) * amplitude_mm / np.sqrt(waves) for _ in range(waves)]
        self.phases = rng.uniform(0, 2 * np.pi, waves)

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = [x, y, z]
        for k, amp, phase in zip(self.vectors, self.amplitudes, self.phases):
            wave = np.sin(np.float32(k[0]) * x + np.float32(k[1]) * y + np.float32(k[2]) * z + np.float32(phase))
            out = [o + np.float32(amp[i]) * wave for i, o in enumerate(out)]
        return out[0], out[1], out[2]


def _patch_field(q: tuple[np.ndarray, ...], axis: np.ndarray, roll_deg: float, half_widths: tuple[float, float],
                 exponent: float, near_mm: float, far_mm: float = 1e4) -> np.ndarray:
    """Signed field (≈ mm) of a super-elliptic prism along ``axis`` through the vault centre.

    ``q`` are coordinates relative to the centre; the prism keeps ``near_mm < q·axis < far_mm`` and
    ``|q·e1 / w1|^n + |q·e2 / w2|^n < 1`` (n = ``exponent``; ``inf`` gives a rectangle).
    """
    e1, e2 = _frame_axes(axis, roll_deg)
    along = sum(np.float32(axis[i]) * q[i] for i in range(3))
    s1 = np.abs(sum(np.float32(e1[i]) * q[i] for i in range(3))) / half_widths[0]
    s2 = np.abs(sum(np.float32(e2[i]) * q[i] for i in range(3))) / half_widths[1]
    norm = np.maximum(s1, s2) if np.isinf(exponent) else (s1**exponent + s2**exponent) ** (1 / exponent)
    across = (1 - norm) * min(half_widths)
    return np.minimum(np.minimum(across, along - near_mm), far_mm - along)


def _defect_field(defect_class: str, rng: np.random.Generator, frame: _SkullFrame, complete: Volume,
                  q: tuple[np.ndarray, ...]) -> np.ndarray:
    """Signed field (≈ mm, positive inside the region to remove) for one defect class, q relative to the centre."""
    side = rng.choice([-1.0, 1.0])
    scale = frame.width_mm / 145.0  # defects scale with the head

    def warped(amplitude_mm: float, wavelength_mm: float) -> tuple[np.ndarray, ...]:
        return _ElasticWarp(rng, amplitude_mm, wavelength_mm)(*q)

    if defect_class == SKULLFIX_CLASS:  # a cube hole in the upper vault, 50–80 mm across, flat bottom
        axis = _direction(rng.uniform(0, 360), rng.uniform(50, 80))
        side_mm = rng.uniform(50.0, 80.0) * scale
        radius = _outer_radius(complete, frame.centre, axis)
        return _patch_field(q, axis, rng.uniform(-12, 12), (side_mm / 2, side_mm / 2), np.inf,
                            radius - 0.55 * side_mm, radius + 0.45 * side_mm)
    if defect_class == "bilateral":  # a large defect across the top, over both hemispheres
        axis = _direction(rng.choice([0.0, 180.0]), rng.uniform(60, 85))
        half = (rng.uniform(58, 70) * scale, rng.uniform(40, 52) * scale)
        return _patch_field(warped(4.0, 70.0), axis, rng.uniform(-10, 10), half, 3.0, 0.3 * frame.width_mm / 2)
    if defect_class == "frontoorbital":  # front of the vault, down into the upper orbital rim
        axis = _direction(side * rng.uniform(0, 30), rng.uniform(12, 25))
        half = (rng.uniform(32, 45) * scale, rng.uniform(40, 50) * scale)
        return _patch_field(warped(3.5, 60.0), axis, rng.uniform(-15, 15), half, 2.5, 0.3 * frame.length_mm / 2)
    if defect_class == "parietotemporal":  # the side of the head, above the ear
        axis = _direction(side * rng.uniform(75, 110), rng.uniform(15, 40))
        half = (rng.uniform(42, 55) * scale, rng.uniform(35, 45) * scale)
        return _patch_field(warped(3.5, 60.0), axis, rng.uniform(-20, 20), half, 2.5, 0.3 * frame.width_mm / 2)
    if defect_class in ("random_1", "random_2"):  # unions of spheres on the vault, elastically distorted
        count = rng.integers(3, 6) if defect_class == "random_1" else rng.integers(5, 9)
        radii = rng.uniform(16, 30, count) if defect_class == "random_1" else rng.uniform(10, 24, count)
        main_azimuth, main_elevation = rng.uniform(0, 360), rng.uniform(25, 65)
        wq = warped(6.0, 50.0)
        field = None
        for radius_mm in radii * scale:
            axis = _direction(main_azimuth + rng.normal(0, 14), np.clip(main_elevation + rng.normal(0, 9), 15, 88))
            centre = axis * (_outer_radius(complete, frame.centre, axis) - rng.uniform(0, 6))
            sphere = radius_mm - np.sqrt(sum((wq[i] - np.float32(centre[i])) ** 2 for i in range(3)))
            field = sphere if field is None else np.maximum(field, sphere)
        return field
    raise ValueError(f"unknown defect_class {defect_class!r}; expected one of {PHANTOM_CLASSES}")


def make_defect(complete: Volume, defect_class: str, seed: int) -> tuple[Volume, Volume]:
    """Cut a defect of ``defect_class`` into ``complete``: returns ``(defective, implant)`` bool Volumes.

    ``defective | implant == complete``, ``defective & implant`` is empty and the implant is not empty. The defect
    is placed relative to the skull found in the volume (not the phantom parameters), so any complete skull with
    the usual orientation works, including real ones. Deterministic for a given ``seed``.
    """
    if defect_class not in PHANTOM_CLASSES:
        raise ValueError(f"unknown defect_class {defect_class!r}; expected one of {PHANTOM_CLASSES}")
    bone = np.asarray(complete.array).astype(bool)
    if not bone.any():
        raise ValueError("make_defect: the complete skull is empty")
    complete = complete.with_array(bone)
    frame = _skull_frame(complete)
    factors = _coarse_factors(complete.spacing)
    start, stop = _bounding_box(bone)
    start, stop = np.maximum(start - 1, 0), np.minimum(stop + 1, np.asarray(bone.shape))
    world = _coarse_world(complete, start, stop, factors)
    q = _full(np.broadcast_shapes(*(w.shape for w in world)), *(w - np.float32(frame.centre[i])
                                                                  for i, w in enumerate(world)))
    class_index = PHANTOM_CLASSES.index(defect_class)
    for attempt in range(8):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), class_index, attempt, 0xDEFEC7]))
        field = _defect_field(defect_class, rng, frame, complete, q)
        region = _upsample_positive(field, factors, tuple(stop - start))
        box = tuple(slice(a, b) for a, b in zip(start, stop))
        implant = np.zeros_like(bone)
        implant[box] = region & bone[box]
        if implant.sum() >= max(8, 1e-3 * bone.sum()):
            return complete.with_array(bone & ~implant), complete.with_array(implant)
    raise ValueError(f"make_defect: could not place a {defect_class!r} defect on this skull (seed {seed})")


# ----------------------------------------------------------------------------------------------------------------------
# Measurements (phantoms and real skulls alike)
# ----------------------------------------------------------------------------------------------------------------------
def skull_measurements(volume: Volume, vault_fraction: float = 0.45) -> dict[str, float]:
    """Size and vault thickness of a skull mask, in mm and ml — to compare phantoms with real skulls.

    - ``length_mm`` / ``width_mm`` / ``height_mm``: bounding-box extent along array axes 1 (anterior-posterior),
      0 (left-right) and 2 (inferior-superior), times the spacing (voxel axes, so a gantry tilt is ignored);
    - ``thickness_mean_mm`` / ``thickness_min_mm`` / ``thickness_max_mm``: local thickness on the medial surface of
      the vault (the top ``vault_fraction`` of the height): 2 × the distance transform (with spacing) at its ridge
      voxels, minus half a voxel for the discrete ridge. Min and max are the 5th and 95th percentiles, so the thin
      rims of holes and cuts do not decide them;
    - ``volume_ml``: bone volume in millilitres.
    """
    bone = np.asarray(volume.array).astype(bool)
    if not bone.any():
        raise ValueError("skull_measurements: the volume is empty")
    if not 0 < vault_fraction <= 1:
        raise ValueError(f"vault_fraction must be in (0, 1], got {vault_fraction}")
    spacing = volume.spacing
    start, stop = _bounding_box(bone)
    extent = (stop - start) * spacing
    top = stop[2]
    vault_start = int(np.floor(top - vault_fraction * (stop[2] - start[2])))
    # Measure on a block that reaches 15 mm below the vault, so the block's own lower face is not a 'surface'.
    below = int(np.ceil(15.0 / spacing[2]))
    block = bone[start[0]:stop[0], start[1]:stop[1], max(vault_start - below, start[2]):top]
    block = np.pad(block, 1)
    distance = ndimage.distance_transform_edt(block, sampling=spacing)
    ridge = block & (distance >= ndimage.maximum_filter(distance, size=3))
    ridge[..., : 1 + vault_start - max(vault_start - below, start[2])] = False  # keep the vault only
    thickness = 2 * distance[ridge] - 0.5 * float(np.cbrt(np.prod(spacing)))
    return {
        "length_mm": float(extent[1]),
        "width_mm": float(extent[0]),
        "height_mm": float(extent[2]),
        "thickness_mean_mm": float(thickness.mean()) if thickness.size else float("nan"),
        "thickness_min_mm": float(np.percentile(thickness, 5)) if thickness.size else float("nan"),
        "thickness_max_mm": float(np.percentile(thickness, 95)) if thickness.size else float("nan"),
        "volume_ml": float(bone.sum() * np.prod(spacing) / 1000.0),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Datasets on disk
# ----------------------------------------------------------------------------------------------------------------------
def subject_seed(seed: int, subject: int) -> int:
    """The seed of subject number ``subject`` in a dataset generated with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(subject)]).generate_state(1)[0])


def make_phantom_dataset(root: str | os.PathLike, n_subjects: int = 10, shape: tuple[int, int, int] = (64, 64, 64),
                         classes: tuple[str, ...] = PHANTOM_CLASSES, seed: int = 0,
                         field_of_view_mm: float = 240.0) -> Path:
    """Write a phantom dataset in the SkullBreak layout under ``root`` and return ``root``.

    Files: ``complete_skull/NNN.nrrd``, ``defective_skull/<class>/NNN.nrrd``, ``implant/<class>/NNN.nrrd`` (gzip
    NRRD, uint8, spacing in mm), ``phantom.json`` (the generation parameters) and ``manifest.jsonl`` (finished
    subjects). Interrupted runs resume: finished subjects are skipped. Generating into a folder made with other
    parameters is an error.
    """
    root = Path(root)
    classes = tuple(classes)
    unknown = [c for c in classes if c not in PHANTOM_CLASSES]
    if unknown:
        raise ValueError(f"classes: unknown defect classes {unknown}; expected a subset of {PHANTOM_CLASSES}")
    if not classes:
        raise ValueError("classes: need at least one defect class")
    if int(n_subjects) < 1:
        raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
    shape = tuple(int(s) for s in shape)
    centred_geometry(shape, field_of_view_mm)  # validates shape and field of view
    parameters = {
        "generator": "cranialkit.data.phantom",
        "format_version": PHANTOM_FORMAT_VERSION,
        "n_subjects": int(n_subjects),
        "shape": list(shape),
        "field_of_view_mm": float(field_of_view_mm),
        "spacing_mm": float(field_of_view_mm) / max(shape),
        "classes": list(classes),
        "seed": int(seed),
        "orientation": "LPS; axis 0 right->left, axis 1 anterior->posterior, axis 2 inferior->superior",
    }
    config_path = root / "phantom.json"
    if config_path.exists():
        try:
            existing = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{config_path}: unreadable phantom parameters ({exc})") from exc
        if existing != parameters:
            changed = sorted(k for k in parameters if existing.get(k) != parameters[k])
            raise ValueError(f"{config_path}: the folder holds a phantom dataset made with other parameters "
                             f"({', '.join(changed)} differ); use another root or delete it")
    else:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(config_path, json.dumps(parameters, indent=2) + "\n")
    manifest = Manifest(root / "manifest.jsonl")
    for subject in range(int(n_subjects)):
        case_id = f"{subject:03d}"
        if case_id in manifest:
            continue
        skull_seed = subject_seed(seed, subject)
        complete = make_skull(skull_seed, shape, field_of_view_mm)
        write_volume(complete, root / "complete_skull" / f"{case_id}.nrrd")
        for defect_class in classes:
            defective, implant = make_defect(complete, defect_class, skull_seed)
            write_volume(defective, root / "defective_skull" / defect_class / f"{case_id}.nrrd")
            write_volume(implant, root / "implant" / defect_class / f"{case_id}.nrrd")
        manifest.add({"key": case_id, "seed": skull_seed, "parameters": asdict(skull_parameters(skull_seed))})
    return root
