"""Multi-level instance-optimization registration of skull masks (affine, then a dense displacement field).

Taught in notebook 03_registration_augmentation. Modules: ``transforms`` (affine, DDF, warping, pyramid),
``losses`` (similarity, regularizers), ``optimize`` (the optimization loop), ``jacobian`` (folding, smoothness).
"""

from cranialkit.registration.jacobian import folding_percent, jacobian_determinant, std_log_jacobian
from cranialkit.registration.optimize import (
    DEFAULT_ALPHA,
    RegistrationConfig,
    RegistrationResult,
    dice_per_pair,
    register,
    summarize,
)
from cranialkit.registration.transforms import affine_to_ddf, warp, warp_mask

__all__ = [
    "DEFAULT_ALPHA",
    "RegistrationConfig",
    "RegistrationResult",
    "affine_to_ddf",
    "dice_per_pair",
    "folding_percent",
    "jacobian_determinant",
    "register",
    "std_log_jacobian",
    "summarize",
    "warp",
    "warp_mask",
]
