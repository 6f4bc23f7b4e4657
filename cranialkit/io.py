"""Read and write volumes (NRRD with pynrrd, NIfTI with nibabel) keeping the full geometry.

Taught in notebook 01_data_and_preprocessing.

World coordinates are LPS in mm (the NRRD/ITK convention). NIfTI stores RAS, so its affine is flipped on the
first two world axes when read and written. NRRD's ``space directions`` holds one row per array axis
(spacing × unit direction); a ``Volume`` keeps spacing and unit directions (as columns) apart.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np

from cranialkit.volume import Volume

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


class VolumeFileError(ValueError):
    """A volume file that cannot be used: the message names the file and the problem."""


def _format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nrrd") or name.endswith(".nhdr"):
        return "nrrd"
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return "nifti"
    raise VolumeFileError(f"{path}: unknown volume format (expected .nrrd, .nhdr, .nii or .nii.gz)")


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a 3D NRRD or NIfTI file into a :class:`Volume` (array in file order, LPS geometry in mm)."""
    path = Path(path)
    if not path.is_file():
        raise VolumeFileError(f"{path}: no such file")
    kind = _format(path)
    try:
        if kind == "nrrd":
            array, header = nrrd.read(str(path))
        else:
            image = nib.load(str(path))
            array = np.asarray(image.dataobj)
    except VolumeFileError:
        raise
    except Exception as exc:  # truncated gzip, bad header, ... : all become one clear error
        problem = f"unreadable or truncated {kind.upper()} file ({type(exc).__name__}: {exc})"
        raise VolumeFileError(f"{path}: {problem}") from exc
    array = np.ascontiguousarray(array)  # pynrrd returns Fortran order; C order makes everything downstream faster
    if array.ndim != 3:
        raise VolumeFileError(f"{path}: expected a 3D volume, got {array.ndim}D with shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise VolumeFileError(f"{path}: contains NaN or infinite values")
    if kind == "nrrd":
        affine3, origin = _nrrd_geometry(path, header)
    else:
        affine = image.affine
        affine3 = _RAS_TO_LPS @ affine[:3, :3]
        origin = _RAS_TO_LPS @ affine[:3, 3]
    spacing = np.linalg.norm(affine3, axis=0)
    if np.any(spacing <= 0):
        raise VolumeFileError(f"{path}: zero spacing in the header ({spacing})")
    return Volume(array, spacing, origin, affine3 / spacing[None, :])


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
        axes = np.eye(3)
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


def _atomic_target(path: Path) -> Path:
    """A temporary path in the same folder, with the same suffix (renamed over ``path`` when written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    return Path(tmp)


def write_volume(volume: Volume, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write a volume as NRRD (gzip) or NIfTI, atomically (temporary file, then rename).

    Boolean arrays are stored as uint8 {0, 1}.
    """
    path = Path(path)
    kind = _format(path)
    array = volume.array.astype(np.uint8) if volume.array.dtype == bool else volume.array
    tmp = _atomic_target(path)
    try:
        if kind == "nrrd":
            header = {
                "space": "left-posterior-superior",
                "space directions": (volume.direction * volume.spacing[None, :]).T,
                "space origin": volume.origin,
                "kinds": ["domain", "domain", "domain"],
                "encoding": "gzip" if compress else "raw",
            }
            nrrd.write(str(tmp), array, header, compression_level=1)
        else:
            affine = np.eye(4)
            affine[:3, :3] = _RAS_TO_LPS @ (volume.direction * volume.spacing[None, :])
            affine[:3, 3] = _RAS_TO_LPS @ volume.origin
            nib.save(nib.Nifti1Image(array, affine), str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def as_mask(volume: Volume, source: str | os.PathLike = "<array>", allow_empty: bool = False) -> Volume:
    """Check that a volume is a binary mask ({0, 1} or bool) and return it with a bool array.

    Raises :class:`VolumeFileError` naming ``source`` for non-binary values or (unless ``allow_empty``) an
    empty mask.
    """
    array = volume.array
    if array.dtype != bool:
        binary = (array == 0) | (array == 1)  # one cheap pass; np.unique would sort all 10⁸ voxels of a 512³ mask
        if not binary.all():
            others = np.unique(array[~binary])
            shown = ", ".join(str(v) for v in others[:6]) + (", ..." if len(others) > 6 else "")
            raise VolumeFileError(
                f"{source}: not a binary mask ({(~binary).sum()} voxels with values {shown}); expected only 0 and 1"
            )
        array = array != 0
    if not allow_empty and not array.any():
        raise VolumeFileError(f"{source}: empty mask (no voxel is 1)")
    return volume.with_array(array)


def read_mask(path: str | os.PathLike, allow_empty: bool = False) -> Volume:
    """Read a binary mask (defective skull, implant, complete skull) as a bool :class:`Volume`."""
    return as_mask(read_volume(path), path, allow_empty=allow_empty)
