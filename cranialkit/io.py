"""Read and write volumes (NRRD with pynrrd, NIfTI with nibabel) keeping the full geometry.

Taught in notebook 01_data_and_preprocessing.

World coordinates are LPS in mm (the NRRD/ITK convention). NIfTI stores RAS, so its affine is flipped on the
first two world axes when read and written. NRRD's ``space directions`` holds one row per array axis
(spacing × unit direction); a ``Volume`` keeps spacing and unit directions (as columns) apart.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np

from cranialkit.errors import VolumeFileError
from cranialkit.jobs import atomic_path, make_readable
from cranialkit.volume import Grid, Volume, spacing_problem

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
__all__ = ["VolumeFileError", "as_mask", "read_grid", "read_mask", "read_volume", "write_volume"]


def _format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nrrd") or name.endswith(".nhdr"):
        return "nrrd"
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return "nifti"
    raise VolumeFileError(f"{path}: unknown volume format (expected .nrrd, .nhdr, .nii or .nii.gz)")


def read_volume(path: str | os.PathLike, contiguous: bool = True) -> Volume:
    """Read a 3D NRRD or NIfTI file into a :class:`Volume` (array in file order, LPS geometry in mm).

    Raises :class:`VolumeFileError` naming the file for a missing, truncated or non-3D file, NaNs, and a header
    without voxel spacing or with an implausible one (outside 0.05–20 mm: every mm figure would be wrong).
    """
    path = Path(path)
    kind = _existing_volume_file(path)
    try:
        if kind == "nrrd":
            array, header = nrrd.read(str(path))
        else:
            image = nib.load(str(path))
            array = np.asarray(image.dataobj)
    except VolumeFileError:
        raise
    except Exception as exc:  # truncated gzip, bad header, ... : all become one clear error
        raise VolumeFileError(f"{path}: {_unreadable(kind, exc)}") from exc
    if array.ndim != 3:
        raise VolumeFileError(f"{path}: expected a 3D volume, got {array.ndim}D with shape {array.shape}; "
                              f"give one 3D mask per file")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise VolumeFileError(f"{path}: contains NaN or infinite values; fix or re-export the file")
    grid = _nrrd_grid(path, header) if kind == "nrrd" else _nifti_grid(path, image)
    if not contiguous:
        return Volume(array, grid.spacing, grid.origin, grid.direction)
    # pynrrd returns Fortran order; C order makes everything downstream faster
    return Volume(np.ascontiguousarray(array), grid.spacing, grid.origin, grid.direction)


def read_grid(path: str | os.PathLike) -> Grid:
    """The :class:`~cranialkit.volume.Grid` of a volume file from its header alone (no voxel is read: cheap even
    for a 512³ gzip NRRD), with the same checks as :func:`read_volume` on dimensions and spacing."""
    path = Path(path)
    kind = _existing_volume_file(path)
    try:
        header = nrrd.read_header(str(path)) if kind == "nrrd" else None
        image = nib.load(str(path)) if kind == "nifti" else None
    except Exception as exc:
        raise VolumeFileError(f"{path}: {_unreadable(kind, exc)}") from exc
    shape = tuple(int(s) for s in (header["sizes"] if kind == "nrrd" else image.shape))
    if len(shape) != 3:
        raise VolumeFileError(f"{path}: expected a 3D volume, got {len(shape)}D with shape {shape}; "
                              f"give one 3D mask per file")
    return _nrrd_grid(path, header, shape) if kind == "nrrd" else _nifti_grid(path, image)


def _existing_volume_file(path: Path) -> str:
    """The format of a volume file that exists and is not empty (else :class:`VolumeFileError` naming it)."""
    if not path.is_file():
        raise VolumeFileError(f"{path}: {'is a folder, not a volume file' if path.is_dir() else 'no such file'}")
    kind = _format(path)
    if path.stat().st_size == 0:
        raise VolumeFileError(f"{path}: empty file (0 bytes); it was not written to the end — write or copy it again")
    return kind


def _unreadable(kind: str, exc: Exception) -> str:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"unreadable or truncated {kind.upper()} file ({detail}); check or re-download the file"


def _checked_grid(path: Path, shape: tuple[int, ...], axes: np.ndarray, origin: np.ndarray) -> Grid:
    """A Grid from axis vectors (columns, mm) and origin, refusing zero, missing or implausible spacing."""
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
        raise VolumeFileError(f"{path}: zero or undefined voxel spacing in the header ({spacing.tolist()} mm); "
                              f"fix the header")
    problem = spacing_problem(spacing)
    if problem:
        raise VolumeFileError(f"{path}: {problem}; fix the header (are the units mm?)")
    direction = axes / spacing[None, :]
    if abs(np.linalg.det(direction)) < 1e-3:
        raise VolumeFileError(f"{path}: the voxel axes in the header are parallel ({np.round(direction, 3).tolist()}); "
                              f"fix the header")
    return Grid(tuple(int(s) for s in shape), spacing, origin, direction)


def _nifti_grid(path: Path, image) -> Grid:
    affine = image.affine
    return _checked_grid(path, image.shape, _RAS_TO_LPS @ affine[:3, :3], _RAS_TO_LPS @ affine[:3, 3])


def _nrrd_grid(path: Path, header: dict, shape: tuple[int, ...] | None = None) -> Grid:
    axes, origin = _nrrd_geometry(path, header)
    return _checked_grid(path, shape or tuple(int(s) for s in header["sizes"]), axes, origin)


def _nrrd_geometry(path: Path, header: dict) -> tuple[np.ndarray, np.ndarray]:
    """Axis vectors (as columns, mm, LPS) and origin (mm, LPS) from an NRRD header.

    ``space directions`` (one row per axis) is the full geometry; without it, ``spacings`` gives a diagonal one.
    RAS and LAS spaces are converted to LPS by flipping the world axes that differ.
    """
    if "space directions" in header:
        axes = np.asarray(header["space directions"], dtype=float)
        if axes.shape != (3, 3) or not np.all(np.isfinite(axes)):
            raise VolumeFileError(f"{path}: 'space directions' is not a 3×3 matrix: {axes.tolist()}")
    elif "spacings" in header:
        spacings = np.asarray(header["spacings"], dtype=float)
        if spacings.shape != (3,) or not np.all(np.isfinite(spacings)):
            raise VolumeFileError(f"{path}: 'spacings' is not three numbers: {spacings.tolist()}")
        axes = np.diag(spacings)
    else:
        # Taking 1 mm would silently scale every volume, distance and mesh made from the file.
        raise VolumeFileError(f"{path}: the NRRD header gives no voxel spacing (no 'space directions' or "
                              f"'spacings' field); add the scan's spacing in mm to the header, e.g. with 3D Slicer")
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=float).reshape(-1)
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        raise VolumeFileError(f"{path}: 'space origin' is not three finite numbers: {origin.tolist()}")
    space = str(header.get("space", "left-posterior-superior")).lower()
    flips = {"right-anterior-superior": (-1, -1, 1), "ras": (-1, -1, 1),
             "left-anterior-superior": (1, -1, 1), "las": (1, -1, 1)}
    if space in flips:
        flip = np.diag(np.asarray(flips[space], dtype=float))
        axes, origin = axes @ flip, flip @ origin
    return axes.T, origin  # columns = axis vectors


def write_volume(volume: Volume, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write a volume as NRRD (gzip; ``.nhdr`` = detached header + ``<name>.raw.gz``) or NIfTI, atomically
    (temporary file, then rename), readable as the user's umask allows. Boolean arrays are stored as uint8 {0, 1}.
    """
    path = Path(path)
    kind = _format(path)
    array = volume.array.astype(np.uint8) if volume.array.dtype == bool else volume.array
    if kind == "nifti":
        affine = np.eye(4)
        affine[:3, :3] = _RAS_TO_LPS @ (volume.direction * volume.spacing[None, :])
        affine[:3, 3] = _RAS_TO_LPS @ volume.origin
        with atomic_path(path, suffix=".nii.gz" if path.name.lower().endswith(".gz") else ".nii") as tmp:
            nib.save(nib.Nifti1Image(array, affine), str(tmp))
        return path
    header = {
        "space": "left-posterior-superior",
        "space directions": (volume.direction * volume.spacing[None, :]).T,
        "space origin": volume.origin,
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip" if compress else "raw",
    }
    if path.name.lower().endswith(".nrrd"):
        with atomic_path(path, suffix=".nrrd") as tmp:
            nrrd.write(str(tmp), array, header, compression_level=1)
        return path
    _write_detached_nrrd(array, header, path)
    return path


