"""Variational autoencoder (VAE) of (defective skull, implant) pairs, and the parts its relatives share.

Taught in notebook 04_vae; :class:`VAEFamily`, :func:`reparameterize`, :func:`kl_divergence` and
:func:`reconstruction_error` are reused by IntroVAE (06) and Soft-IntroVAE (07).

Model: encoder ``q(z|x) = N(μ(x), diag σ²(x))``, decoder ``p(x|z)`` = independent Bernoulli voxels with
probabilities ``D(z) = sigmoid(logits)``, prior ``p(z) = N(0, I)`` over a ``latent_dim`` vector.

Loss per batch (all terms are means over the batch; V = voxels per channel)::

    L = L_rec(x, D(z)) + β · KL(q(z|x) ‖ N(0, I)) + γ_overlap · mean(D₀(z) · D₁(z)),   z = μ + σ·ε, ε ~ N(0, I)

    L_rec = (1/2V) Σ_c Σ_v BCE(x_cv, D_cv(z))  +  w_dice · (1 − softDice(x, D(z)))      (per-voxel mean + Dice)
    KL    = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²)                                             (nats, summed over j)

The BCE is averaged over voxels (not summed as in the textbook ELBO), so β plays the role of 1/V in the textbook
form times a regularisation strength: β ≈ 1e-3 (the default) keeps reconstructions sharp; the notebook recipe's
3e-3 keeps the posteriors closer to the prior, so that more random latent points decode into valid cases, at the
price of samples closer to the training cases and less varied. The Dice term
keeps the small implant channel from being ignored (it covers ~1 % of the voxels), and the overlap term (off by
default; γ_overlap > 0 turns it on) discourages voxels that are both skull and implant — post-processing removes
such overlap anyway.

``output = "skull_and_cap"`` (the notebook recipes of all three models) swaps the decoder for
:class:`~cranialkit.generative.blocks.SkullAndCapDecoder`: the complete skull voxel by voxel and the defect as a
cone (apex, axis, half-angle) that cuts it, as the WGAN-GP of notebook 05 does. With the plain decoder a part of
the random samples decodes into no usable implant — latent points between training cases whose defects lie in
different places, where the defect blurs away; the cone cannot blur.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from cranialkit.generative.base import Generator, register
from cranialkit.generative.blocks import ConvDecoder, GaussianEncoder, SkullAndCapDecoder

# What the decoder paints: the two channels directly, or the complete skull and a cone-shaped defect region combined
# into the pair (blocks.SkullAndCapDecoder; the module docstring).
VAE_OUTPUTS = ("pair", "skull_and_cap")
_DICE = DiceLoss(sigmoid=True, reduction="none", smooth_nr=1.0, smooth_dr=1.0)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``z = μ + σ·ε`` with ``ε ~ N(0, I)``: a differentiable sample of ``N(μ, σ²)``."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ_j (μ² + σ² − 1 − log σ²)`` per sample, shape ``(n,)`` (nats)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def reconstruction_error(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """Per-sample ``mean-voxel BCE + dice_weight · mean-channel soft-Dice loss``, shape ``(n,)``.

    ``target`` may be binary (data) or probabilities (re-encoded reconstructions in the Intro methods).
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    if dice_weight == 0:
        return bce
    dice = _DICE(logits, target).flatten(1).mean(1)
    return bce + dice_weight * dice


class VAEFamily(Generator):
    """Encoder + decoder over a vector latent; the VAE, IntroVAE and Soft-IntroVAE differ only in training."""

    def __init__(self, config: dict):
        super().__init__(config)
        resolution, latent_dim = int(config["resolution"]), int(config["latent_dim"])
        blocks = {"base_channels": int(config["base_channels"]), "max_channels": int(config["max_channels"])}
        output = config.get("output", "pair")
        if output not in VAE_OUTPUTS:
            raise ValueError(f"unknown output {output!r}; choose one of {VAE_OUTPUTS}")
        self.encoder = GaussianEncoder(resolution, latent_dim, **blocks)
        self.decoder = (SkullAndCapDecoder(resolution, latent_dim, **blocks) if output == "skull_and_cap"
                        else ConvDecoder(resolution, latent_dim, **blocks))

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (int(self.config["latent_dim"]),)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]

    def prior_sample(self, n: int) -> torch.Tensor:
        """``n`` latent points from the N(0, I) prior on the model's device (used during training)."""
        return torch.randn(n, *self.latent_shape, device=self.device)

    def warmup_weights(self) -> tuple[float, float]:
        """``(rec_weight, kl_weight)`` of the plain-VAE loss of this model's warm-up (IntroVAE, Soft-IntroVAE): the
        warm-up trains a VAE with KL weight ``kl_weight / rec_weight``, its loss scaled by ``rec_weight``."""
        raise NotImplementedError(f"{self.name} has no plain-VAE warm-up")

    def warmup_terms(self, loss: float, rec: float, kl: float) -> dict[str, float]:
        """The loss terms a warm-up step logs (the keys of the adversarial steps, those not computed set to 0)."""
        raise NotImplementedError(f"{self.name} has no plain-VAE warm-up")

    def warmup_step(self, batch: torch.Tensor, rec_weight: float, kl_weight: float) -> tuple[float, float, float]:
        """One plain-VAE step for the warm-up of IntroVAE and Soft-IntroVAE: ``rec_weight · L_rec + kl_weight · KL``,
        one backward pass, then every optimizer steps. (Their adversarial steps update the encoder, then run the
        decoder again for its own loss; without the adversarial terms that second pass gives the decoder exactly
        the gradient it already has, so the warm-up skips it: ≈ 40 % less time per step.) Returns the loss, the
        reconstruction error and the KL (nats) of the batch."""
        mu, logvar = self.encoder(batch)
        rec = reconstruction_error(self.decoder(reparameterize(mu, logvar)), batch, self.config["dice_weight"]).mean()
        kl = kl_divergence(mu, logvar).mean()
        loss = rec_weight * rec + kl_weight * kl
        for optimizer in self.optim.values():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in self.optim.values():
            optimizer.step()
        return float(loss.detach()), float(rec.detach()), float(kl.detach())


@register("vae")
class VAE(VAEFamily):
    """β-VAE with BCE + Dice reconstruction and an optional skull/implant overlap penalty (see module docstring)."""

    def __init__(self, resolution: int = 32, latent_dim: int = 32, base_channels: int = 8, max_channels: int = 128,
                 beta: float = 1e-3, dice_weight: float = 1.0, overlap_weight: float = 0.0, output: str = "pair"):
        super().__init__(dict(resolution=resolution, latent_dim=latent_dim, base_channels=base_channels,
                              max_channels=max_channels, beta=beta, dice_weight=dice_weight,
                              overlap_weight=overlap_weight, output=output))

    def optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=lr)}

    def loss_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The VAE loss and its terms on a batch ``x`` (tensors, for backward)."""
        mu, logvar = self.encoder(x)
        logits = self.decoder(reparameterize(mu, logvar))
        rec = reconstruction_error(logits, x, self.config["dice_weight"]).mean()
        kl = kl_divergence(mu, logvar).mean()
        probs = torch.sigmoid(logits)
        overlap = (probs[:, 0] * probs[:, 1]).mean()
        loss = rec + self.config["beta"] * kl + self.config["overlap_weight"] * overlap
        return {"loss": loss, "reconstruction": rec, "kl": kl, "overlap": overlap}

    def training_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        terms = self.loss_terms(batch)
        self.optim["model"].zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optim["model"].step()
        return {key: float(value.detach()) for key, value in terms.items()}
