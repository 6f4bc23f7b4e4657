"""Latent diffusion models (LDM): a 3D denoising diffusion model in the latent grid of an autoencoder.

Taught in notebook 08_latent_diffusion. Registered generators: ``"ldm_vqvae"`` (latents of the VQ-VAE,
:mod:`cranialkit.generative.vqvae`) and ``"ldm_vae"`` (latents of the KL autoencoder,
:mod:`cranialkit.generative.autoencoder_kl`).

Two stages (Rombach et al. 2022). Stage 1 trains the autoencoder ``E, D`` on volumes ``x`` ``(2, S, S, S)``; its
latent grids ``E(x)`` ``(C, s, s, s)`` (s = S / 2^levels, e.g. 32³ → 8³) are multiplied by the latent scale factor
``f = 1 / std(E(x))`` over the training set, so that they have unit variance like the diffusion noise. Stage 2
trains a denoiser ``ε_θ`` (MONAI ``DiffusionModelUNet``, spatial_dims=3) with the DDPM objective (Ho et al. 2020):

    z₀ = f·E(x),   t ~ U{0, …, T−1},   ε ~ N(0, I),   z_t = √ᾱ_t · z₀ + √(1 − ᾱ_t) · ε
    L = ‖ ε − ε_θ(z_t, t) ‖²

with the noise schedule of diffusers' ``DDPMScheduler`` (T = 1000, "scaled_linear" β from 0.0015 to 0.0195).
``prediction_type`` changes what the denoiser outputs (diffusers' names): ``"epsilon"`` (the noise ε, above),
``"sample"`` (z₀ itself) or ``"v_prediction"`` (v = √ᾱ_t·ε − √(1−ᾱ_t)·z₀, Salimans & Ho 2022; the default);
the schedulers convert any of them into the next z_t. Why v: sampling starts at t = T − 1 where ᾱ ≈ 0.005, and an
ε-model's estimate of z₀ = (z_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t multiplies the error of ε̂ by ≈ 14 there. At the notebook
defaults (32³, 600 denoiser steps) ε-prediction gave 18–66 % valid LDM-VQVAE samples, v-prediction 100 %.
Sampling starts from a noise tensor ``z_T`` and runs the reverse process with diffusers' ``DDPMScheduler``
(ancestral, stochastic, usually all T steps) or ``DDIMScheduler`` (Song et al. 2021; deterministic with η = 0,
few steps, e.g. 50), then decodes ``D(z₀ / f)`` and lets post-processing turn it into a case.

The initial noise ``z_T`` comes from :func:`cranialkit.generative.sampling.latent_points` applied to the noise
tensor's shape: ``"random"`` = Gaussian, ``"uds"`` = Φ⁻¹ of the first n points of a low-discrepancy sequence (see
that module). With DDIM (η = 0) the whole path is deterministic, so UDS noise maps one-to-one to samples; with
DDPM fresh Gaussian noise enters at every step (seeded by ``seed``), which dilutes what UDS controls.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from monai.networks.nets import DiffusionModelUNet

from cranialkit.config import device as resolve_device
from cranialkit.generative.autoencoder_kl import KLAutoencoder
from cranialkit.generative.base import Generator, as_volumes_tensor, register
from cranialkit.generative.vqvae import VQVAEGenerator

SCHEDULERS = ("ddpm", "ddim")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")  # what the denoiser outputs (diffusers' names)


class LatentDiffusion(Generator):
    """Autoencoder + 3D diffusion U-Net in its latent grid; subclasses pick the autoencoder.

    Config: ``resolution`` S, ``autoencoder`` (the autoencoder's own config; ``levels`` sets the latent side),
    ``denoiser_channels`` (feature maps per U-Net level; the latent side must halve ``len − 1`` times),
    ``num_res_blocks``, ``norm_num_groups``, ``num_train_timesteps`` T, ``beta_schedule``, ``beta_start``,
    ``beta_end``, ``autoencoder_steps`` (stage-1 steps that :meth:`fit` runs first), ``autoencoder_lr``.
    """

    autoencoder_class: type[Generator] = VQVAEGenerator

    def __init__(self, resolution: int = 32, autoencoder: dict | None = None,
                 denoiser_channels: tuple[int, ...] | list[int] = (32, 64, 64), num_res_blocks: int = 1,
                 norm_num_groups: int = 16, num_train_timesteps: int = 1000, beta_schedule: str = "scaled_linear",
                 beta_start: float = 0.0015, beta_end: float = 0.0195, autoencoder_steps: int = 500,
                 autoencoder_lr: float = 1e-3, prediction_type: str = "v_prediction"):
        ae_config = dict(autoencoder or {})
        if ae_config.setdefault("resolution", int(resolution)) != int(resolution):
            raise ValueError(f"autoencoder resolution {ae_config['resolution']} differs from resolution {resolution}")
        first_stage = self.autoencoder_class(**ae_config)
        denoiser_channels = [int(c) for c in denoiser_channels]
        latent_side = first_stage.latent_shape[1]
        if latent_side % 2 ** (len(denoiser_channels) - 1):
            raise ValueError(f"latent side {latent_side} cannot halve {len(denoiser_channels) - 1} times for "
                             f"denoiser_channels={denoiser_channels}: use fewer denoiser levels or fewer "
                             "autoencoder levels")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {prediction_type!r}; choose one of {PREDICTION_TYPES}")
        if any(c % norm_num_groups for c in denoiser_channels):
            raise ValueError(f"denoiser_channels {denoiser_channels} must be multiples of norm_num_groups "
                             f"({norm_num_groups})")
        super().__init__(dict(
            resolution=int(resolution), autoencoder=first_stage.config, denoiser_channels=denoiser_channels,
            num_res_blocks=int(num_res_blocks), norm_num_groups=int(norm_num_groups),
            num_train_timesteps=int(num_train_timesteps), beta_schedule=str(beta_schedule),
            beta_start=float(beta_start), beta_end=float(beta_end), autoencoder_steps=int(autoencoder_steps),
            autoencoder_lr=float(autoencoder_lr), prediction_type=str(prediction_type),
        ))
        self.autoencoder = first_stage
        channels = first_stage.latent_shape[0]
        self.denoiser = DiffusionModelUNet(
            spatial_dims=3, in_channels=channels, out_channels=channels, num_res_blocks=num_res_blocks,
            channels=denoiser_channels, attention_levels=(False,) * len(denoiser_channels),
            norm_num_groups=norm_num_groups,
        )
        # 1 / std of the training latents; 0 until the first denoiser step computes it.
        self.register_buffer("latent_scale", torch.tensor(0.0))
        self.train_scheduler = self.make_scheduler("ddpm")
        final_alpha = float(self.train_scheduler.alphas_cumprod[-1])
        if final_alpha > 0.01:
            raise ValueError(f"the noise schedule keeps ᾱ_T = {final_alpha:.3f} of the signal at t = T − 1, so "
                             "sampling would not start from pure noise: raise beta_end or num_train_timesteps")
        self._fit_volumes: torch.Tensor | None = None

    # ----- schedulers -----------------------------------------------------------------------------------------
    def make_scheduler(self, kind: str = "ddim") -> DDPMScheduler | DDIMScheduler:
        """A fresh diffusers scheduler ``"ddpm"`` or ``"ddim"`` with this model's noise schedule."""
        common = dict(num_train_timesteps=self.config["num_train_timesteps"], beta_start=self.config["beta_start"],
                      beta_end=self.config["beta_end"], beta_schedule=self.config["beta_schedule"],
                      clip_sample=False, prediction_type=self.config["prediction_type"])
        if kind == "ddpm":
            return DDPMScheduler(**common)
        if kind == "ddim":
            # "trailing" spacing starts at t = T − 1 (pure noise) whatever the number of steps (Lin et al. 2024).
            return DDIMScheduler(**common, set_alpha_to_one=False, timestep_spacing="trailing")
        raise ValueError(f"unknown scheduler {kind!r}; choose one of {SCHEDULERS}")

    # ----- the Generator interface ----------------------------------------------------------------------------
    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one diffusion latent (= the autoencoder's latent grid), e.g. ``(4, 8, 8, 8)``."""
        return self.autoencoder.latent_shape

    def _check_trained(self) -> None:
        if float(self.latent_scale) <= 0:
            raise RuntimeError(f"{self.name}: the latent scale is not set; train the model with fit() (or load a "
                               "trained checkpoint) before encoding, decoding or sampling")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Volumes → scaled diffusion latents ``f·E(x)`` ``(n, *latent_shape)``."""
        self._check_trained()
        return self.autoencoder.encode(x) * self.latent_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Clean scaled latents ``z₀`` → probabilities ``D(z₀ / f)`` ``(n, 2, S, S, S)``."""
        self._check_trained()
        return self.autoencoder.decode(z / self.latent_scale)

    def optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"denoiser": torch.optim.Adam(self.denoiser.parameters(), lr=lr)}

    @torch.no_grad()
    def set_latent_scale(self, volumes: np.ndarray | torch.Tensor, batch_size: int = 16) -> float:
        """Set ``f = 1 / std`` of the autoencoder latents of ``volumes`` (all values pooled); returns f."""
        x = as_volumes_tensor(volumes, self.resolution)
        self.autoencoder.eval()
        latents = torch.cat([self.autoencoder.encode(x[i:i + batch_size].to(self.device)).float().cpu()
                             for i in range(0, len(x), batch_size)])
        std = float(latents.std())
        if not np.isfinite(std) or std <= 1e-8:
            raise FloatingPointError(f"{self.name}: autoencoder latents have std {std}; the autoencoder collapsed "
                                     "(train it longer or with a smaller learning rate)")
        self.latent_scale.fill_(1.0 / std)
        return 1.0 / std

    def training_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        with torch.no_grad():
            if float(self.latent_scale) <= 0:
                self.set_latent_scale(self._fit_volumes if self._fit_volumes is not None else batch)
            self.autoencoder.eval()
            z0 = self.autoencoder.encode(batch) * self.latent_scale
        noise = torch.randn_like(z0)
        t = torch.randint(0, self.config["num_train_timesteps"], (len(z0),), device=z0.device)
        zt = self.train_scheduler.add_noise(z0, noise, t)
        loss = torch.nn.functional.mse_loss(self.denoiser(zt, timesteps=t), self._training_target(z0, noise, t))
        self.optim["denoiser"].zero_grad(set_to_none=True)
        loss.backward()
        self.optim["denoiser"].step()
        return {"mse": loss.item()}

    def _training_target(self, z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the denoiser learns to output for ``z_t``: ε ("epsilon"), z₀ ("sample") or
        v = √ᾱ_t·ε − √(1−ᾱ_t)·z₀ ("v_prediction")."""
        kind = self.config["prediction_type"]
        if kind == "epsilon":
            return noise
        if kind == "sample":
            return z0
        return self.train_scheduler.get_velocity(z0, noise, t)

    def fit(self, volumes, steps: int, batch_size: int = 8, lr: float = 1e-3, device: str = "auto",
            checkpoint_path: str | os.PathLike | None = None, checkpoint_every: int = 100, seed: int = 0,
            progress: bool = True, autoencoder_steps: int | None = None) -> dict[str, list[float]]:
        """Stage 1: train the autoencoder for ``autoencoder_steps`` (default: the config's; 0 = it is already
        trained), checkpointed to ``<checkpoint>_autoencoder.pt``; skipped when the LDM checkpoint exists.
        Stage 2: compute the latent scale, train the denoiser for ``steps`` (checkpoint + resume as in
        :meth:`Generator.fit`). Returns the histories, stage-1 keys prefixed with ``autoencoder_``."""
        if not isinstance(volumes, (np.ndarray, torch.Tensor)):
            from cranialkit.generative.data import pairs_from_dataset

            volumes = pairs_from_dataset(volumes, self.resolution)
        data = as_volumes_tensor(volumes, self.resolution)
        path = Path(checkpoint_path) if checkpoint_path is not None else None
        ae_steps = self.config["autoencoder_steps"] if autoencoder_steps is None else int(autoencoder_steps)
        history: dict[str, list[float]] = {}
        if ae_steps > 0 and not (path is not None and path.exists()):
            ae_path = path.with_name(f"{path.stem}_autoencoder{path.suffix}") if path is not None else None
            ae_history = self.autoencoder.fit(data, ae_steps, batch_size=batch_size, lr=self.config["autoencoder_lr"],
                                              device=device, checkpoint_path=ae_path,
                                              checkpoint_every=checkpoint_every, seed=seed, progress=progress)
            history.update({f"autoencoder_{key}": values for key, values in ae_history.items()})
        self._fit_volumes = data
        try:
            history.update(super().fit(data, steps, batch_size=batch_size, lr=lr, device=device,
                                       checkpoint_path=path, checkpoint_every=checkpoint_every, seed=seed,
                                       progress=progress))
        finally:
            self._fit_volumes = None
        if float(self.latent_scale) <= 0:  # steps == 0: no denoiser step ran, the decoder still needs the scale
            self.set_latent_scale(data)
        return history

    # ----- sampling -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def denoise(self, noise: torch.Tensor, scheduler: str = "ddim", num_inference_steps: int = 50, seed: int = 0,
                batch_size: int = 8, device: str = "auto", eta: float = 0.0) -> torch.Tensor:
        """Run the reverse diffusion from ``noise`` ``(n, *latent_shape)`` to clean latents ``z₀`` (CPU tensor).

        ``scheduler``: ``"ddpm"`` (stochastic; its per-step noise comes from a generator seeded with ``seed``,
        consumed batch after batch) or ``"ddim"`` (``eta`` = 0: deterministic). ``num_inference_steps`` ≤ T.
        """
        if not 1 <= num_inference_steps <= self.config["num_train_timesteps"]:
            raise ValueError(f"num_inference_steps must be in [1, {self.config['num_train_timesteps']}], "
                             f"got {num_inference_steps}")
        if tuple(noise.shape[1:]) != self.latent_shape:
            raise ValueError(f"noise must have shape (n, {', '.join(map(str, self.latent_shape))}), "
                             f"got {tuple(noise.shape)}")
        dev = resolve_device(device)
        self.to(dev).eval()
        sched = self.make_scheduler(scheduler)
        sched.set_timesteps(num_inference_steps)
        generator = torch.Generator().manual_seed(int(seed))
        out = []
        for start in range(0, len(noise), batch_size):
            z = noise[start:start + batch_size].to(dev).float()
            for t in sched.timesteps:
                output = self.denoiser(z, timesteps=torch.full((len(z),), int(t), device=dev, dtype=torch.long))
                kwargs = {"eta": eta} if scheduler == "ddim" else {}
                z = sched.step(output, t, z, generator=generator, **kwargs).prev_sample
            out.append(z.cpu())
        return torch.cat(out) if out else torch.empty((0, *self.latent_shape))

    @torch.no_grad()
    def sample(self, n: int, sampler: str = "random", seed: int = 0, batch_size: int = 8, scale: float = 1.0,
               device: str = "auto", scheduler: str = "ddim", num_inference_steps: int = 50,
               eta: float = 0.0) -> np.ndarray:
        """``n`` pairs as probabilities ``(n, 2, S, S, S)`` float32: initial noise from ``sampler`` (``"random"``
        or ``"uds"``, times ``scale``), reverse diffusion with ``scheduler`` in ``num_inference_steps``, decoding."""
        from cranialkit.generative.sampling import latent_points

        self._check_trained()
        noise = latent_points(n, self.latent_shape, sampler, seed=seed, scale=scale)
        z0 = self.denoise(noise, scheduler=scheduler, num_inference_steps=num_inference_steps, seed=seed,
                          batch_size=batch_size, device=device, eta=eta)
        return self.decode_batched(z0, batch_size=batch_size, device=device)

    @torch.no_grad()
    def noised_latents(self, x: torch.Tensor, timesteps: list[int] | tuple[int, ...],
                       seed: int = 0) -> torch.Tensor:
        """The forward process on one volume ``x`` ``(2, S, S, S)``: ``z_t`` for each t in ``timesteps`` with the
        same ε, ``(len(timesteps), *latent_shape)`` on the CPU (decode them to see what the noise destroys)."""
        self.eval()
        z0 = self.encode(torch.as_tensor(x, dtype=torch.float32)[None].to(self.device)).cpu()
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(int(seed)))
        t = torch.as_tensor(list(timesteps), dtype=torch.long)
        if t.numel() == 0 or t.min() < 0 or t.max() >= self.config["num_train_timesteps"]:
            raise ValueError(f"timesteps must lie in [0, {self.config['num_train_timesteps']}), got {list(t)}")
        return self.train_scheduler.add_noise(z0.expand(len(t), *z0.shape[1:]), noise.expand(len(t), *z0.shape[1:]),
                                              t)


@register("ldm_vqvae")
class LDMVQVAE(LatentDiffusion):
    """Latent diffusion in the (quantised) latent grid of a VQ-VAE; decoding snaps latents to the codebook."""

    autoencoder_class = VQVAEGenerator


@register("ldm_vae")
class LDMVAE(LatentDiffusion):
    """Latent diffusion in the latent grid of a KL-regularised autoencoder."""

    autoencoder_class = KLAutoencoder
