"""KL-regularised convolutional autoencoder with a spatial latent grid: stage 1 of the latent diffusion model
"ldm_vae".

Taught in notebook 08_latent_diffusion.

Same encoder and decoder as the VQ-VAE of :mod:`cranialkit.generative.vqvae` (MONAI's VQ-VAE ``Encoder`` and
``Decoder``), so that the two latent diffusion models differ only in the bottleneck: here the encoder predicts a
mean ``μ`` and a log-variance ``log σ²`` for every latent value of a ``C × s × s × s`` grid (s = S / 2^levels), the
decoder reads ``z = μ + σ·ε`` (ε ~ N(0, I)) during training and ``z = μ`` when encoding for the diffusion model:

    L = BCE(x̂, x) + Dice(x̂, x) + w_KL · mean( μ² + σ² − 1 − log σ² ) / 2

With a small ``w_KL`` (default 1e-3) the latent stays close to a plain autoencoder's — sharp reconstructions, not a
sampleable N(0, I) prior (as in Rombach et al. 2022's "KL-reg" first stage); the diffusion model supplies the prior
and rescales the latents to unit variance (latent scale factor). Why a separate module and not the flat-latent VAE
of notebook 04: a diffusion U-Net needs a spatial latent grid.

Training it: learning rate 1e-3 (at 3e-3, which suits the VQ-VAE, it often stalls at a blurry optimum with
reconstruction Dice 0.58 / 0.31 for skull / implant, and the LDM on top then draws one and the same sample) and
8 latent channels (4 reconstruct as well but leave the diffusion model less room: fewer of its samples are
valid).
"""

from __future__ import annotations

import torch
from monai.networks.nets.vqvae import Decoder, Encoder

from cranialkit.generative.base import Generator
from cranialkit.generative.vqvae import check_levels, reconstruction_loss


class KLAutoencoder(Generator):
    """KL autoencoder over 2-channel volumes at ``resolution``³ with a ``latent_channels × s³`` latent grid.

    Not registered as a generator of its own (its latent is not meant to be sampled from N(0, I)); it is the
    first stage of ``"ldm_vae"``. Config: ``resolution`` S, ``levels`` (halvings), ``channels`` (feature maps per
    level), ``num_res_layers``, ``latent_channels`` C, ``kl_weight`` w_KL.
    """

    name = "autoencoder_kl"

    def __init__(self, resolution: int = 32, levels: int = 2, channels: tuple[int, ...] | list[int] | None = None,
                 num_res_layers: int = 1, latent_channels: int = 8, kl_weight: float = 1e-3):
        channels = [int(c) for c in (channels if channels is not None else [16, 32, 64, 64][:levels])]
        if len(channels) != levels:
            raise ValueError(f"channels needs one entry per level ({levels}), got {channels}")
        if kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        super().__init__(dict(resolution=int(resolution), levels=int(levels), channels=channels,
                              num_res_layers=int(num_res_layers), latent_channels=int(latent_channels),
                              kl_weight=float(kl_weight)))
        self.latent_side = check_levels(resolution, levels)
        self.encoder = Encoder(
            spatial_dims=3, in_channels=2, out_channels=2 * latent_channels, channels=channels,
            num_res_layers=num_res_layers, num_res_channels=channels,
            downsample_parameters=((2, 4, 1, 1),) * levels, dropout=0.0, act="RELU",
        )
        self.decoder = Decoder(
            spatial_dims=3, in_channels=latent_channels, out_channels=2, channels=channels,
            num_res_layers=num_res_layers, num_res_channels=channels,
            upsample_parameters=((2, 4, 1, 1, 0),) * levels, dropout=0.0, act="RELU", output_act=None,
        )

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config["latent_channels"],) + (self.latent_side,) * 3

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(μ, log σ²)`` of the latent grid for volumes ``x``; log σ² is clamped to [−30, 20] for stability."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent means ``μ`` ``(n, C, s, s, s)``."""
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent grid ``(n, C, s, s, s)`` → probabilities ``(n, 2, S, S, S)``."""
        return torch.sigmoid(self.decoder(z))

    def optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"autoencoder": torch.optim.Adam(self.parameters(), lr=lr)}

    def training_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        mu, logvar = self.posterior(batch)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        bce, dice = reconstruction_loss(self.decoder(z), batch)
        kl = 0.5 * torch.mean(mu.pow(2) + logvar.exp() - 1.0 - logvar)
        loss = bce + dice + self.config["kl_weight"] * kl
        self.optim["autoencoder"].zero_grad(set_to_none=True)
        loss.backward()
        self.optim["autoencoder"].step()
        return {"loss": loss.item(), "bce": bce.item(), "dice": dice.item(), "kl": kl.item()}
