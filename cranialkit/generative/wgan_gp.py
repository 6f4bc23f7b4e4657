"""Wasserstein GAN with gradient penalty (WGAN-GP, Gulrajani et al. 2017) for (defective skull, implant) pairs.

Taught in notebook 05_wgan_gp.

Generator ``G``: a :class:`~cranialkit.generative.blocks.ConvDecoder` from ``z ~ N(0, I)`` to probabilities
``G(z) = sigmoid(logits)``. Critic ``C``: a :class:`~cranialkit.generative.blocks.ConvEncoder` with one output
and no normalisation layers (the penalty is per sample, batch statistics would break it).

Losses (means over the batch)::

    L_C = E_z[C(G(z))] − E_x[C(x)] + λ · E_x̂[(‖∇_x̂ C(x̂)‖₂ − 1)²],   x̂ = ε·x + (1 − ε)·G(z),  ε ~ U(0, 1)
    L_G = −E_z[C(G(z))]

``E_x[C(x)] − E_z[C(G(z))]`` estimates the Wasserstein-1 distance between data and samples (logged as
``wasserstein``); the penalty (λ = 10) keeps the critic 1-Lipschitz along lines between real and fake volumes.
Each training step makes ``n_critic`` critic updates (each on the step's real batch and fresh fakes) and then one
generator update; Adam with β = (0.5, 0.9) as in the paper. There is no encoder: :meth:`WGANGP.encode` returns
None, so latent-space plots show the sampled points only.

``output`` chooses what the generator paints. ``"pair"``: the two channels directly (defective skull, implant).
``"skull_and_region"``: the complete skull ``c`` and a defect region ``r`` (both probabilities), combined into the
pair as ``(c·(1 − r), c·r)`` before the critic sees it. The implant then inherits the skull's shell shape, and
the generator only has to place a smooth blob where bone is missing — a far easier target for a GAN than a thin
shell covering < 1 % of the voxels (with ``"pair"`` almost every sample had too small an implant).
``region_smoothing`` k (voxels) makes that blob smooth by construction: the region's logits are averaged over
k³ blocks and interpolated back (trilinear), so ``r`` lives on an (S/k)³ grid. It is off (k = 1) by default:
k = 4 gives larger, more defect-like patches but fewer valid samples.

The voxel region has a flaw that no training length fixes: the critic only sees ``c·r``, so ``r`` gets no gradient
where there is no bone and stays near 50 % over the whole background; the bone voxels next to it then come out as
a one-voxel "implant" rim along the skull's surface (a third or more of the samples, rejected as speckled).
``"skull_and_cap"`` removes the flaw by construction: the region is a
:class:`~cranialkit.generative.blocks.CapRegion`, a soft cone seen from a point inside the head, whose apex,
axis and opening the generator predicts from ``z`` — the implant is the patch of the vault inside the cone (the
phantom defects are cut the same way: a patch along an axis through the vault centre). The generator then learns
the skull's shape voxel by voxel and the defect's place and size as 7 numbers; the defect's outline is a circle on
the vault (the skull's own shape still bends it), not the irregular outlines of the training defects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cranialkit.generative.base import Generator, register
from cranialkit.generative.blocks import CapRegion, ConvDecoder, ConvEncoder

OUTPUTS = ("pair", "skull_and_region", "skull_and_cap")  # what the generator paints (see the module docstring)
SKULL_AND_REGION_PRIOR_LOGITS = (-3.0, 0.0)


def gradient_penalty(critic: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``E[(‖∇C(x̂)‖₂ − 1)²]`` at random points ``x̂`` on the lines between ``real`` and ``fake`` volumes."""
    eps = torch.rand(len(real), *([1] * (real.ndim - 1)), device=real.device)
    mixed = (eps * real + (1.0 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).pow(2).mean()


@register("wgan_gp")
class WGANGP(Generator):
    """WGAN-GP: decoder-shaped generator, encoder-shaped critic, gradient penalty λ, n_critic steps per G step."""

    def __init__(self, resolution: int = 32, latent_dim: int = 32, base_channels: int = 8, max_channels: int = 128,
                 n_critic: int = 5, gp_weight: float = 10.0, output: str = "pair", region_smoothing: int = 1):
        super().__init__(dict(resolution=resolution, latent_dim=latent_dim, base_channels=base_channels,
                              max_channels=max_channels, n_critic=n_critic, gp_weight=gp_weight, output=output,
                              region_smoothing=region_smoothing))
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        if region_smoothing < 1 or resolution % region_smoothing:
            raise ValueError(f"region_smoothing must be >= 1 and divide the resolution {resolution}, "
                             f"got {region_smoothing}")
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; choose one of {OUTPUTS}")
        blocks = {"base_channels": base_channels, "max_channels": max_channels}
        self.generator = ConvDecoder(resolution, latent_dim, out_channels=1 if output == "skull_and_cap" else 2,
                                     **blocks)
        if output == "skull_and_region":  # start at "complete skull ~5 % of the voxels, region everywhere 50 %"
            self.generator.set_output_bias(SKULL_AND_REGION_PRIOR_LOGITS)
        if output == "skull_and_cap":  # the skull channel as above; the region is a cone (CapRegion)
            self.generator.set_output_bias(SKULL_AND_REGION_PRIOR_LOGITS[:1])
            self.cap = CapRegion(resolution, latent_dim)
        self.critic = ConvEncoder(resolution, 1, **blocks)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (int(self.config["latent_dim"]),)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent codes ``(n, latent_dim)`` → probabilities (defective skull, implant) ``(n, 2, S, S, S)``."""
        logits = self.generator(z)
        if self.config["output"] == "pair":
            return torch.sigmoid(logits)
        skull = torch.sigmoid(logits[:, :1])
        region_logits = self.cap(z) if self.config["output"] == "skull_and_cap" else logits[:, 1:]
        k = int(self.config["region_smoothing"])
        if k > 1 and self.config["output"] == "skull_and_region":  # a coarse region: one smooth blob (docstring)
            region_logits = F.interpolate(F.avg_pool3d(region_logits, k), scale_factor=k, mode="trilinear",
                                          align_corners=False)
        region = torch.sigmoid(region_logits)
        return torch.cat([skull * (1.0 - region), skull * region], dim=1)

    def optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        generator = [p for name, p in self.named_parameters() if not name.startswith("critic.")]
        return {
            "generator": torch.optim.Adam(generator, lr=lr, betas=(0.5, 0.9)),
            "critic": torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.5, 0.9)),
        }

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, *self.latent_shape, device=self.device)

    def training_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        n = len(batch)
        for _ in range(int(self.config["n_critic"])):
            with torch.no_grad():
                fake = self.decode(self._noise(n))
            d_real, d_fake = self.critic(batch).mean(), self.critic(fake).mean()
            penalty = gradient_penalty(self.critic, batch, fake)
            loss_c = d_fake - d_real + self.config["gp_weight"] * penalty
            self.optim["critic"].zero_grad(set_to_none=True)
            loss_c.backward()
            self.optim["critic"].step()
        loss_g = -self.critic(self.decode(self._noise(n))).mean()
        self.optim["generator"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optim["generator"].step()
        return {"critic": float(loss_c.detach()), "generator": float(loss_g.detach()),
                "wasserstein": float((d_real - d_fake).detach()), "gradient_penalty": float(penalty.detach())}
