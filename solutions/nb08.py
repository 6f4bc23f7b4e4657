"""Solutions for notebook 08_latent_diffusion."""

from __future__ import annotations

import numpy as np


def solve_08_ddim_timesteps(model, num_inference_steps: int) -> list[int]:
    """Trailing spacing: from T − 1 down in jumps of T / k."""
    total = model.config["num_train_timesteps"]
    return [int(t) for t in np.round(np.arange(total, 0, -total / num_inference_steps)) - 1]


def solve_08_add_noise(model) -> object:
    """z_t = √ᾱ_t · z0 + √(1 − ᾱ_t) · noise with ᾱ_t = alphas_cumprod[t]."""
    alphas_cumprod = model.train_scheduler.alphas_cumprod

    def add_noise(z0, noise, t: int):
        abar = alphas_cumprod[t]
        return abar.sqrt() * z0 + (1 - abar).sqrt() * noise

    return add_noise
