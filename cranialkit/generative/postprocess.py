"""Turn decoded generator output (probabilities) into valid cases, and write them as a dataset on disk.

Taught in notebook 04_vae (used by 05–09 and by ``cranialkit generate``).

A generator decodes 2-channel probabilities (channel 0 = defective skull, channel 1 = implant). A usable training
case needs binary masks that do not overlap, no floating specks, one connected skull and an implant that fills a
hole in it. :func:`to_case` enforces that and rejects what cannot be repaired; :func:`write_generated_dataset`
writes accepted cases in the SkullBreak layout (``complete_skull/NNN.nrrd``, ``defective_skull/<class>/NNN.nrrd``,
``implant/<class>/NNN.nrrd``) so that the reconstruction trainer reads them like any other dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from cranialkit.io import write_volume
from cranialkit.jobs import Manifest
from cranialkit.volume import Volume

_FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (empty stays empty)."""
    labels, count = ndimage.label(mask, structure=_FULL_CONNECTIVITY)
    if count <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def remove_specks(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Drop 26-connected components smaller than ``min_voxels`` voxels."""
    labels, count = ndimage.label(mask, structure=_FULL_CONNECTIVITY)
    if count == 0:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def to_case(
    probs: np.ndarray,
    threshold: float = 0.5,
    min_skull_fraction: float = 0.01,
    min_implant_fraction: float = 5e-4,
    speck_fraction: float = 1e-4,
    require_contact: bool = True,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Post-process one sample ``(2, S, S, S)`` into ``(defective, implant)`` bool arrays, or None if invalid.

    Steps: threshold at ``threshold``; implant = implant AND NOT skull; keep the skull's largest connected
    component; drop implant components smaller than ``speck_fraction``·S³ voxels (at least 2 voxels).
    Invalid (None) when the skull has fewer than ``min_skull_fraction``·S³ voxels, the implant fewer than
    ``min_implant_fraction``·S³ (at 32³: 328 and 16 voxels), or — with ``require_contact`` — the implant does not
    touch the skull (a floating implant fills no defect).
    """
    p = np.asarray(probs)
    if p.ndim != 4 or p.shape[0] != 2:
        raise ValueError(f"a sample must have shape (2, S, S, S) (skull, implant), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("sample contains NaN or infinite values")
    n_voxels = p[0].size
    skull = largest_component(p[0] > threshold)
    implant = (p[1] > threshold) & ~skull
    implant = remove_specks(implant, max(2, int(round(speck_fraction * n_voxels))))
    if skull.sum() < min_skull_fraction * n_voxels or implant.sum() < min_implant_fraction * n_voxels:
        return None
    if require_contact and not np.any(ndimage.binary_dilation(implant, structure=_FULL_CONNECTIVITY) & skull):
        return None
    return skull, implant


def write_generated_dataset(
    samples: np.ndarray,
    out_dir: str | os.PathLike,
    name: str = "generated",
    spacing_mm: float | tuple[float, float, float] = 1.0,
    manifest: Manifest | None = None,
    start_index: int = 0,
    **postprocess_kwargs,
) -> dict:
    """Post-process ``samples`` ``(n, 2, S, S, S)`` and write the valid ones as cases of class ``name``.

    Sample ``start_index + i`` becomes case id ``f"{start_index + i:03d}"`` (ids therefore stay unique when a
    large set is written in chunks). Every file is written atomically and every sample (valid or not) is recorded
    in ``manifest`` (default ``out_dir/manifest.jsonl``) afterwards, so an interrupted run resumes where it
    stopped. ``spacing_mm``: voxel size of the generator grid (mm). Returns counts ``written``, ``invalid``,
    ``skipped`` (already done) and the ``out_dir``.
    """
    x = np.asarray(samples)
    if x.ndim != 5 or x.shape[1] != 2:
        raise ValueError(f"samples must have shape (n, 2, S, S, S), got {x.shape}")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a plain folder name for the defect class, got {name!r}")
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,)).copy()
    out = Path(out_dir)
    manifest = manifest if manifest is not None else Manifest(out / "manifest.jsonl")
    counts = {"written": 0, "invalid": 0, "skipped": 0}
    for offset, probs in enumerate(x):
        case_id = f"{start_index + offset:03d}"
        key = f"{name}/{case_id}"
        if key in manifest:
            counts["skipped"] += 1
            continue
        case = to_case(probs, **postprocess_kwargs)
        if case is None:
            counts["invalid"] += 1
            manifest.add({"key": key, "valid": False})
            continue
        defective, implant = case
        for folder, array in (
            (out / "defective_skull" / name, defective),
            (out / "implant" / name, implant),
            (out / "complete_skull", defective | implant),
        ):
            write_volume(Volume(array.astype(np.uint8), spacing=spacing), folder / f"{case_id}.nrrd")
        counts["written"] += 1
        manifest.add({"key": key, "valid": True, "case_id": case_id, "defect_class": name,
                      "skull_voxels": int(defective.sum()), "implant_voxels": int(implant.sum())})
    return {**counts, "out_dir": str(out)}
