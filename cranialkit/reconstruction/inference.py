"""Inference: from a defective skull at any geometry to an implant on the same grid.

Taught in notebooks 10_unet_training (one stage) and 11_two_stage_reconstruction (coarse → fine).

The coarse stage: crop/pad/resample the defective skull to the network grid (``cranialkit.preprocessing.to_grid``),
run the network (by default on the case and on its left–right mirror, averaging the two sigmoids: test-time
augmentation), threshold the sigmoid at 0.5, keep what is not already skull (implant = prediction AND NOT defective),
clean it (``preprocessing.postprocess_implant``: closing, largest component). Alone, it brings the probability of
the kept implant (and one grid voxel around it) back to the original grid by trilinear interpolation and thresholds
it there together with the grid's bone share (``preprocessing.implant_beside_bone``, which keeps the rim free of
gaps), so the implant's surfaces run between grid voxels instead of following their staircase (nearest-neighbour
upsampling of the grid's mask scores about 0.02 DSC lower on real SkullFix). With a fine stage
(:class:`~cranialkit.reconstruction.fine.FineStage`), the coarse implant and its probability place a crop in the
original volume and the fine network draws the implant there at about 1 mm.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from cranialkit.config import device as pick_device
from cranialkit.config import supports_autocast
from cranialkit.jobs import load_weights
from cranialkit.preprocessing import IMPLANT_SHARE_FLOOR, GridTransform, bounding_box, implant_beside_bone
from cranialkit.reconstruction.network import ModelConfig
from cranialkit.volume import Volume

if TYPE_CHECKING:
    from cranialkit.reconstruction.fine import FineStage


def autocast_context(dev: torch.device, amp: bool):
    """bf16 (or fp16 where bf16 is missing) autocast on devices that support it; a no-op elsewhere."""
    if not (amp and supports_autocast(dev)):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=dev.type, dtype=dtype)


@torch.no_grad()
def predict_probabilities(
    model: torch.nn.Module,
    defective: np.ndarray,
    device: torch.device | str = "cpu",
    batch_size: int = 2,
    amp: bool = True,
    flip_axes: tuple[int, ...] = (),
) -> np.ndarray:
    """The network's sigmoid ``(N, D, H, W)`` float32 for defective skulls ``(N, D, H, W)`` on the network grid
    (bool masks, or partial volumes as uint8 shares or floats), averaged with its outputs for the input mirrored
    along each of ``flip_axes`` (array axes of one volume, e.g. ``(0,)``; each mirrored prediction is mirrored
    back)."""
    from cranialkit.preprocessing import as_fraction

    if any(a not in (0, 1, 2) for a in flip_axes):
        raise ValueError(f"predict_implants: flip_axes must be volume axes 0, 1 or 2, got {flip_axes}")
    defective = as_fraction(defective)
    if defective.ndim != 4:
        raise ValueError(f"predict_implants: defective must be (N, D, H, W), got shape {defective.shape}")
    dev = torch.device(device)
    was_training = model.training
    model.eval()
    out = np.zeros(defective.shape, np.float32)
    for start in range(0, len(defective), batch_size):
        chunk = torch.from_numpy(defective[start : start + batch_size]).to(dev)[:, None]
        with autocast_context(dev, amp):
            prob = torch.sigmoid(model(chunk).float())
            for axis in flip_axes:  # (N, 1, D, H, W): volume axis a is tensor dim a + 2
                mirrored = torch.flip(chunk, (axis + 2,))
                prob = prob + torch.flip(torch.sigmoid(model(mirrored).float()), (axis + 2,))
        out[start : start + batch_size] = (prob / (1 + len(flip_axes)))[:, 0].float().cpu().numpy()
    model.train(was_training)
    return out


def predict_implants(
    model: torch.nn.Module,
    defective: np.ndarray,
    target: str = "implant",
    device: torch.device | str = "cpu",
    batch_size: int = 2,
    amp: bool = True,
    threshold: float = 0.5,
    flip_axes: tuple[int, ...] = (),
) -> np.ndarray:
    """Implants ``(N, D, H, W)`` bool predicted for defective skulls ``(N, D, H, W)`` on the network grid.

    Whatever the target (implant or complete skull), the result is ``(p > threshold) AND NOT defective`` (the
    defective skull's voxels at least half bone, for partial volumes) where
    ``p`` is the sigmoid of the network's output — averaged with the outputs for the input mirrored along each of
    ``flip_axes`` (array axes of one volume, e.g. ``(0,)``; each mirrored prediction is mirrored back), a cheap
    test-time augmentation that smooths the network's one-voxel hesitations. No post-processing.
    """
    from cranialkit.preprocessing import as_mask

    prob = predict_probabilities(model, defective, device, batch_size, amp, flip_axes)
    return (prob > threshold) & ~as_mask(defective)


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu", with_state: bool = False):
    """The network stored in a trainer checkpoint (``best.pt`` / ``last.pt``) and its :class:`ModelConfig`
    (and, ``with_state``, the whole checkpoint dict as a third value)."""
    from cranialkit.checkpoints import read_checkpoint

    path = Path(path)
    state = read_checkpoint(path, "reconstruction")
    config = ModelConfig.from_dict(state["model_config"])
    model = config.build()
    load_weights(model, state["model"], path)
    model = model.to(device).eval()
    return (model, config, state) if with_state else (model, config)


@dataclass
class CoarseOutput:
    """What the coarse stage makes of one defective skull, on its grid: the transform back to the original grid,
    the defective skull (bool), the implant probability (float32), the post-processed implant (bool) and the bone
    share."""

    transform: GridTransform
    defective: np.ndarray
    probability: np.ndarray
    implant: np.ndarray
    bone: np.ndarray  # the share of each grid voxel that is bone (float32; 0 or 1 on a grid of binary masks)


class Reconstructor:
    """Trained network(s) ready to reconstruct cases at their original geometry.

    ``reconstruct(defective)`` takes a defective skull :class:`Volume` (any shape, spacing, direction) and returns
    the implant as a bool :class:`Volume` on the same grid. ``closing_radius`` (grid voxels) and ``threshold`` (on
    the sigmoid) tune the coarse post-processing; ``postprocess=False`` keeps the raw thresholded prediction.
    ``flip_axes`` (default ``(0,)``, the left–right axis of the phantoms and of axis-aligned CT, which the training
    augmentation also flips) averages the prediction with the mirrored case's, in both stages; ``()`` turns it off.
    ``fine``: a :class:`~cranialkit.reconstruction.fine.FineStage` that redraws the implant at fine resolution in a
    crop placed by this (coarse) network; without it the coarse implant is the result.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: ModelConfig,
        device: torch.device | str = "auto",
        amp: bool = True,
        postprocess: bool = True,
        closing_radius: int = 2,
        threshold: float = 0.5,
        flip_axes: tuple[int, ...] = (0,),
        fine: FineStage | None = None,
    ):
        self.device = pick_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.config = config
        self.amp = amp
        self.postprocess = postprocess
        self.closing_radius = int(closing_radius)
        self.threshold = float(threshold)
        self.flip_axes = tuple(int(a) for a in flip_axes)
        self.fine = fine
        if fine is not None:
            from cranialkit.reconstruction.fine import check_stages_fit

            check_stages_fit(config, fine.model_config, fine.config)
            fine.model.to(self.device)
            fine.device, fine.amp, fine.flip_axes = self.device, amp, self.flip_axes

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "auto",
                        fine_checkpoint: str | os.PathLike | None = None, **kwargs) -> Reconstructor:
        """A reconstructor from a coarse-stage checkpoint and, optionally, a fine-stage one (the pair must fit)."""
        from cranialkit.reconstruction.fine import FineStage

        dev = pick_device(device)
        model, config, state = load_checkpoint(path, dev, with_state=True)
        if "fine_config" in state:
            raise ValueError(f"{path}: a fine-stage checkpoint; give the coarse stage's checkpoint first (and this "
                             "one as the fine stage)")
        fine = FineStage.from_checkpoint(fine_checkpoint, dev) if fine_checkpoint is not None else None
        try:
            return cls(model, config, dev, fine=fine, **kwargs)
        except ValueError as exc:
            raise ValueError(f"{path} and {fine_checkpoint}: the two stages do not fit together: {exc}") from exc

    @property
    def stages(self) -> str:
        """ "coarse" or "coarse + fine". """
        return "coarse" if self.fine is None else "coarse + fine"

    def coarse_stage(self, defective: Volume) -> CoarseOutput:
        """The coarse network's implant probability and post-processed implant on its grid."""
        from cranialkit.io import as_mask
        from cranialkit.preprocessing import make_grid_transform, postprocess_implant

        defective = as_mask(defective, "defective skull")
        transform = make_grid_transform(defective, self.config.shape)
        if self.config.partial_volume:
            bone = transform.fraction(defective).array
            grid = bone >= 0.5
        else:
            bone = grid = transform.apply(defective).array.astype(bool)
        prob = predict_probabilities(self.model, bone[None], self.device, 1, self.amp, self.flip_axes)[0]
        if self.config.target == "complete":  # the implant is what the complete skull adds to the bone
            prob = np.clip(prob - bone, 0.0, 1.0)
        # An implant takes what the bone leaves: all of a voxel without bone, at most the rest of a partial one.
        prob = np.minimum(prob, 1.0 - bone) if self.config.partial_volume else prob * ~grid
        implant = prob > self.threshold
        if self.postprocess and implant.any():
            implant = postprocess_implant(implant, grid, closing_radius=self.closing_radius)
        return CoarseOutput(transform, grid, prob, implant, np.asarray(bone, np.float32))

    def reconstruct(self, defective: Volume) -> Volume:
        """The implant for a defective skull at its original geometry (bool Volume on the same grid)."""
        from cranialkit.io import as_mask

        defective = as_mask(defective, "defective skull")
        coarse = self.coarse_stage(defective)
        if self.fine is not None:
            return self.fine.reconstruct(defective, coarse.probability, coarse.transform, coarse.implant)
        kept = coarse.transform.to_original((coarse.probability * dilate_grid(coarse.implant)).astype(np.float32))
        restored = np.zeros(defective.shape, bool)
        near = kept.array > IMPLANT_SHARE_FLOOR
        if near.any():
            lo, hi = bounding_box(near)
            box = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi))
            bone = coarse.transform._interpolate_box(coarse.bone, box, order=1)
            restored[box] = implant_beside_bone(kept.array[box], bone, self.threshold) & ~defective.array[box]
        return defective.with_array(restored)


def dilate_grid(mask: np.ndarray) -> np.ndarray:
    """A bool grid mask grown by one voxel (3×3×3 neighbourhood), as float32: where a kept implant's probability
    is allowed to spread when interpolated."""
    grown = torch.nn.functional.max_pool3d(torch.from_numpy(np.asarray(mask, np.float32))[None, None], 3, 1, 1)
    return grown[0, 0].numpy()
