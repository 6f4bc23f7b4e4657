"""Solutions for notebook 07_soft_introvae."""

from __future__ import annotations

import math


def solve_07_fake_reward(reconstruction: float, kl: float, beta_neg: float, beta_kl: float,
                         beta_rec: float = 1.0) -> float:
    """exp(−2·E_neg) with E_neg = β_rec·L_rec + β_neg·KL (β_kl is the weight for real data: not used here)."""
    return math.exp(-2 * (beta_rec * reconstruction + beta_neg * kl))
