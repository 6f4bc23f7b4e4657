"""Generative augmentation: generators of (defective skull, implant) pairs behind one interface, and samplers.

Taught in notebooks 04_vae, 05_wgan_gp, 06_introvae, 07_soft_introvae, 08_latent_diffusion and 09_uds_vs_random.

- :class:`Generator` (``base``): ``fit`` / ``sample(n, sampler="random" | "uds")`` / ``save``; :func:`load_generator`.
- Registry: :func:`register`, :func:`get_generator`, :func:`available_generators` — every module of this package
  that registers a generator is found automatically ("vae", "wgan_gp", "introvae", "soft_introvae", ...).
- ``sampling``: random and uniform deterministic sampling (UDS) of latent points, and the measures that compare
  them; ``postprocess``: probabilities → valid cases → a dataset on disk; ``data``: training volumes;
  ``recipes``: the notebooks' training settings, and training under the checkpoint convention; ``report``: the
  checks of notebooks 04–07.
"""

from cranialkit.generative.base import (
    Generator,
    as_volumes_tensor,
    available_generators,
    get_generator,
    load_generator,
    register,
)

__all__ = [
    "Generator",
    "as_volumes_tensor",
    "available_generators",
    "get_generator",
    "load_generator",
    "register",
]