def _write_detached_nrrd(array: np.ndarray, header: dict, path: Path) -> None:
    """``name.nhdr`` + ``name.raw.gz`` (or ``.raw``): both written under their final names in a temporary folder
    beside ``path`` (so the header names the data file as it will be called), then moved into place, data first."""
    with atomic_path(path) as placeholder:  # makes the folder, and names ``path`` in errors
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        try:
            nrrd.write(str(staging / path.name), array, header, compression_level=1)
            for written in sorted(staging.iterdir(), key=lambda p: p.name == path.name):  # the header last
                make_readable(written)
                os.replace(written, placeholder if written.name == path.name else path.parent / written.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def as_mask(volume: Volume, source: str | os.PathLike = "<array>", allow_empty: bool = False) -> Volume:
    """Check that a volume is a binary mask ({0, 1} or bool) and return it with a bool array.

    Raises :class:`VolumeFileError` naming ``source`` for non-binary values (saying when they look like a CT scan
    in HU, probabilities or a label map) or (unless ``allow_empty``) an empty mask.
    """
    array = volume.array
    if array.dtype != bool:
        binary = (array == 0) | (array == 1)  # one cheap pass; np.unique would sort all 10⁸ voxels of a 512³ mask
        if not binary.all():
            raise VolumeFileError(f"{source}: {_not_binary(array, binary)}")
        array = array != 0
    if not allow_empty and not array.any():
        raise VolumeFileError(f"{source}: empty mask (no voxel is 1); check that it is the right file")
    return volume.with_array(array)


def _not_binary(array: np.ndarray, binary: np.ndarray) -> str:
    """What a non-binary volume looks like, and what to do about it."""
    others = np.unique(array[~binary])
    shown = ", ".join(f"{v:g}" for v in others[:6]) + (", ..." if len(others) > 6 else "")
    what = f"not a binary mask ({(~binary).sum()} voxels with values {shown}); expected only 0 and 1"
    low, high = float(array.min()), float(array.max())
    if low <= -500 and high >= 300:
        return (f"looks like a CT scan (values {low:g} … {high:g}, in HU), not a binary mask; segment the skull "
                f"first (bone is above about 300 HU: e.g. 3D Slicer's threshold effect) and give the mask")
    if 0 <= low and high <= 1:
        return f"{what}: the values look like probabilities; threshold them (e.g. at 0.5) and save a 0/1 mask"
    if np.all(others == np.round(others)) and low >= 0 and len(others) <= 64:
        return f"{what}: this looks like a label map; save the one label you need as a 0/1 mask"
    return what


def read_mask(path: str | os.PathLike, allow_empty: bool = False) -> Volume:
    """Read a binary mask (defective skull, implant, complete skull) as a bool :class:`Volume`.

    The file's array is checked and turned into bool in its stored (often Fortran) order and only then made
    C-contiguous: reordering a 512²×300 int32 array costs seconds, the same bool array a quarter of that.
    """
    mask = as_mask(read_volume(path, contiguous=False), path, allow_empty=allow_empty)
    return mask.with_array(np.ascontiguousarray(mask.array))
