"""The reconstruction network: a volumetric residual U-Net (MONAI's ``UNet`` with residual units).

Taught in notebook 10_unet_training.

Input: the defective skull, one channel ``(N, 1, D, H, W)`` in {0, 1} (the fine stage of
``cranialkit.reconstruction.fine`` adds a second channel, the coarse implant probability). Output: one channel of
logits for the implant (default) or for the complete skull; ``sigmoid(logits) > 0.5`` is the predicted mask. Every
level halves the grid (stride 2) and holds ``num_res_units`` residual units, so the grid side must be divisible by
``2 ** (levels - 1)`` (8 for "tiny", 16 for "compact", "small" and "paper").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from monai.networks.nets import UNet

TARGETS = ("implant", "complete")

# Channels per level and residual units per level. Parameter counts: tiny 0.15 M, compact 0.61 M, small 4.8 M,
# paper 19.2 M (the paper's networks have about 12–27 M parameters).
MODEL_SIZES: dict[str, dict] = {
    "tiny": {"channels": (8, 16, 32, 64), "num_res_units": 1},
    # "tiny" with a fifth level (64³ → 4³): 4× the weights for the same CPU time per step (the extra level works
    # on 8³ and 4³ grids); +0.01 test DSC on the notebook-10 phantoms. Needs grid sides divisible by 16.
    "compact": {"channels": (8, 16, 32, 64, 128), "num_res_units": 1},
    "small": {"channels": (16, 32, 64, 128, 256), "num_res_units": 2},
    "paper": {"channels": (32, 64, 128, 256, 512), "num_res_units": 2},
}


@dataclass(frozen=True)
class ModelConfig:
    """What is needed to rebuild a trained network and feed it: size name, target ("implant" | "complete"), grid
    shape (the training grid, or the training patch of the fine stage), number of input channels, and whether its
    inputs are partial volumes (the share of each grid voxel that is bone, ``GridTransform.fraction``) rather than
    nearest-neighbour masks."""

    size: str = "tiny"
    target: str = "implant"
    shape: tuple[int, int, int] = (64, 64, 64)
    in_channels: int = 1
    partial_volume: bool = False

    def __post_init__(self) -> None:
        if self.size not in MODEL_SIZES:
            raise ValueError(f"unknown model size {self.size!r}; choose one of {tuple(MODEL_SIZES)}")
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; choose one of {TARGETS}")
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3:
            raise ValueError(f"shape must have 3 sides (D, H, W), got {self.shape}")
        object.__setattr__(self, "shape", shape)
        if int(self.in_channels) < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        object.__setattr__(self, "in_channels", int(self.in_channels))
        factor = 2 ** (len(MODEL_SIZES[self.size]["channels"]) - 1)
        if any(s % factor for s in shape):
            raise ValueError(f"grid shape {shape} must be divisible by {factor} for model size {self.size!r}")

    def to_dict(self) -> dict:
        """Plain values (lists, str) that a weights-only checkpoint can hold."""
        out = asdict(self)
        out["shape"] = list(self.shape)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(size=data["size"], target=data["target"], shape=tuple(data["shape"]),
                   in_channels=int(data.get("in_channels", 1)), partial_volume=bool(data.get("partial_volume", False)))

    def build(self) -> torch.nn.Module:
        """A new (untrained) network of this configuration."""
        return build_network(self.size, self.in_channels)


def build_network(size: str = "tiny", in_channels: int = 1) -> torch.nn.Module:
    """A residual U-Net of the named size (a key of ``MODEL_SIZES``): ``in_channels`` inputs, 1 output (logits).

    MONAI's ``UNet`` with residual units, except the last layer: MONAI ends with a transposed convolution to one
    channel followed by instance norm, PReLU and a one-channel residual unit at full resolution. We keep only the
    transposed convolution, which writes the logits directly (as MONAI's own top layer does without residual units).
    The dropped unit holds 28 weights but took 70 % of a CPU training step at 64³ (the backward pass of a
    one-channel 3D convolution is slow); without it a step is ≈ 2.5× faster for the same accuracy per step.
    """
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {tuple(MODEL_SIZES)}")
    spec = MODEL_SIZES[size]
    channels = spec["channels"]
    net = UNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=1,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=spec["num_res_units"],
        norm="instance",
    )
    top_up = net.model[2]  # Sequential(Convolution(transposed conv, norm, act), ResidualUnit(1 → 1 channel))
    net.model[2] = top_up[0].conv
    return net


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
