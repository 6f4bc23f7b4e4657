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
        raise VolumeFileError(f"{path}: unreadable or truncated {kind.upper()} file ({type(exc).__name__}: {exc})") from exc
    if array.ndim != 3:
        raise VolumeFileError(f"{path}: expected a 3D volume, got {array.ndim}D with shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise VolumeFileError(f"{path}: contains NaN or infinite values")
    if kind == "nrrd":
        axes = np.asarray(header.get("space directions", np.eye(3)), dtype=float)
        if axes.shape != (3, 3) or not np.all(np.isfinite(axes)):
            raise VolumeFileError(f"{path}: 'space directions' is not a 3×3 matrix: {axes}")
        origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=float)
        space = str(header.get("space", "left-posterior-superior")).lower()
        if space in ("right-anterior-superior", "ras"):
            axes, origin = axes @ _RAS_TO_LPS, _RAS_TO_LPS @ origin
        affine3 = axes.T  # columns = axis vectors
    else:
        affine = image.affine
        affine3 = _RAS_TO_LPS @ affine[:3, :3]
        origin = _RAS_TO_LPS @ affine[:3, 3]
    spacing = np.linalg.norm(affine3, axis=0)
    if np.any(spacing <= 0):
        raise VolumeFileError(f"{path}: zero spacing in the header ({spacing})")
    return Volume(array, spacing, origin, affine3 / spacing[None, :])


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
        values = np.unique(array)
        if not np.all(np.isin(values, (0, 1))):
            shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
            raise VolumeFileError(f"{source}: not a binary mask (values {shown}); expected only 0 and 1")
        array = array.astype(bool)
    if not allow_empty and not array.any():
        raise VolumeFileError(f"{source}: empty mask (no voxel is 1)")
    return volume.with_array(array)


def read_mask(path: str | os.PathLike, allow_empty: bool = False) -> Volume:
    """Read a binary mask (defective skull, implant, complete skull) as a bool :class:`Volume`."""
    return as_mask(read_volume(path), path, allow_empty=allow_empty)
