"""Checkers for the exercises of notebook 08_latent_diffusion."""

from __future__ import annotations

import numpy as np
import torch

from cranialkit.exercises.registry import Feedback, call_answer, exercise


@exercise("08_ddim_timesteps")
def ddim_timesteps(answer, model, num_inference_steps: int) -> Feedback:
    """The timesteps, in the order visited, of ``model``'s DDIM scheduler with ``num_inference_steps`` steps."""
    scheduler = model.make_scheduler("ddim")
    scheduler.set_timesteps(int(num_inference_steps))
    expected = [int(t) for t in scheduler.timesteps]
    total, k = int(model.config["num_train_timesteps"]), int(num_inference_steps)
    try:
        got = [int(t) for t in np.asarray(answer).reshape(-1)]
    except (TypeError, ValueError):
        return Feedback(False, "give the timesteps as a list of integers, e.g. [999, 499]")
    if got == expected:
        return Feedback(True, f"right: {expected[:4]}{' ...' if k > 4 else ''} — from pure noise at t = {total - 1} "
                              f"down in jumps of {total // k}")
    if len(got) != len(expected):
        return Feedback(False, f"DDIM with {k} steps visits exactly {k} timesteps; you gave {len(got)}")
    if got == expected[::-1]:
        return Feedback(False, "the reverse process runs from noise to data: start at the largest t and go down")
    if got == [i * total // k for i in reversed(range(k))]:
        return Feedback(False, f"that is 'leading' spacing, which ends at t = 0 and never starts from pure noise; "
                               f"this model uses 'trailing' spacing, which starts at t = {total - 1}")
    if got == [int(round(t)) for t in np.linspace(total - 1, 0, k)]:
        return Feedback(False, f"equal jumps of T/k = {total / k:g}, starting at T − 1 = {total - 1}; the last step "
                               "need not reach 0")
    return Feedback(False, f"trailing spacing: round(arange(T, 0, −T/k)) − 1 with T = {total}, k = {k}")


def _test_latents(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, *shape, generator=g), torch.randn(2, *shape, generator=g)


@exercise("08_add_noise")
def add_noise_function(answer, model) -> Feedback:
    """A hand-written ``add_noise(z0, noise, t)`` must return √ᾱ_t·z0 + √(1 − ᾱ_t)·noise for one timestep ``t``
    (an int), as ``model.train_scheduler.add_noise`` does."""
    scheduler = model.train_scheduler
    abar, alphas = scheduler.alphas_cumprod.double(), scheduler.alphas.double()
    z0, noise = _test_latents(tuple(model.latent_shape))
    for t in (10, 500, 900):
        expected = scheduler.add_noise(z0, noise, torch.full((len(z0),), t)).double()
        got, problem = call_answer(answer, z0.clone(), noise.clone(), t)
        if problem is not None:
            return problem
        got = torch.as_tensor(np.asarray(got.detach().cpu() if isinstance(got, torch.Tensor) else got),
                              dtype=torch.float64)
        if got.shape != expected.shape:
            return Feedback(False, f"z_t has the shape of z0, {tuple(z0.shape)}; got {tuple(got.shape)}")
        if torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
            continue
        z, e = z0.double(), noise.double()
        variants = {
            "you returned the clean latent: the forward process adds √(1 − ᾱ_t)·noise to √ᾱ_t·z0": z,
            "take square roots: √ᾱ_t and √(1 − ᾱ_t) keep the variance of z_t at 1": abar[t] * z + (1 - abar[t]) * e,
            "swapped: the clean latent gets √ᾱ_t (≈ 1 at small t), the noise √(1 − ᾱ_t)":
                (1 - abar[t]).sqrt() * z + abar[t].sqrt() * e,
            "use the cumulative product ᾱ_t = alphas_cumprod[t], not alphas[t] (one step's α)":
                alphas[t].sqrt() * z + (1 - alphas[t]).sqrt() * e,
        }
        for hint, value in variants.items():
            if torch.allclose(got, value, rtol=1e-4, atol=1e-5):
                return Feedback(False, hint)
        return Feedback(False, f"at t = {t} your z_t differs: ᾱ = model.train_scheduler.alphas_cumprod[t], "
                               "z_t = ᾱ.sqrt() * z0 + (1 − ᾱ).sqrt() * noise")
    return Feedback(True, "right: your forward process agrees with the training scheduler's add_noise — at t = 900 "
                          f"only √ᾱ = {float(abar[900].sqrt()):.3f} of the clean latent is left")
