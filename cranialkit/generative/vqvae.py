"""VQ-VAE for (defective skull, implant) pairs: a convolutional autoencoder with a discrete codebook.

Taught in notebook 08_latent_diffusion (stage 1 of the latent diffusion model "ldm_vqvae").

The encoder maps a 2-channel volume ``x`` ``(2, S, S, S)`` to a grid of vectors ``z_e`` ``(D, s, s, s)`` with
``s = S / 2^levels`` (32³ → 8³ with two levels). Vector quantisation replaces every vector by its nearest codebook
entry ``e_k`` (k = 1 … K), the decoder maps the quantised grid ``z_q`` back to logits of ``x``:

    L = BCE(x̂, x) + Dice(x̂, x) + β · ‖z_e − sg[z_q]‖²

The codebook itself is not learned by gradients but as an exponential moving average of the encoder vectors that
chose each code (van den Oord et al. 2017, appendix; MONAI's ``EMAQuantizer``); β is the commitment cost and the
straight-through estimator copies the decoder's gradient from ``z_q`` to ``z_e``. Codes that no vector chooses
are restarted on random encoder vectors every few steps (:meth:`VQVAEGenerator.restart_dead_codes`; without it
most of the randomly initialised codebook stays dead on these small data). Codebook health is measured by
:func:`codebook_usage`: the perplexity ``exp(H(p))`` of the code histogram (K = every code used equally, 1 = a
single code) and the number of dead codes (never chosen).

The network is MONAI's :class:`monai.networks.nets.VQVAE` (``spatial_dims=3``). As a generator on its own the
VQ-VAE needs a prior over its code grid; :class:`VQVAEGenerator` has the simplest one — every grid position draws
its code independently from the codes the training set used there — which shows why a stronger prior (the latent
diffusion model of :mod:`cranialkit.generative.ldm`) is needed: independent codes ignore their neighbours.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.losses import DiceLoss
from monai.networks.nets import VQVAE
from scipy.special import ndtr

from cranialkit.generative.base import Generator, as_volumes_tensor, register


def check_levels(resolution: int, levels: int) -> int:
    """The latent grid side ``resolution / 2^levels`` (voxels); raises if it does not divide evenly."""
    if resolution < 4 or levels < 1:
        raise ValueError(f"need resolution >= 4 and levels >= 1, got resolution={resolution}, levels={levels}")
    if resolution % (2**levels):
        raise ValueError(f"resolution {resolution} is not divisible by 2^levels = {2**levels}: choose a resolution "
                         f"that halves {levels} times (e.g. 32 or 64)")
    return resolution // 2**levels


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(bce, dice)`` of decoder logits against binary volumes ``(n, 2, S, S, S)``.

    Binary cross-entropy is averaged over voxels; the soft Dice loss (MONAI) is computed per channel over the whole
    batch, so the thin implant channel weighs as much as the larger skull channel.
    """
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    dice = DiceLoss(sigmoid=True, batch=True)(logits, target)
    return bce, dice


def codebook_usage(indices: torch.Tensor | np.ndarray, num_embeddings: int) -> dict:
    """Histogram statistics of code indices (any shape): ``perplexity``, ``used``, ``dead``, ``counts`` (K,)."""
    flat = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices).ravel().astype(np.int64)
    if flat.size == 0:
        raise ValueError("codebook_usage needs at least one code index")
    if flat.min() < 0 or flat.max() >= num_embeddings:
        raise ValueError(f"code indices must lie in [0, {num_embeddings}), got [{flat.min()}, {flat.max()}]")
    counts = np.bincount(flat, minlength=num_embeddings)
    p = counts / counts.sum()
    entropy = -np.sum(p[p > 0] * np.log(p[p > 0]))
    used = int((counts > 0).sum())
    return {"perplexity": float(math.exp(entropy)), "used": used, "dead": num_embeddings - used,
            "num_embeddings": num_embeddings, "counts": counts}


