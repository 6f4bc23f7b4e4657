"""Turn decoded generator output (probabilities) into valid cases, and write them as a dataset on disk.

Taught in notebook 04_vae (used by 05–09 and by ``cranialkit generate``).

A generator decodes 2-channel probabilities (channel 0 = defective skull, channel 1 = implant). A usable training
case needs binary masks that do not overlap, no floating specks, one connected skull and an implant that fills a
hole in it — and, since a generator can satisfy those in letter with noise, surfaces that are not speckled and an
implant that is one main piece (:func:`mean_face_neighbours`, :func:`main_component_fraction`). :func:`to_case`
enforces that and rejects what cannot be repaired (:func:`postprocess_sample` and
:func:`rejection_counts` say which criterion failed); :func:`write_generated_dataset` writes accepted cases in the
SkullBreak layout (``complete_skull/NNN.nrrd``, ``defective_skull/<class>/NNN.nrrd``, ``implant/<class>/NNN.nrrd``)
so that the reconstruction trainer reads them like any other dataset.

Overlap: where both channels exceed the threshold, the voxel goes to the channel with the higher probability.
Reconstruction's rule, "implant AND NOT skull", suits a *given* defective skull; here both channels are uncertain
predictions, and a decoder that is not sure where the defect is paints the complete skull in channel 0 and a
confident implant on top of it. "AND NOT skull" would erase such implants and reject most of those samples as
"implant too small"; giving the voxel to the more probable channel keeps them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from cranialkit.io import write_volume
from cranialkit.jobs import Manifest
from cranialkit.preprocessing import largest_component  # noqa: F401  (re-exported: the skull's main piece)
from cranialkit.volume import Volume

_FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
_FACE_NEIGHBOURS = ndimage.generate_binary_structure(3, 1).astype(np.int32)
_FACE_NEIGHBOURS[1, 1, 1] = 0


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """26-connected component labels of ``mask`` and the voxel count of each label (index 0 = background)."""
    labels, _ = ndimage.label(mask, structure=_FULL_CONNECTIVITY)
    return labels, np.bincount(labels.ravel())


def remove_specks(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Drop 26-connected components smaller than ``min_voxels`` voxels."""
    labels, sizes = _components(mask)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def mean_face_neighbours(mask: np.ndarray) -> float:
    """Mean number of face neighbours (of 6) that each voxel of ``mask`` has inside ``mask``; 0.0 for an empty mask.

    A measure of speckle: a solid block scores close to 6, a sheet one voxel thick 4, a line 2, scattered voxels or
    a checkerboard 0. At 32³ the phantom training pairs score 3.0–3.7 (skull) and 2.5–3.6 (implant), the real
    SkullFix sample 3.0–3.3 and 3.2–3.9.
    """
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return 0.0
    counts = ndimage.convolve(m.astype(np.int32), _FACE_NEIGHBOURS, mode="constant")
    return float(counts[m].mean())


def main_component_fraction(mask: np.ndarray) -> float:
    """Fraction of the voxels of ``mask`` in its largest 26-connected component (1.0 for one piece, 0.0 if empty)."""
    sizes = _components(mask)[1][1:]
    return float(sizes.max() / sizes.sum()) if sizes.size else 0.0


REJECTION_REASONS = ("skull too small", "skull speckled", "implant too small", "implant speckled",
                     "implant scattered", "implant not touching skull")


def postprocess_sample(
    probs: np.ndarray,
    threshold: float = 0.5,
    min_skull_fraction: float = 0.01,
    min_implant_fraction: float = 5e-4,
    speck_fraction: float = 1e-4,
    min_face_neighbours: float = 2.0,
    min_implant_main_fraction: float = 0.5,
    require_contact: bool = True,
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Post-process one sample ``(2, S, S, S)`` into ``(defective, implant, reason)``; ``reason`` is None if valid.

    Steps: threshold at ``threshold``; a voxel above it in both channels goes to the more probable one (see the
    module docstring); keep the skull's largest connected component; drop implant components smaller than
    ``speck_fraction``·S³ voxels (at least 2 voxels).
    ``reason`` (one of :data:`REJECTION_REASONS`, checked in that order) says why a sample is not a usable case:

    - "skull too small" / "implant too small": fewer than ``min_skull_fraction``·S³ / ``min_implant_fraction``·S³
      voxels (at 32³: 328 and 16 voxels);
    - "skull speckled" / "implant speckled": its voxels have on average fewer than ``min_face_neighbours`` face
      neighbours (:func:`mean_face_neighbours`: real shells 2.5–3.7, a checkerboard or dust ≈ 0–1);
    - "implant scattered": its largest piece holds less than ``min_implant_main_fraction`` of its voxels (training
      implants: ≥ 0.9; a defect is one hole, not specks spread over the vault);
    - "implant not touching skull" (with ``require_contact``): a floating implant fills no defect.
    """
    p = np.asarray(probs)
    if p.ndim != 4 or p.shape[0] != 2:
        raise ValueError(f"a sample must have shape (2, S, S, S) (skull, implant), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("sample contains NaN or infinite values")
    n_voxels = p[0].size
    implant_wins = p[1] > p[0]
    skull = largest_component((p[0] > threshold) & ~implant_wins)
    implant = (p[1] > threshold) & implant_wins
    implant = remove_specks(implant, max(2, int(round(speck_fraction * n_voxels))))
    reason = None
    if skull.sum() < min_skull_fraction * n_voxels:
        reason = "skull too small"
    elif mean_face_neighbours(skull) < min_face_neighbours:
        reason = "skull speckled"
    elif implant.sum() < min_implant_fraction * n_voxels:
        reason = "implant too small"
    elif mean_face_neighbours(implant) < min_face_neighbours:
        reason = "implant speckled"
    elif main_component_fraction(implant) < min_implant_main_fraction:
        reason = "implant scattered"
    elif require_contact and not np.any(ndimage.binary_dilation(implant, structure=_FULL_CONNECTIVITY) & skull):
        reason = "implant not touching skull"
    return skull, implant, reason


def to_case(probs: np.ndarray, **postprocess_kwargs) -> tuple[np.ndarray, np.ndarray] | None:
    """``(defective, implant)`` bool arrays of one sample ``(2, S, S, S)``, or None when it is not a valid case.

    See :func:`postprocess_sample` for the steps and the criteria (keyword arguments are passed on).
    """
    skull, implant, reason = postprocess_sample(probs, **postprocess_kwargs)
    return None if reason is not None else (skull, implant)


def rejection_counts(samples: np.ndarray, **postprocess_kwargs) -> dict[str, int]:
    """How many of ``samples`` ``(n, 2, S, S, S)`` are valid and how many fail each criterion of
    :func:`postprocess_sample` (keys ``"valid"`` and :data:`REJECTION_REASONS`): tells what to fix when the
    valid fraction is low."""
    x = np.asarray(samples)
    if x.ndim != 5 or x.shape[1] != 2:
        raise ValueError(f"samples must have shape (n, 2, S, S, S), got {x.shape}")
    counts = dict.fromkeys(("valid", *REJECTION_REASONS), 0)
    for probs in x:
        counts[postprocess_sample(probs, **postprocess_kwargs)[2] or "valid"] += 1
    return counts


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
