"""Reconstruction: the volumetric residual U-Net, soft Dice loss, trainer, inference and evaluation.

Taught in notebook 10_unet_training.
"""

from cranialkit.reconstruction.losses import soft_dice_loss
from cranialkit.reconstruction.network import MODEL_SIZES, TARGETS, ModelConfig, build_network, count_parameters

__all__ = ["MODEL_SIZES", "TARGETS", "ModelConfig", "build_network", "count_parameters", "soft_dice_loss"]
