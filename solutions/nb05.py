"""Solutions for notebook 05_wgan_gp."""

from __future__ import annotations

import torch


def solve_05_gradient_penalty(**_) -> object:
    """E[(‖∇C(x̂)‖₂ − 1)²] at x̂ = eps·real + (1 − eps)·fake: one gradient norm per sample, mean over the batch."""

    def my_penalty(critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    return my_penalty


def solve_05_training_updates(steps: int, n_critic: int) -> int:
    """n_critic critic updates and one generator update per step."""
    return steps * (n_critic + 1)
