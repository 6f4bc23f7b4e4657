"""IntroVAE (Huang et al. 2018): a VAE whose encoder is also the adversary, through a KL margin.

Taught in notebook 06_introvae. Same encoder/decoder as the VAE (:class:`~cranialkit.generative.vae.VAEFamily`).

The encoder ``E`` scores volumes by the KL of their posterior, ``L_REG(x) = KL(q(z|x) ‖ N(0, I))``: low for real
data, and it is trained to give HIGH KL (at least the margin m) to the decoder's reconstructions ``x_r = G(z)``
and samples ``x_p = G(z_p)``; the decoder ``G`` is trained to make that KL low again. With ``[a]⁺ = max(0, a)``
and means over the batch::

    L_E = L_REG(x) + α · ([m − L_REG(x_r)]⁺ + [m − L_REG(x_p)]⁺) + β · L_AE(x, x_r)    (x_r, x_p detached)
    L_G =            α · (L_REG(x_r) + L_REG(x_p))                 + β · L_AE(x, x_r)

``L_AE`` is :func:`~cranialkit.generative.vae.reconstruction_error` (per-voxel BCE + Dice; ~0.1 per sample), so β
is large (1000 by default: KL is in nats summed over the latent vector) — the same balance as the VAE's KL weight
1e-3; the notebook recipe uses 333, i.e. 3e-3.
The margin m (nats) must exceed the KL of real data (~10–40 nats here) for the adversarial game to bite.
For the first ``warmup_steps`` steps α = 0, i.e. the model trains as a plain VAE (the paper's practice too;
:meth:`~cranialkit.generative.vae.VAEFamily.warmup_step`, with the loss ``KL + β · L_AE``).
"""

from __future__ import annotations

import torch

from cranialkit.generative.base import register
from cranialkit.generative.vae import VAEFamily, kl_divergence, reconstruction_error, reparameterize


@register("introvae")
class IntroVAE(VAEFamily):
    """IntroVAE: encoder E and decoder G updated in turn with the losses of the module docstring."""

    def __init__(self, resolution: int = 32, latent_dim: int = 32, base_channels: int = 8, max_channels: int = 128,
                 alpha: float = 0.25, beta: float = 1000.0, margin: float = 60.0, dice_weight: float = 1.0,
                 warmup_steps: int = 100, output: str = "pair"):
        super().__init__(dict(resolution=resolution, latent_dim=latent_dim, base_channels=base_channels,
                              max_channels=max_channels, alpha=alpha, beta=beta, margin=margin,
                              dice_weight=dice_weight, warmup_steps=warmup_steps, output=output))

    def optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"encoder": torch.optim.Adam(self.encoder.parameters(), lr=lr),
                "decoder": torch.optim.Adam(self.decoder.parameters(), lr=lr)}

    def warmup_weights(self) -> tuple[float, float]:
        return float(self.config["beta"]), 1.0

    def warmup_terms(self, loss: float, rec: float, kl: float) -> dict[str, float]:
        return {"encoder": loss, "decoder": self.config["beta"] * rec, "reconstruction": rec, "kl_real": kl,
                "kl_reconstructed": 0.0, "kl_fake": 0.0}

    def training_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        cfg = self.config
        if step < cfg["warmup_steps"]:  # a plain VAE (α = 0): L_E = KL + β · L_AE, L_G = β · L_AE
            return self.warmup_terms(*self.warmup_step(batch, *self.warmup_weights()))
        alpha, beta, margin = cfg["alpha"], cfg["beta"], cfg["margin"]
        z_p = self.prior_sample(len(batch))

        # Encoder update: real KL down, KL of (detached) reconstructions and samples up to the margin.
        mu, logvar = self.encoder(batch)
        z = reparameterize(mu, logvar)
        rec_logits = self.decoder(z)
        l_ae = reconstruction_error(rec_logits, batch, cfg["dice_weight"]).mean()
        kl_real = kl_divergence(mu, logvar).mean()
        loss_e = kl_real + beta * l_ae
        kl_rec = kl_divergence(*self.encoder(torch.sigmoid(rec_logits).detach())).mean()
        kl_fake = kl_divergence(*self.encoder(self.decode(z_p).detach())).mean()
        loss_e = loss_e + alpha * ((margin - kl_rec).clamp(min=0) + (margin - kl_fake).clamp(min=0))
        self.optim["encoder"].zero_grad(set_to_none=True)
        loss_e.backward()
        self.optim["encoder"].step()

        # Decoder update: reconstruct well and make the encoder see its outputs as real (low KL).
        rec_logits = self.decoder(z.detach())
        l_ae_g = reconstruction_error(rec_logits, batch, cfg["dice_weight"]).mean()
        kl_rec_g = kl_divergence(*self.encoder(torch.sigmoid(rec_logits))).mean()
        kl_fake_g = kl_divergence(*self.encoder(self.decode(z_p))).mean()
        loss_g = beta * l_ae_g + alpha * (kl_rec_g + kl_fake_g)
        self.optim["decoder"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optim["decoder"].step()
        return {"encoder": float(loss_e.detach()), "decoder": float(loss_g.detach()),
                "reconstruction": float(l_ae.detach()), "kl_real": float(kl_real.detach()),
                "kl_reconstructed": float(kl_rec.detach()), "kl_fake": float(kl_fake.detach())}
