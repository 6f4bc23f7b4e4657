"""Checkers for the exercises of notebook 09_uds_vs_random."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from cranialkit.exercises.registry import Feedback, call_answer, exercise
from cranialkit.generative.sampling import latent_points


def _points(answer, n: int, d: int, scale: float) -> tuple[np.ndarray | None, Feedback | None]:
    got, problem = call_answer(answer, n, d, scale)
    if problem is not None:
        return None, problem
    got = np.asarray(got.detach().cpu() if hasattr(got, "detach") else got, dtype=np.float64)
    if got.shape != (n, d):
        return None, Feedback(False, f"my_uds({n}, {d}) must return an array of shape ({n}, {d}), got {got.shape}")
    return got, None


@exercise("09_my_uds")
def my_uds(answer) -> Feedback:
    """A hand-written ``my_uds(n, d, scale)`` must return the same points as ``latent_points(n, (d,), "uds", scale)``:
    scale · Φ⁻¹ of the unscrambled Sobol points after the origin."""
    for n, d, scale in [(8, 2, 1.0), (20, 5, 0.7), (1, 3, 1.0)]:
        expected = latent_points(n, (d,), "uds", scale=scale).numpy().astype(np.float64)
        got, problem = _points(answer, n, d, scale)
        if problem is not None:
            return problem
        if np.allclose(got, expected, atol=1e-4):
            again, problem = _points(answer, n, d, scale)
            if problem is not None or not np.array_equal(got, again):
                return Feedback(False, "UDS must give the same points on every call")
            continue
        again, problem = _points(answer, n, d, scale)
        if problem is not None:
            return problem
        if not np.array_equal(got, again):
            return Feedback(False, "your points change from call to call: use qmc.Sobol(d, scramble=False) — UDS is "
                                   "deterministic")
        if not np.isfinite(got).all() or np.allclose(got[0], ndtri(1e-6) * scale, atol=1e-3):
            return Feedback(False, "the first Sobol point is the corner 0, which Φ⁻¹ maps to −∞: skip it with "
                                   "engine.fast_forward(1)")
        if got.min() >= 0 and got.max() <= 1:
            return Feedback(False, "these look like points in the unit cube: map them through Φ⁻¹ "
                                   "(scipy.stats.norm.ppf) so they follow N(0, I)")
        if scale != 1 and np.allclose(got, expected / scale, atol=1e-4):
            return Feedback(False, "multiply by scale")
        return Feedback(False, f"my_uds({n}, {d}, {scale}) differs from latent_points({n}, ({d},), 'uds', "
                               f"scale={scale}): Sobol(d, scramble=False), fast_forward(1), random(n), Φ⁻¹, × scale")
    return Feedback(True, "right: your points are cranialkit's UDS points — the first one is the prior mean z = 0")


def quartile_deviation(points, threshold: float) -> float:
    """Largest |share of points below ``threshold`` − 0.25| over the coordinates of ``points`` ``(n, ...)``."""
    z = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    return float(np.abs((z < threshold).mean(axis=0) - 0.25).max())


@exercise("09_quartile_deviation")
def check_quartile_deviation(answer, uds_z, random_z, scale: float = 1.0) -> Feedback:
    """(UDS, random): per coordinate, the share of points below the prior's lower quartile scale · Φ⁻¹(0.25); the
    largest deviation of that share from 0.25 over the coordinates."""
    quartile = float(ndtri(0.25)) * float(scale)
    expected = (quartile_deviation(uds_z, quartile), quartile_deviation(random_z, quartile))
    try:
        got = tuple(float(v) for v in answer)
    except (TypeError, ValueError):
        return Feedback(False, "give two numbers: (deviation for the UDS points, deviation for the random points)")
    if len(got) != 2:
        return Feedback(False, "give two numbers: (deviation for the UDS points, deviation for the random points)")

    def same(values: tuple[float, float]) -> bool:
        return bool(np.allclose(got, values, atol=1e-6))

    def both(function) -> tuple[float, float]:
        return tuple(function(np.asarray(z).reshape(len(z), -1)) for z in (uds_z, random_z))

    if same(expected):
        return Feedback(True, f"right: UDS {expected[0]:.3f}, random {expected[1]:.3f} — UDS gives the lowest quarter "
                              "of every coordinate its fair share by construction; random points only on average")
    if same(expected[::-1]):
        return Feedback(False, "swapped: the UDS deviation first, then the random one")
    if same(both(lambda z: float(np.abs((z < quartile).mean(axis=1) - 0.25).max()))):
        return Feedback(False, "you took the share per point (axis=1); take it per coordinate, over the points "
                               "(axis=0)")
    if same(both(lambda z: float(((z < quartile).mean(axis=0) - 0.25).max()))):
        return Feedback(False, "take the absolute deviation |share − 0.25|: too few points below counts too")
    if same((quartile_deviation(uds_z, 0.25), quartile_deviation(random_z, 0.25))):
        return Feedback(False, "0.25 is a probability, not a latent value: the quartile is scale · Φ⁻¹(0.25) "
                               "(scipy.stats.norm.ppf(0.25) ≈ −0.674)")
    if scale != 1 and same(both(lambda z: quartile_deviation(z, quartile / scale))):
        return Feedback(False, "the points were multiplied by scale, so the quartile is scale · Φ⁻¹(0.25)")
    if same(both(lambda z: float(abs((z[:, 0] < quartile).mean() - 0.25)))):
        return Feedback(False, "that is coordinate 0 only; take the largest deviation over all coordinates")
    return Feedback(False, "q = scale · norm.ppf(0.25); for each set: np.abs((z < q).mean(axis=0) − 0.25).max()")
