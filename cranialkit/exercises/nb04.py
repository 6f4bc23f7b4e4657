"""Checkers for the exercises of notebook 04_vae."""

from __future__ import annotations

import numpy as np
import torch

from cranialkit.exercises.registry import Feedback, call_answer, exercise
from cranialkit.generative.vae import kl_divergence, reparameterize


def _gaussians(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Test posteriors ``(mu, logvar)`` of shape ``(n, d)``: random ones, and the prior itself (KL = 0)."""
    g = torch.Generator().manual_seed(seed)
    mu, logvar = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    return [(mu, logvar), (torch.zeros(2, 5), torch.zeros(2, 5)), (mu[:3, :5] * 3, logvar[:3, :5] - 2)]


def _as_array(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
    return np.asarray(value, dtype=np.float64)


@exercise("04_kl_divergence")
def kl_function(answer) -> Feedback:
    """A hand-written ``my_kl(mu, logvar)`` must return KL(N(mu, sigma²) ‖ N(0, I)) in nats per sample, shape (n,)."""
    for mu, logvar in _gaussians():
        expected = kl_divergence(mu, logvar).numpy().astype(np.float64)
        got, problem = call_answer(answer, mu.clone(), logvar.clone())
        if problem is not None:
            return problem
        got = _as_array(got)
        if got.shape != expected.shape:
            total = float(got.reshape(-1)[0]) if got.size == 1 else None
            if total is not None and np.isclose(total, expected.sum(), rtol=1e-4):
                return Feedback(False, "you summed over the batch too: sum over the latent values only, one KL per "
                                       "sample (shape (n,))")
            if total is not None and np.isclose(total, expected.mean(), rtol=1e-4):
                return Feedback(False, "you averaged over the batch: return one KL per sample (shape (n,)); the loss "
                                       "takes the mean later")
            return Feedback(False, f"expected one value per sample, shape {expected.shape}; got shape {got.shape} — "
                                   "sum over the latent dimension (dim 1)")
        if np.allclose(got, expected, rtol=1e-4, atol=1e-5):
            continue
        variance = np.exp(logvar.numpy().astype(np.float64))
        mu2, lv = mu.numpy().astype(np.float64) ** 2, logvar.numpy().astype(np.float64)
        if np.allclose(got, 2 * expected, rtol=1e-4, atol=1e-5):
            return Feedback(False, "twice the KL: the formula starts with ½")
        if np.allclose(got, expected / mu.shape[1], rtol=1e-4, atol=1e-5):
            return Feedback(False, "that is the mean over the latent values; KL sums over them (nats per sample)")
        if np.allclose(got, 0.5 * (mu2 + variance**2 - 1 - 2 * lv).sum(1), rtol=1e-4, atol=1e-5):
            return Feedback(False, "you treated logvar as log σ; it is log σ²: σ² = exp(logvar)")
        if np.allclose(got, 0.5 * (mu2 + variance - 1 + lv).sum(1), rtol=1e-4, atol=1e-5):
            return Feedback(False, "sign of the log term: it is − log σ² (KL ≥ 0, zero only for the prior itself)")
        return Feedback(False, "KL = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²) with σ² = exp(logvar), summed over dim 1")
    return Feedback(True, "right: your KL agrees with cranialkit.generative.vae.kl_divergence (0 for the prior itself)")


@exercise("04_reparameterize")
def reparameterize_function(answer) -> Feedback:
    """A hand-written ``my_reparameterize(mu, logvar, eps)`` must return z = mu + exp(½ logvar) · eps."""
    for mu, logvar in _gaussians(1):
        with torch.random.fork_rng(devices=[]):  # the package's function draws its own ε: replay the same draw
            torch.manual_seed(0)
            eps = torch.randn_like(mu)
            torch.manual_seed(0)
            expected = reparameterize(mu, logvar).numpy().astype(np.float64)
        got, problem = call_answer(answer, mu.clone(), logvar.clone(), eps.clone())
        if problem is not None:
            return problem
        got = _as_array(got)
        if got.shape != expected.shape:
            return Feedback(False, f"z has the shape of mu, {tuple(mu.shape)}; got {got.shape}")
        if np.allclose(got, expected, rtol=1e-4, atol=1e-5):
            continue
        mu64, lv, e = (t.numpy().astype(np.float64) for t in (mu, logvar, eps))
        if np.isnan(got).any():
            return Feedback(False, "NaN: logvar can be negative, so no square root of it; σ = exp(½ · logvar)")
        if np.allclose(got, mu64 + np.exp(lv) * e, rtol=1e-4, atol=1e-5):
            return Feedback(False, "you scaled ε by the variance σ² = exp(logvar); scale it by σ = exp(½ · logvar)")
        if np.allclose(got, mu64 + lv * e, rtol=1e-4, atol=1e-5):
            return Feedback(False, "logvar is log σ², not σ: σ = exp(½ · logvar)")
        if np.allclose(got, mu64, rtol=1e-4, atol=1e-5):
            return Feedback(False, "z must depend on ε: without the noise it is not a sample of N(μ, σ²)")
        return Feedback(False, "z = μ + σ · ε with σ = exp(½ · logvar)")
    return Feedback(True, "right: z = μ + σ·ε — the randomness sits in ε, so gradients flow to μ and σ")
