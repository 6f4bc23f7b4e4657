"""Latent points for sampling — random Gaussian or uniform deterministic sampling (UDS) — and the measures
that compare them (latent coverage, diversity of decoded volumes, distance to training cases, validity).

Taught in notebook 09_uds_vs_random (random sampling first appears in 04_vae).

Random: ``z ~ N(0, I) · scale``, seeded.

UDS (cranialkit's definition, docs/DESIGN.md): take the first ``n`` points ``u_1 … u_n`` of a deterministic
low-discrepancy sequence in the unit cube ``[0, 1)^d`` (``d`` = number of latent values) and map each coordinate
through the inverse standard-normal CDF: ``z = scale · Φ⁻¹(u)``. The points are therefore *uniform in
probability* under the N(0, I) prior: every quantile slab of every latent coordinate receives its fair share of
points, with no clusters and no holes — the even coverage random draws only reach on average.

- Sequence: unscrambled Sobol (``scipy.stats.qmc.Sobol(d, scramble=False)``) starting at its SECOND point (the
  first is the cube's corner 0, which Φ⁻¹ maps to −∞); the second point is (½, …, ½), i.e. the prior mean
  ``z = 0``. Sobol is defined up to d = 21201; above that (large latent grids of diffusion models) the R_d
  sequence (Roberts 2018, ``u_i = frac(½ + i·α)``, ``α_j = φ_d^{-j}``, φ_d the unique positive root of
  ``x^{d+1} = x + 1``) is used — it has no dimension limit but covers less evenly than Sobol.
- Coordinates are clipped to ``[1e-6, 1 − 1e-6]`` before Φ⁻¹, so no point is farther than 4.75·scale per axis.
- ``scale`` (default 1): how far from the centre the points reach; < 1 trades diversity for plausibility.
- Deterministic: the same ``n`` gives identical points, and the first ``m < n`` points are the same as for
  ``n = m`` (``seed`` is ignored for UDS). A grid latent ``(C, D, H, W)`` is filled from the flat point in C order.

Measures (all deterministic):

- :func:`latent_coverage` — ``covering_distance`` (mean distance from a fixed set of N(0, I) reference points to
  the nearest sample point; lower = the prior's mass is covered better), ``projection_discrepancy`` (mean centred
  L2 discrepancy of 2-D coordinate projections of ``Φ(z)``; lower = more uniform; the full-dimensional
  discrepancy grows exponentially with d and says nothing at d ≥ 32), ``mean_nn_distance`` / ``min_nn_distance``
  (spread; in high dimensions these mostly follow the points' radii, so they are reported, not used to rank),
  ``mean_radius`` (‖z‖ / √d; ≈ 1 for Gaussian draws).
- :func:`volume_diversity` — mean pairwise 1 − Dice of the decoded, thresholded volumes (higher = more varied).
- :func:`nearest_training_dice` — Dice of each sample with its most similar training pair (≈ 1 = a copy).
- :func:`valid_fraction` — share of samples that post-processing accepts as cases; :func:`valid_fraction_by_seed`
  repeats it over several random draws, because one draw of 100 is noisy (a binomial spread of about ± 7 points
  at a rate of 85 %).
- :func:`vault_gap_fraction` — share of directions from the head's centre through the upper head along which no
  bone is met: holes in the shell, which the validity criteria do not check. Compare it with the training pairs'
  own value: at 32³ (6.5 mm voxels) a 4–10 mm vault is one voxel thick and the training shells leak too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.spatial.distance import cdist
from scipy.special import ndtr, ndtri
from scipy.stats import qmc

if TYPE_CHECKING:  # only for the type hint: base.py imports this module
    from cranialkit.generative.base import Generator

SAMPLERS = ("random", "uds")
SOBOL_MAX_DIM = 21201
_CLIP = 1e-6


def unit_cube_points(n: int, d: int) -> np.ndarray:
    """The first ``n`` points (after the origin) of the unscrambled Sobol sequence in ``[0, 1)^d``, or of the
    R_d sequence when ``d`` > 21201; float64 ``(n, d)``. Deterministic."""
    if n < 0 or d < 1:
        raise ValueError(f"need n >= 0 and d >= 1, got n={n}, d={d}")
    if d <= SOBOL_MAX_DIM:
        engine = qmc.Sobol(d, scramble=False)
        engine.fast_forward(1)  # skip the origin (Φ⁻¹(0) = −∞)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "balance properties need n = 2^m": irrelevant for a prefix
            return engine.random(n)
    return r_sequence(n, d)


def r_sequence(n: int, d: int) -> np.ndarray:
    """The R_d low-discrepancy sequence (Roberts 2018): ``u_i = frac(½ + i·α)``, i = 1 … n, float64 ``(n, d)``."""
    phi = 2.0
    for _ in range(100):  # fixed point of x = (1 + x)^(1/(d+1)); converges quickly
        phi = (1.0 + phi) ** (1.0 / (d + 1))
    alpha = np.power(1.0 / phi, np.arange(1, d + 1, dtype=np.float64))
    index = np.arange(1, n + 1, dtype=np.float64)[:, None]
    return np.mod(0.5 + index * alpha[None, :], 1.0)


def latent_points(n: int, shape: tuple[int, ...] | int, sampler: str = "random", seed: int = 0,
                  scale: float = 1.0) -> torch.Tensor:
    """``n`` latent points of ``shape`` (one sample, no batch dim) as float32 ``(n, *shape)``.

    ``"random"``: N(0, I)·scale from a generator seeded with ``seed``. ``"uds"``: scale·Φ⁻¹(low-discrepancy points)
    as the module docstring defines; ``seed`` is ignored (UDS is deterministic).
    """
    shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if scale <= 0 or not math.isfinite(scale):
        raise ValueError(f"scale must be positive and finite, got {scale}")
    d = math.prod(shape)
    if sampler == "random":
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn((n, d), generator=g).reshape(n, *shape) * scale
    if sampler == "uds":
        u = np.clip(unit_cube_points(n, d), _CLIP, 1.0 - _CLIP)
        return torch.from_numpy(ndtri(u) * scale).float().reshape(n, *shape)
    raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")


def _reference_points(n: int, d: int) -> np.ndarray:
    return np.random.default_rng(20240609).standard_normal((n, d))


def latent_coverage(points: np.ndarray | torch.Tensor, n_reference: int = 2000, max_pairs: int = 200) -> dict:
    """Spread and coverage of latent points ``(n, ...)`` (flattened to ``(n, d)``) under the N(0, I) prior.

    Returns ``covering_distance`` (lower = better), ``projection_discrepancy`` (lower = better),
    ``mean_nn_distance``, ``min_nn_distance``, ``mean_radius``, ``n``, ``d``. See the module docstring.
    """
    z = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    n, d = z.shape
    if n < 2:
        raise ValueError(f"latent_coverage needs at least 2 points, got {n}")
    dist = cdist(z, z)
    np.fill_diagonal(dist, np.inf)
    nn = dist.min(axis=1)
    covering = cdist(_reference_points(n_reference, d), z).min(axis=1).mean()
    u = np.clip(ndtr(z), 0.0, 1.0)
    if d == 1:
        proj = qmc.discrepancy(u)
    else:
        pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
        if len(pairs) > max_pairs:  # a fixed, evenly spread subset of the coordinate pairs
            pairs = [pairs[k] for k in np.linspace(0, len(pairs) - 1, max_pairs).astype(int)]
        proj = float(np.mean([qmc.discrepancy(u[:, [i, j]]) for i, j in pairs]))
    return {
        "n": n,
        "d": d,
        "covering_distance": float(covering),
        "projection_discrepancy": float(proj),
        "mean_nn_distance": float(nn.mean()),
        "min_nn_distance": float(nn.min()),
        "mean_radius": float((np.linalg.norm(z, axis=1) / math.sqrt(d)).mean()),
    }


def _binary_flat(samples: np.ndarray, threshold: float, channels: tuple[int, ...]) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim != 5:
        raise ValueError(f"samples must have shape (n, 2, S, S, S), got {x.shape}")
    return (x[:, list(channels)] > threshold).reshape(len(x), -1).astype(np.float32)


def _dice_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dice of every row of ``a`` with every row of ``b`` (binary float rows); two empty rows have Dice 1."""
    inter = a @ b.T
    sizes = a.sum(1)[:, None] + b.sum(1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(sizes > 0, 2.0 * inter / sizes, 1.0)
    return dice


def volume_diversity(samples: np.ndarray, threshold: float = 0.5) -> dict:
    """Mean pairwise dissimilarity (1 − Dice) of thresholded samples ``(n, 2, S, S, S)``.

    Keys: ``skull`` (channel 0), ``implant`` (channel 1), ``pair`` (both channels as one mask); higher = more
    varied. Needs n ≥ 2.
    """
    n = len(samples)
    if n < 2:
        raise ValueError(f"volume_diversity needs at least 2 samples, got {n}")
    upper = np.triu_indices(n, k=1)
    out = {}
    for key, channels in (("skull", (0,)), ("implant", (1,)), ("pair", (0, 1))):
        flat = _binary_flat(samples, threshold, channels)
        out[key] = float((1.0 - _dice_matrix(flat, flat))[upper].mean())
    return out


def nearest_training_dice(samples: np.ndarray, training: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """For each sample, the highest Dice with any training pair (both channels as one mask); ``(n,)`` float.

    ≈ 1 means the generator copied a training case; a plausible new case sits high but clearly below 1.
    """
    a = _binary_flat(samples, threshold, (0, 1))
    b = _binary_flat(training, 0.5, (0, 1))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"samples {np.shape(samples)} and training {np.shape(training)} have different grids")
    return _dice_matrix(a, b).max(axis=1)


def valid_fraction(samples: np.ndarray, **postprocess_kwargs) -> float:
    """Share of samples ``(n, 2, S, S, S)`` that :func:`cranialkit.generative.postprocess.to_case` accepts."""
    from cranialkit.generative.postprocess import to_case

    if len(samples) == 0:
        raise ValueError("valid_fraction of zero samples is undefined")
    return float(np.mean([to_case(s, **postprocess_kwargs) is not None for s in samples]))


def valid_fraction_by_seed(model: Generator, n: int, seeds: Iterable[int] = range(5), device: str = "auto",
                           **sample_kwargs) -> list[float]:
    """:func:`valid_fraction` of ``n`` random samples of ``model`` for each seed in ``seeds`` (one draw per seed).

    Report their mean (and spread) rather than one draw: 100 samples estimate a valid rate of 85 % only to about
    ± 7 points (95 % binomial interval).
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("valid_fraction_by_seed needs at least one seed")
    return [valid_fraction(model.sample(n, sampler="random", seed=int(s), device=device, **sample_kwargs))
            for s in seeds]


@torch.no_grad()
def sampled_defect_cones(model: Generator, n: int, sampler: str = "random", seed: int = 0,
                         scale: float = 1.0) -> dict[str, np.ndarray] | None:
    """Where a generator with a cone-shaped defect region (``output = "skull_and_cap"``) puts its defects.

    For the same ``n`` latent points as ``model.sample(n, sampler, seed, scale=scale)`` decodes, the cone of each
    (:class:`~cranialkit.generative.blocks.CapRegion`): ``apex`` ``(n, 3)`` in voxels from the grid centre,
    unit ``axis`` ``(n, 3)`` in array axes (axis 2 = superior) and ``half_angle_deg`` ``(n,)``. ``None`` for a
    model that paints its defect otherwise (no cone to read). Taught in notebooks 04–07.
    """
    from cranialkit.generative.blocks import CapRegion

    cap = next((m for m in model.modules() if isinstance(m, CapRegion)), None)
    if cap is None:
        return None
    z = latent_points(n, model.latent_shape, sampler, seed=seed, scale=scale).to(model.device)
    apex, axis, half_angle = (t.float().cpu().numpy() for t in cap.parameters_from(z))
    return {"apex": apex, "axis": axis, "half_angle_deg": np.degrees(half_angle)}


def _upper_directions(n: int, min_elevation_deg: float) -> np.ndarray:
    """``n`` unit vectors spread evenly (a Fibonacci lattice in ``sin(elevation)``) over the directions whose
    elevation above the axis-0/axis-1 plane exceeds ``min_elevation_deg``; array axis 2 points up."""
    i = np.arange(n) + 0.5
    low = math.sin(math.radians(min_elevation_deg))
    height = low + (1.0 - low) * i / n  # uniform in sin(elevation) = uniform in area on the sphere
    azimuth = i * math.pi * (3.0 - math.sqrt(5.0))  # golden angle
    radius = np.sqrt(1.0 - height**2)
    return np.stack([radius * np.cos(azimuth), radius * np.sin(azimuth), height], axis=1)


def vault_gap_fraction(samples: np.ndarray, threshold: float = 0.5, n_directions: int = 2000,
                       min_elevation_deg: float = 10.0) -> np.ndarray:
    """Per sample, the share of directions from the grid centre into the upper head along which a ray meets no
    bone (skull or implant channel above ``threshold``): 0 for a closed vault, larger with holes in the shell.

    ``samples`` are pairs ``(n, 2, S, S, S)`` (or one ``(2, S, S, S)``), array axis 2 = superior as in the
    phantoms; ``n_directions`` directions with elevation above ``min_elevation_deg`` (degrees; below it the rays
    leave through the orbits and the foramen magnum, which are meant to be open). Rays are sampled every 0.25
    voxel and read the nearest voxel, so a shell that is one voxel thick and joined only along edges lets some
    rays through: compare samples with the training pairs at the same grid, not with 0. Returns ``(n,)`` floats.
    """
    x = np.asarray(samples)
    if x.ndim == 4:
        x = x[None]
    if x.ndim != 5 or x.shape[1] != 2 or len(set(x.shape[2:])) != 1:
        raise ValueError(f"expected pairs of shape (n, 2, S, S, S), got {np.shape(samples)}")
    size = x.shape[-1]
    directions = _upper_directions(int(n_directions), float(min_elevation_deg))
    radii = np.arange(0.0, size / 2.0 * math.sqrt(3.0), 0.25)
    points = np.rint((size - 1) / 2.0 + directions[:, None, :] * radii[None, :, None]).astype(int)
    inside = np.all((points >= 0) & (points < size), axis=2)
    points = np.clip(points, 0, size - 1)
    bone = (x[:, 0] > threshold) | (x[:, 1] > threshold)
    hits = bone[:, points[..., 0], points[..., 1], points[..., 2]] & inside  # (n, directions, radii)
    return 1.0 - hits.any(axis=2).mean(axis=1)


def defect_direction_recall(training_directions: np.ndarray, sampled_axes: np.ndarray,
                            max_angle_deg: float = 15.0) -> float:
    """Share of the training implants that have a sampled defect axis within ``max_angle_deg`` (degrees) of their
    direction: 1 when the generator draws defects wherever the training set has them; lower when it leaves some
    places out (a mode drop that validity and Dice do not show). Directions are ``(n, 3)`` vectors of any length
    (:func:`cranialkit.generative.data.implant_directions`, :func:`sampled_defect_cones`); NaN rows are skipped.
    """
    reference = np.asarray(training_directions, dtype=np.float64)
    reference = reference[np.all(np.isfinite(reference), axis=1)]
    axes = np.asarray(sampled_axes, dtype=np.float64)
    if len(reference) == 0 or len(axes) == 0:
        raise ValueError("defect_direction_recall needs at least one training direction and one sampled axis")
    reference = reference / np.linalg.norm(reference, axis=1, keepdims=True).clip(min=1e-12)
    axes = axes / np.linalg.norm(axes, axis=1, keepdims=True).clip(min=1e-12)
    nearest_cos = (reference @ axes.T).max(axis=1)
    return float(np.mean(nearest_cos >= math.cos(math.radians(max_angle_deg))))
