"""Export a (reconstructed) implant as a watertight STL/PLY surface in mm, ready for a slicer or a 3D printer.

Taught in notebook 13_visualize_reconstructions.

The implant mask is padded by one voxel and meshed by marching cubes (Lorensen's method, which closes surfaces on
binary data), smoothed by windowed-sinc (Taubin) smoothing so that the voxel staircase goes without the surface
shrinking, and placed in LPS world coordinates in mm with the volume's spacing, origin and direction (oblique
scans included). Before writing we check that the mesh is watertight (every edge shared by exactly two
triangles) and compare its enclosed volume with the voxel volume (count × voxel volume): they agree within a few
per cent for implants, and the report says by how much. Files are written atomically. STL files carry
``SPACE=LPS`` in their header, which 3D Slicer reads as the coordinate system.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyvista as pv
import vtk
from scipy import ndimage
from scipy.spatial import cKDTree

from cranialkit.io import as_mask, read_mask
from cranialkit.jobs import atomic_path
from cranialkit.viz.render3d import is_watertight, mask_to_mesh, signed_volume
from cranialkit.volume import Volume

MESH_FORMATS = (".stl", ".ply")
MAX_REFINED_VOXELS = 32_000_000  # refine="auto" stops before the refined crop exceeds this (about 128 MB as float32)


def clean_implant_mask(mask: np.ndarray, min_component_voxels: int = 2) -> np.ndarray:
    """Fill enclosed cavities and drop specks smaller than ``min_component_voxels`` (26-connected).

    A cavity gives a tiny inner surface that smoothing collapses into a point (degenerate triangles, no longer
    watertight once written in single precision), and a cavity cannot be printed anyway. Lone voxels are noise
    of a prediction; larger separate pieces are kept (a 64³ phantom's implant may have 3-voxel pieces).
    """
    filled = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(filled, structure=np.ones((3, 3, 3), dtype=bool))
    if n > 1:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_component_voxels
        keep[0] = False
        if keep.any():  # never drop everything: a tiny implant stays as it is
            filled = keep[labels]
    return filled


def crop_to_mask(volume: Volume, margin: int = 1) -> Volume:
    """The part of ``volume`` inside its mask's bounding box plus ``margin`` voxels, with the origin moved to match.

    Meshing, hole filling and labelling then work on a few million voxels instead of a 512³ scan.
    """
    index = np.nonzero(volume.array)
    if not index[0].size:
        raise ValueError("implant_mask: empty mask (no voxel set), there is no implant to export")
    low = np.array([max(int(ax.min()) - margin, 0) for ax in index])
    high = np.array([min(int(ax.max()) + 1 + margin, n) for ax, n in zip(index, volume.shape)])
    array = volume.array[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    origin = volume.origin + volume.direction @ (volume.spacing * low)
    return Volume(array, volume.spacing.copy(), origin, volume.direction.copy())


def has_collapsed_vertices(mesh: pv.PolyData, tolerance_mm: float = 1e-3) -> bool:
    """True when two distinct vertices lie within ``tolerance_mm``: a thin sliver squeezed flat by smoothing.

    Such a surface touches itself; written in single precision the two vertices merge and the mesh is no longer
    a closed manifold.
    """
    return bool(cKDTree(np.asarray(mesh.points)).query_pairs(tolerance_mm))


def implant_mesh(
    implant_mask: np.ndarray | Volume,
    spacing: np.ndarray | None = None,
    origin: np.ndarray | None = None,
    direction: np.ndarray | None = None,
    smooth: bool = True,
    smooth_iterations: int = 20,
    pass_band: float = 0.1,
    clean: bool = True,
    refine: int | str = "auto",
    volume_tolerance: float = 0.02,
) -> pv.PolyData:
    """A closed, outward-facing triangle surface of an implant mask in LPS world mm.

    ``implant_mask``: a bool array with ``spacing`` (mm per voxel, required for arrays), ``origin`` (mm) and
    ``direction`` (3×3, columns = axis directions), or a :class:`Volume` carrying them. ``smooth``: windowed-sinc
    smoothing with ``smooth_iterations`` steps and ``pass_band`` (lower = smoother; stronger settings than the
    defaults squeeze 1-voxel slivers flat). ``clean``: fill cavities and drop lone voxels first
    (:func:`clean_implant_mask`). ``refine``: sub-voxels per voxel edge before marching cubes; ``"auto"`` tries
    1, 2, 3, 4 until the mesh volume is within ``volume_tolerance`` (relative) of the voxel volume — needed for
    thin implants on coarse grids (64³ phantoms), a no-op for 0.5 mm scans. Should smoothing still squeeze a
    sliver flat (:func:`has_collapsed_vertices`), it is retried with half the iterations, then without.
    The settings used are in ``mesh.field_data`` (``smooth_iterations``, ``refine``).
    Raises ``ValueError`` for an empty or non-binary mask, or when the surface is not watertight.
    """
    if isinstance(implant_mask, Volume):
        volume = as_mask(implant_mask, "implant_mask")
    elif spacing is None:
        raise ValueError("implant_mask: spacing (mm per voxel) is required for a numpy array; or pass a Volume")
    else:
        origin = np.zeros(3) if origin is None else origin
        direction = np.eye(3) if direction is None else direction
        volume = as_mask(Volume(np.asarray(implant_mask), spacing, origin, direction), "implant_mask")
    volume = crop_to_mask(volume)
    if clean:
        volume = volume.with_array(clean_implant_mask(volume.array))
    if refine == "auto":
        factors = [f for f in (1, 2, 3, 4) if f == 1 or volume.array.size * f**3 <= MAX_REFINED_VOXELS]
    elif isinstance(refine, int) and refine >= 1:
        factors = [refine]
    else:
        raise ValueError(f"refine must be 'auto' or a positive integer, got {refine!r}")
    voxel_volume = volume.array.sum() * np.prod(volume.spacing)
    schedule = [smooth_iterations, smooth_iterations // 2, 0] if smooth and smooth_iterations > 0 else [0]
    for iterations in schedule:
        for factor in factors:
            mesh = mask_to_mesh(
                volume, smooth_iterations=iterations, pass_band=pass_band, upsample=factor, name="implant_mask"
            )
            if abs(signed_volume(mesh) / voxel_volume - 1.0) <= volume_tolerance:
                break
        if iterations == 0 or not has_collapsed_vertices(mesh):
            break
    mesh.field_data["smooth_iterations"] = [iterations]
    mesh.field_data["refine"] = [factor]
    if not is_watertight(mesh):
        raise ValueError(
            "implant_mask: the surface is not watertight (open or non-manifold edges); "
            "post-process the implant (closing, largest component) and try again"
        )
    return mesh


def _write_mesh(mesh: pv.PolyData, path: Path) -> None:
    """Write a binary STL or PLY atomically with VTK's writers (mm, LPS), readable as the user's umask allows."""
    suffix = path.suffix.lower()
    writer = vtk.vtkSTLWriter() if suffix == ".stl" else vtk.vtkPLYWriter()
    if suffix == ".stl":
        writer.SetHeader("cranialkit implant; units mm; SPACE=LPS")
    writer.SetFileTypeToBinary()
    writer.SetInputData(mesh)
    with atomic_path(path) as tmp:
        named = tmp.with_name(tmp.name + suffix)  # VTK's PLY writer needs the extension
        try:
            writer.SetFileName(str(named))
            if writer.Write() != 1 or not named.is_file() or named.stat().st_size == 0:
                raise OSError(f"{path}: VTK could not write the mesh")
            os.replace(named, tmp)
        finally:
            named.unlink(missing_ok=True)


def mesh_report(mesh: pv.PolyData, implant: Volume) -> dict:
    """Volume (ml), voxel volume (ml), their relative difference, world bounding box (mm), watertightness, size."""
    voxel_volume_ml = float(implant.array.sum() * np.prod(implant.spacing) / 1000.0)
    volume_ml = abs(signed_volume(mesh)) / 1000.0
    points = np.asarray(mesh.points)
    low, high = points.min(axis=0), points.max(axis=0)
    return {
        "volume_ml": volume_ml,
        "voxel_volume_ml": voxel_volume_ml,
        "volume_difference": (volume_ml - voxel_volume_ml) / voxel_volume_ml,
        "bounding_box_mm": {"min": low.tolist(), "max": high.tolist(), "size": (high - low).tolist()},
        "watertight": is_watertight(mesh),
        "n_faces": int(mesh.n_cells),
        "n_points": int(mesh.n_points),
    }


def export_implant(
    implant: Volume | str | os.PathLike,
    path: str | os.PathLike,
    smooth: bool = True,
    smooth_iterations: int = 20,
    pass_band: float = 0.1,
) -> dict:
    """Mesh an implant and write it as ``.stl`` or ``.ply`` (mm, LPS world coordinates), atomically.

    ``implant``: a binary :class:`Volume` or the path of a mask file (NRRD/NIfTI). Returns a report:
    ``volume_ml`` (mesh), ``voxel_volume_ml`` (voxel count × voxel volume), ``volume_difference`` (relative),
    ``bounding_box_mm`` (``min``/``max``/``size`` along LPS x, y, z), ``watertight``, ``n_faces``, ``n_points``
    ``cleaned_voxels`` (cavity voxels filled + lone voxels dropped, see :func:`clean_implant_mask`),
    ``smooth_iterations`` and ``refine`` (the settings :func:`implant_mesh` ended with) and ``path``;
    the mesh figures are those of the file as written (read back).
    """
    path = Path(path)
    if path.suffix.lower() not in MESH_FORMATS:
        raise ValueError(f"{path}: unsupported mesh format {path.suffix or '(none)'}; use .stl or .ply")
    volume = as_mask(implant, "implant") if isinstance(implant, Volume) else read_mask(implant)
    cropped = crop_to_mask(volume)
    cleaned = cropped.with_array(clean_implant_mask(cropped.array))
    mesh = implant_mesh(cleaned, smooth=smooth, smooth_iterations=smooth_iterations, pass_band=pass_band, clean=False)
    _write_mesh(mesh, path)
    written = pv.read(path)  # check what a slicer will get: single-precision vertices, merged by the reader
    report = mesh_report(written, volume)
    report["cleaned_voxels"] = int(np.count_nonzero(cleaned.array != cropped.array))
    report["smooth_iterations"] = int(mesh.field_data["smooth_iterations"][0])
    report["refine"] = int(mesh.field_data["refine"][0])
    report["path"] = str(path)
    return report
