"""Generative augmentation: sample a trained generator and write the valid samples as a dataset on disk.

Taught in notebook 09_uds_vs_random (and used by ``cranialkit generate``). The output folder has the SkullBreak
layout with one defect class (the generator's name by default), so the reconstruction trainer loads it with
:func:`cranialkit.data.datasets.load_dataset` like any other source.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cranialkit.generative.base import Generator, _progress
from cranialkit.generative.postprocess import write_generated_dataset
from cranialkit.generative.sampling import latent_points
from cranialkit.jobs import Manifest, claim_output, identity_of, unfinished
from cranialkit.volume import spacing_problem


def generate_dataset(
    generator: Generator,
    n: int,
    out_dir: str | os.PathLike,
    sampler: str = "uds",
    seed: int = 0,
    scale: float = 1.0,
    spacing_mm: float | None = None,
    name: str | None = None,
    chunk: int = 64,
    batch_size: int = 8,
    device: str = "auto",
    progress: bool = True,
    overwrite: bool = False,
    **postprocess_kwargs,
) -> dict:
    """Decode ``n`` latent points of ``sampler`` and write the valid cases to ``out_dir`` (resumable).

    Latent points are drawn once for all ``n`` (so chunking does not change which points are used — UDS takes
    the first ``n`` of its sequence); chunks of ``chunk`` samples are decoded and written in turn, and chunks that
    the manifest lists as done are skipped. ``spacing_mm`` is the voxel size of the generator grid (mm; default
    240 mm / S, the phantoms' field of view). Returns counts ``written``, ``invalid``, ``skipped``, and
    ``valid_fraction``.

    ``out_dir`` records what made it (the generator's weights and settings, ``n``, sampler, seed, scale, spacing,
    post-processing: :func:`cranialkit.jobs.claim_output`); resuming it with anything else is refused unless
    ``overwrite`` starts over. Several processes may write into one ``out_dir``: each chunk is done once.
    """
    if n < 1 or chunk < 1:
        raise ValueError(f"need n >= 1 and chunk >= 1, got n={n}, chunk={chunk}")
    name = name or generator.name
    spacing = float(spacing_mm) if spacing_mm is not None else 240.0 / generator.resolution
    problem = spacing_problem(np.full(3, spacing))
    if problem:
        raise ValueError(f"spacing_mm: {problem}; pass the voxel size of the generator grid in mm")
    out = Path(out_dir)
    identity = {"job": "generate", "generator": identity_of(generator), "n": int(n), "sampler": sampler,
                "seed": int(seed), "scale": float(scale), "spacing_mm": spacing, "name": name,
                "postprocess": postprocess_kwargs}
    claim_output(out, identity, overwrite=overwrite)
    manifest = Manifest(out / "manifest.jsonl")
    # LDMs override `sample` (the points are initial noise, not latents), so go through `sample` when they do.
    uses_plain_decode = type(generator).sample is Generator.sample
    z = latent_points(n, generator.latent_shape, sampler, seed=seed, scale=scale) if uses_plain_decode else None
    totals = {"written": 0, "invalid": 0, "skipped": 0}

    def chunk_done(start: int) -> bool:
        return all(f"{name}/{i:03d}" in manifest for i in range(start, min(n, start + chunk)))

    starts = list(range(0, n, chunk))
    totals["skipped"] = sum(min(n, s + chunk) - s for s in starts if chunk_done(s))
    for start in unfinished(_progress(starts, progress, desc=f"generating {name}"), lambda s: f"{name}-chunk-{s}",
                            manifest, out, done=chunk_done):
        stop = min(n, start + chunk)
        if z is not None:
            samples = generator.decode_batched(z[start:stop], batch_size=batch_size, device=device)
        else:
            samples = generator.sample(stop, sampler=sampler, seed=seed, batch_size=batch_size, scale=scale,
                                       device=device)[start:]
        counts = write_generated_dataset(samples, out, name=name, spacing_mm=spacing, manifest=manifest,
                                         start_index=start, **postprocess_kwargs)
        for key in totals:
            totals[key] += counts[key]
    records = [r for r in manifest.records() if r["key"].startswith(f"{name}/")]
    valid = sum(bool(r.get("valid")) for r in records)
    return {**totals, "valid_fraction": valid / max(1, len(records)), "out_dir": str(out), "name": name}