@register("vqvae")
class VQVAEGenerator(Generator):
    """VQ-VAE over 2-channel volumes at ``resolution``³ with a ``embedding_dim × s³`` latent grid.

    Parameters (all in ``config``): ``resolution`` S (voxels per side), ``levels`` (number of halvings; latent
    side s = S / 2^levels), ``channels`` (feature maps per level), ``num_res_layers`` (residual blocks per level),
    ``num_embeddings`` K (codebook size), ``embedding_dim`` D (channels of the latent grid), ``commitment_cost`` β,
    ``decay`` (EMA decay of the codebook), ``restart_every`` (steps between dead-code restarts; 0 = never),
    ``dead_code_threshold`` (EMA cluster size below which a code counts as dead).
    """

    def __init__(self, resolution: int = 32, levels: int = 2, channels: tuple[int, ...] | list[int] | None = None,
                 num_res_layers: int = 1, num_embeddings: int = 64, embedding_dim: int = 4,
                 commitment_cost: float = 0.25, decay: float = 0.9, restart_every: int = 10,
                 dead_code_threshold: float = 0.5):
        channels = [int(c) for c in (channels if channels is not None else [16, 32, 64, 64][:levels])]
        if len(channels) != levels:
            raise ValueError(f"channels needs one entry per level ({levels}), got {channels}")
        super().__init__(dict(resolution=int(resolution), levels=int(levels), channels=channels,
                              num_res_layers=int(num_res_layers), num_embeddings=int(num_embeddings),
                              embedding_dim=int(embedding_dim), commitment_cost=float(commitment_cost),
                              decay=float(decay), restart_every=int(restart_every),
                              dead_code_threshold=float(dead_code_threshold)))
        self.latent_side = check_levels(resolution, levels)
        self.net = VQVAE(
            spatial_dims=3, in_channels=2, out_channels=2, channels=channels, num_res_layers=num_res_layers,
            num_res_channels=channels, downsample_parameters=((2, 4, 1, 1),) * levels,
            upsample_parameters=((2, 4, 1, 1, 0),) * levels, num_embeddings=num_embeddings,
            embedding_dim=embedding_dim, commitment_cost=commitment_cost, decay=decay,
        )
        # Prior over codes for sampling the VQ-VAE alone: log-frequency of each code at each grid position.
        self.register_buffer("code_log_prior", torch.zeros(num_embeddings, *(self.latent_side,) * 3))

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config["embedding_dim"],) + (self.latent_side,) * 3

    @property
    def num_embeddings(self) -> int:
        return self.config["num_embeddings"]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Quantised latent grid ``z_q`` ``(n, D, s, s, s)`` (the LDM is trained on it)."""
        return self.net.quantizer.embed(self.code_indices(x))

    def code_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code at every latent position, ``(n, s, s, s)`` int64 (no codebook update)."""
        return self.net.quantizer.quantizer.quantize(self.net.encode(x))[2]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Any latent grid ``(n, D, s, s, s)`` → snapped to the nearest codes → probabilities ``(n, 2, S, S, S)``."""
        indices = self.net.quantizer.quantizer.quantize(z)[2]
        return torch.sigmoid(self.net.decode_samples(indices))

    def optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"vqvae": torch.optim.Adam(self.net.parameters(), lr=lr)}

    def training_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        encodings = self.net.encode(batch)
        if self.config["restart_every"] and step % self.config["restart_every"] == 0:
            self.restart_dead_codes(encodings.detach())
        quantized, quantization_loss = self.net.quantize(encodings)
        logits = self.net.decode(quantized)
        bce, dice = reconstruction_loss(logits, batch)
        loss = bce + dice + quantization_loss
        self.optim["vqvae"].zero_grad(set_to_none=True)
        loss.backward()
        self.optim["vqvae"].step()
        return {"loss": loss.item(), "bce": bce.item(), "dice": dice.item(),
                "commitment": quantization_loss.item(), "perplexity": float(self.net.quantizer.perplexity)}

    @torch.no_grad()
    def restart_dead_codes(self, encodings: torch.Tensor) -> int:
        """Move codes that (almost) no latent vector chooses onto random encoder vectors of this batch.

        A code is dead when its EMA cluster size is below ``dead_code_threshold`` (vectors per batch); restarting
        it where the encoder's vectors actually are revives it (Dhariwal et al. 2020, "Jukebox"). Returns the
        number of restarted codes. Uses the global torch RNG, so resumed training stays exact.
        """
        quantizer = self.net.quantizer.quantizer
        dead = torch.nonzero(quantizer.ema_cluster_size < self.config["dead_code_threshold"]).flatten()
        if len(dead) == 0:
            return 0
        flat = encodings.permute(0, 2, 3, 4, 1).reshape(-1, quantizer.embedding_dim)
        chosen = flat[torch.randint(len(flat), (len(dead),), device=flat.device)]
        quantizer.embedding.weight.data[dead] = chosen
        quantizer.ema_w.data[dead] = chosen
        quantizer.ema_cluster_size.data[dead] = 1.0
        return len(dead)

    def fit(self, volumes, steps: int, **kwargs) -> dict[str, list[float]]:
        """Train (see :meth:`Generator.fit`), then fit the per-position code prior on the training volumes."""
        history = super().fit(volumes, steps, **kwargs)
        if not isinstance(volumes, (np.ndarray, torch.Tensor)):
            from cranialkit.generative.data import pairs_from_dataset

            volumes = pairs_from_dataset(volumes, self.resolution)
        self.fit_code_prior(volumes)
        return history

    @torch.no_grad()
    def all_code_indices(self, volumes: np.ndarray | torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Code indices of every training volume, ``(N, s, s, s)`` int64 on the CPU."""
        x = as_volumes_tensor(volumes, self.resolution)
        self.eval()
        parts = [self.code_indices(x[i:i + batch_size].to(self.device)).cpu() for i in range(0, len(x), batch_size)]
        return torch.cat(parts)

    @torch.no_grad()
    def fit_code_prior(self, volumes: np.ndarray | torch.Tensor, smoothing: float = 0.01) -> None:
        """Set the per-position prior to the code frequencies of ``volumes`` (plus ``smoothing`` per code)."""
        indices = self.all_code_indices(volumes)
        one_hot = torch.nn.functional.one_hot(indices, self.num_embeddings).sum(0).permute(3, 0, 1, 2).float()
        self.code_log_prior.copy_(torch.log(one_hot + smoothing).to(self.code_log_prior.device))

    def codebook_usage(self, volumes: np.ndarray | torch.Tensor) -> dict:
        """:func:`codebook_usage` of the codes that ``volumes`` select."""
        return codebook_usage(self.all_code_indices(volumes), self.num_embeddings)

    @torch.no_grad()
    def sample(self, n: int, sampler: str = "random", seed: int = 0, batch_size: int = 8, scale: float = 1.0,
               device: str = "auto") -> np.ndarray:
        """Draw each grid position's code independently from the per-position prior, then decode.

        The sampler's latent points (one value per grid position) are turned into uniforms ``u = Φ(z)`` and each
        picks its code by inverting that position's cumulative code distribution, so UDS points give evenly spread
        code choices. Weak on purpose: neighbouring codes are not coordinated (see the module docstring).
        """
        from cranialkit.generative.sampling import latent_points

        z = latent_points(n, (self.latent_side,) * 3, sampler, seed=seed, scale=scale)
        u = torch.from_numpy(ndtr(z.double().numpy())).float()
        cdf = torch.softmax(self.code_log_prior.cpu(), dim=0).cumsum(0)  # (K, s, s, s)
        indices = (u[:, None] > cdf[None]).sum(1).clamp_(max=self.num_embeddings - 1)  # (n, s, s, s)
        codes = self.net.quantizer.embed(indices.to(self.device)).cpu()
        return self.decode_batched(codes, batch_size=batch_size, device=device)
