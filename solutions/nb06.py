"""Solutions for notebook 06_introvae."""

from __future__ import annotations


def solve_06_encoder_hinge(kl_reconstructed: float, kl_fake: float, margin: float, alpha: float) -> float:
    """α · ([m − KL(x_r)]⁺ + [m − KL(x_p)]⁺)."""
    return alpha * (max(0.0, margin - kl_reconstructed) + max(0.0, margin - kl_fake))
