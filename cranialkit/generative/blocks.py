"""Shared 3D building blocks: one convolutional encoder and one decoder for all generators.

Taught in notebook 04_vae. The VAE, IntroVAE and Soft-IntroVAE use the same :class:`ConvEncoder` (→ mean and
log-variance) and :class:`ConvDecoder`; the WGAN-GP generator *is* a :class:`ConvDecoder` and its critic a
:class:`ConvEncoder` with one output and no normalisation — so the four methods differ only in their losses.

Both halve / double the grid ``levels = log2(S / 4)`` times between S³ voxels and a 4³ bottleneck, with
``base_channels · 2^level`` feature maps (capped at ``max_channels``); each level is a strided MONAI
``Convolution`` followed by a MONAI ``ResidualUnit``. No normalisation layers by default: the networks are shallow,
a WGAN-GP critic must not use batch statistics, and instance norm is slow on CPU (≈ 2× the step time at 32³).
The decoder's last level up-samples by trilinear interpolation and then convolves at full resolution (a
"resize-convolution", Odena et al. 2016): one 3³ convolution with activation, one that writes the logits. A stride-2
transposed convolution there leaves a checkerboard that no later layer smooths out, and adversarial training
(Soft-IntroVAE, WGAN-GP) learnt to exploit it — samples made of alternating voxels that passed the first validity
criteria. With only the logits convolution after the interpolation the VAE's samples were blurrier (69 % valid
against 84 % with the extra convolution, one seed each; docs/BENCHMARKS.md, session 5).
"""

from __future__ import annotations

import math

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

# Bump when the layers of these blocks change: checkpoint names hash it (recipes.checkpoint_path), so notebooks
# retrain instead of loading weights that no longer fit. 2: resize-convolution output (session 5).
NETWORK_VERSION = 2
BOTTLENECK = 4  # voxels per side at the bottleneck
# Initial output log-odds per channel: ~5 % of voxels are skull and ~0.7 % implant in the training volumes, so
# starting from these biases skips the first phase of training in which the decoder only learns "mostly empty".
OUTPUT_PRIOR_LOGITS = (-3.0, -5.0)


def num_levels(resolution: int) -> int:
    """Number of ×2 down/up-sampling steps between ``resolution``³ and the 4³ bottleneck (S must be 4·2^k)."""
    levels = math.log2(resolution / BOTTLENECK) if resolution > 0 else -1
    if levels < 1 or not float(levels).is_integer():
        raise ValueError(f"resolution must be 8, 16, 32, 64, 128, ... (4·2^k voxels), got {resolution}")
    return int(levels)


def level_channels(resolution: int, base_channels: int, max_channels: int) -> list[int]:
    """Feature maps at each level, from the full-resolution level down to the bottleneck."""
    return [min(base_channels * 2**i, max_channels) for i in range(num_levels(resolution))]


class ConvEncoder(nn.Module):
    """``(n, in_channels, S, S, S)`` → ``(n, out_features)``: strided conv + residual unit per level, then linear."""

    def __init__(self, resolution: int, out_features: int, in_channels: int = 2, base_channels: int = 16,
                 max_channels: int = 128, norm: str | None = None, act: str = "LEAKYRELU"):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out in level_channels(resolution, base_channels, max_channels):
            layers.append(Convolution(3, c_in, c_out, strides=2, kernel_size=3, act=act, norm=norm))
            layers.append(ResidualUnit(3, c_out, c_out, subunits=1, act=act, norm=norm))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * BOTTLENECK**3, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class ConvDecoder(nn.Module):
    """``(n, latent_dim)`` → logits ``(n, out_channels, S, S, S)``: linear to 4³, then transposed conv per level."""

    def __init__(self, resolution: int, latent_dim: int, out_channels: int = 2, base_channels: int = 16,
                 max_channels: int = 128, norm: str | None = None, act: str = "LEAKYRELU"):
        super().__init__()
        channels = level_channels(resolution, base_channels, max_channels)[::-1]
        self.bottleneck_channels = channels[0]
        self.head = nn.Sequential(nn.Linear(latent_dim, channels[0] * BOTTLENECK**3), nn.LeakyReLU(0.2))
        layers: list[nn.Module] = []
        for level, c_in in enumerate(channels):
            last = level == len(channels) - 1
            layers.append(ResidualUnit(3, c_in, c_in, subunits=1, act=act, norm=norm))
            if last:  # resize-convolution to the logits: no checkerboard (module docstring)
                layers.append(nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False))
                layers.append(Convolution(3, c_in, c_in, kernel_size=3, act=act, norm=norm))
                layers.append(nn.Conv3d(c_in, out_channels, kernel_size=3, padding=1))
            else:
                layers.append(Convolution(3, c_in, channels[level + 1], strides=2, kernel_size=3, act=act, norm=norm,
                                          is_transposed=True))
        self.features = nn.Sequential(*layers)
        if out_channels == len(OUTPUT_PRIOR_LOGITS):
            self.set_output_bias(OUTPUT_PRIOR_LOGITS)

    @property
    def output_layer(self) -> nn.Conv3d:
        """The convolution that writes the logits (its bias sets the initial log-odds of each channel)."""
        return self.features[-1]

    def set_output_bias(self, logits: tuple[float, ...]) -> None:
        """Start every output channel at these log-odds (e.g. "≈ 5 % of the voxels are skull")."""
        with torch.no_grad():
            self.output_layer.bias.copy_(torch.tensor(logits, dtype=self.output_layer.bias.dtype))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.head(z).view(len(z), self.bottleneck_channels, BOTTLENECK, BOTTLENECK, BOTTLENECK)
        return self.features(h)


class GaussianEncoder(nn.Module):
    """Encoder of the VAE family: volumes → ``(mu, logvar)`` of a diagonal Gaussian over a ``latent_dim`` vector."""

    def __init__(self, resolution: int, latent_dim: int, **kwargs):
        super().__init__()
        self.net = ConvEncoder(resolution, 2 * latent_dim, **kwargs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)
