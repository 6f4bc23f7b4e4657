"""cranialkit: deep-learning cranial defect reconstruction with heavy data augmentation.

A small package behind the notebooks in ``notebooks/`` (Wodzinski et al. 2024, arXiv 2406.06372).
Each module's docstring names the notebook that teaches it.
"""

from cranialkit.config import data_dir, device, print_config, seed_everything
from cranialkit.volume import Volume

__version__ = "0.1.0"
__all__ = ["Volume", "data_dir", "device", "print_config", "seed_everything", "__version__"]
