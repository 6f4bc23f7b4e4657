"""Solutions for notebook 09_uds_vs_random."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, qmc


def solve_09_my_uds(**_) -> object:
    """scale · Φ⁻¹ of the first n unscrambled Sobol points after the origin."""

    def my_uds(n: int, d: int, scale: float = 1.0) -> np.ndarray:
        engine = qmc.Sobol(d, scramble=False)
        engine.fast_forward(1)  # the origin would map to −∞
        return scale * norm.ppf(engine.random(n))

    return my_uds


def solve_09_quartile_deviation(uds_z, random_z, scale: float = 1.0) -> tuple[float, float]:
    """Per coordinate, the share of points below scale · Φ⁻¹(0.25); the largest |share − 0.25|, for UDS and random."""
    quartile = scale * norm.ppf(0.25)
    return tuple(float(np.abs((np.asarray(z) < quartile).mean(axis=0) - 0.25).max()) for z in (uds_z, random_z))
