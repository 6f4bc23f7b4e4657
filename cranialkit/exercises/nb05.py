"""Checkers for the exercises of notebook 05_wgan_gp."""

from __future__ import annotations

import math

import torch

from cranialkit.exercises.registry import Feedback, call_answer, exercise
from cranialkit.generative.wgan_gp import gradient_penalty


def _critic_and_batches(seed: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny non-linear critic (its gradient depends on where it is taken) and real/fake batches (3, 2, 4, 4, 4)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic = torch.nn.Sequential(torch.nn.Conv3d(2, 3, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(),
                                     torch.nn.Linear(3 * 4**3, 1))
        real = (torch.rand(3, 2, 4, 4, 4) > 0.7).float()
        fake = torch.rand(3, 2, 4, 4, 4)
    return critic, real, fake


def _gradient(critic: torch.nn.Module, points: torch.Tensor) -> torch.Tensor:
    points = points.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(points).sum(), points)
    return grad


def _value(result) -> float:
    if isinstance(result, torch.Tensor):
        if result.numel() != 1:
            raise ValueError(f"the penalty is one number (the mean over the batch), got shape {tuple(result.shape)}")
        return float(result.detach())
    return float(result)


@exercise("05_gradient_penalty")
def penalty_function(answer) -> Feedback:
    """A hand-written ``my_penalty(critic, real, fake, eps)`` must return E[(‖∇C(x̂)‖₂ − 1)²], x̂ = eps·real +
    (1 − eps)·fake, the norm per sample, the mean over the batch (without the weight λ)."""
    for seed in (0, 1):
        critic, real, fake = _critic_and_batches(seed)
        with torch.random.fork_rng(devices=[]):  # gradient_penalty draws eps first: replay the same draw
            torch.manual_seed(seed)
            eps = torch.rand(len(real), 1, 1, 1, 1)
            torch.manual_seed(seed)
            expected = float(gradient_penalty(critic, real, fake).detach())
        got, problem = call_answer(answer, critic, real.clone(), fake.clone(), eps.clone())
        if problem is not None:
            return problem
        got = _value(got)
        if math.isclose(got, expected, rel_tol=1e-4, abs_tol=1e-6):
            continue
        grad = _gradient(critic, eps * real + (1 - eps) * fake)
        norms = grad.flatten(1).norm(dim=1)
        variants = {
            "square the difference: (‖∇C‖ − 1)², not ‖∇C‖ − 1": float((norms - 1).mean()),
            "square the difference, not its absolute value: (‖∇C‖ − 1)²": float((norms - 1).abs().mean()),
            "the target norm is 1: (‖∇C‖ − 1)², not ‖∇C‖²": float((norms**2).mean()),
            "one norm per sample (grad.flatten(1).norm(dim=1)), not one norm over the whole batch":
                float((grad.norm() - 1) ** 2),
            "leave out the weight λ = 10 here; the critic loss multiplies by gp_weight": 10 * expected,
            "take the mean over the batch, not the sum": len(real) * expected,
            "take the gradient at the mixed points x̂ = eps·real + (1 − eps)·fake, not at the real volumes":
                float(((_gradient(critic, real).flatten(1).norm(dim=1) - 1) ** 2).mean()),
            "take the gradient at the mixed points x̂ = eps·real + (1 − eps)·fake, not at the fake volumes":
                float(((_gradient(critic, fake).flatten(1).norm(dim=1) - 1) ** 2).mean()),
        }
        for hint, value in variants.items():
            if math.isclose(got, value, rel_tol=1e-4, abs_tol=1e-6):
                return Feedback(False, hint)
        return Feedback(False, f"got {got:.5f}, expected {expected:.5f}: x̂ = eps·real + (1 − eps)·fake with "
                               "requires_grad, gradient of critic(x̂).sum() with torch.autograd.grad, then "
                               "((grad.flatten(1).norm(dim=1) − 1) ** 2).mean()")
    return Feedback(True, "right: your penalty agrees with cranialkit.generative.wgan_gp.gradient_penalty")


@exercise("05_training_updates")
def training_updates(answer: float, steps: int, n_critic: int) -> Feedback:
    """Optimizer updates (critic + generator) of the training in section 2: steps · (n_critic + 1)."""
    expected = steps * (n_critic + 1)
    answer = float(answer)
    if answer == expected:
        return Feedback(True, f"right: {steps} steps × ({n_critic} critic + 1 generator update) = {expected} — each "
                              "critic update also needs a gradient penalty, so a WGAN step costs several VAE steps")
    if answer == steps * n_critic:
        return Feedback(False, "those are the critic updates only; every step also makes one generator update")
    if answer == steps:
        return Feedback(False, "that counts one update per step; a step makes n_critic critic updates and one "
                               "generator update")
    if answer in (steps // 2 * (n_critic + 1) + expected, (steps // 2 + steps) * (n_critic + 1)):
        return Feedback(False, "the second fit() call resumes at step steps // 2, it does not start over: "
                               "count `steps` steps in all")
    return Feedback(False, "count per step: n_critic critic updates + 1 generator update, for `steps` steps")
