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
(Soft-IntroVAE, WGAN-GP) exploits it — samples made of alternating voxels. With only the logits convolution after
the interpolation the VAE's samples are blurrier and fewer are valid.

:class:`CapRegion` and :class:`SkullAndCapDecoder` let a generator paint the complete skull voxel by voxel and the
defect as a cone that cuts it — the notebook recipes of all four generators (notebooks 04 and 05).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

# Bump when the layers of these blocks change: checkpoint names hash it (recipes.checkpoint_path), so notebooks
# retrain instead of loading weights that do not fit. Models with a CapRegion say so in their config ("output").
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


class CapRegion(nn.Module):
    """Latent code → a soft cone region ``r`` on the S³ grid: the defect as seen from a point inside the head.

    A small head predicts, per sample, the apex ``a`` (the volume centre moved by at most S/4 voxels per axis), the
    axis ``u`` (unit vector; it starts pointing up, array axis 2 = superior) and the half-angle θ (10°–80°). A
    voxel at ``x`` (voxel units, q = x − a) lies ``d = |q| · (θ − ∠(q, u))`` voxels from the cone's surface,
    measured along the arc at its distance from the apex (positive inside), and ``r = sigmoid(d / softness)``, so
    the region's edge is ``softness`` voxels wide wherever it crosses the skull.
    """

    def __init__(self, resolution: int, latent_dim: int, hidden: int = 64, softness_voxels: float = 1.0,
                 min_angle_deg: float = 10.0, max_angle_deg: float = 80.0):
        super().__init__()
        self.resolution, self.softness = int(resolution), float(softness_voxels)
        self.min_angle, self.max_angle = math.radians(min_angle_deg), math.radians(max_angle_deg)
        self.head = nn.Sequential(nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 7))
        with torch.no_grad():  # start: apex at the centre, axis up, half-angle 35°, varying a little with z
            self.head[-1].weight.mul_(0.1)
            self.head[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, -0.8]))
        centred = torch.arange(self.resolution, dtype=torch.float32) - (self.resolution - 1) / 2.0
        self.register_buffer("grid", torch.stack(torch.meshgrid(centred, centred, centred, indexing="ij")),
                             persistent=False)

    def parameters_from(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Apex ``(n, 3)`` (voxels from the volume centre), unit axis ``(n, 3)`` and half-angle ``(n,)`` (radians)."""
        out = self.head(z)
        apex = 0.25 * self.resolution * torch.tanh(out[:, :3])
        axis = F.normalize(out[:, 3:6], dim=1, eps=1e-6)
        half_angle = self.min_angle + (self.max_angle - self.min_angle) * torch.sigmoid(out[:, 6])
        return apex, axis, half_angle

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Region logits ``(n, 1, S, S, S)`` (``d / softness``; sigmoid gives ``r``)."""
        apex, axis, half_angle = self.parameters_from(z)
        q = self.grid.unsqueeze(0) - apex[:, :, None, None, None]  # (n, 3, S, S, S), voxels
        u = axis[:, :, None, None, None]
        along = (q * u).sum(1)
        across = torch.linalg.cross(q, u.expand_as(q), dim=1).pow(2).sum(1).add(1e-6).sqrt()
        distance = q.pow(2).sum(1).add(1e-6).sqrt() * (half_angle[:, None, None, None] - torch.atan2(across, along))
        return (distance / self.softness).unsqueeze(1)


class SkullAndCapDecoder(nn.Module):
    """``(n, latent_dim)`` → logits of the pair ``(n, 2, S, S, S)`` built from a complete skull and a cone region.

    A :class:`ConvDecoder` paints the complete skull ``c`` (one channel) and a :class:`CapRegion` the defect region
    ``r``; the pair is ``(c·(1 − r), c·r)``, returned as logits so that the VAE family's losses (BCE and Dice on
    logits) apply unchanged. The implant is then always one patch of the shell: a model cannot blur it away between
    training cases (notebooks 04–07).
    """

    def __init__(self, resolution: int, latent_dim: int, base_channels: int = 16, max_channels: int = 128):
        super().__init__()
        self.skull = ConvDecoder(resolution, latent_dim, out_channels=1, base_channels=base_channels,
                                 max_channels=max_channels)
        self.skull.set_output_bias(OUTPUT_PRIOR_LOGITS[:1])
        self.cap = CapRegion(resolution, latent_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        log_c = F.logsigmoid(self.skull(z))
        region_logits = self.cap(z)
        log_pair = torch.cat([log_c + F.logsigmoid(-region_logits), log_c + F.logsigmoid(region_logits)], dim=1)
        log_pair = log_pair.clamp(max=-1e-6)  # p < 1, so that log(1 − p) is finite
        return log_pair - torch.log(-torch.expm1(log_pair))  # logit(p) = log p − log(1 − p)
