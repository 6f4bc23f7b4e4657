"""Run-time configuration: compute device, data directory, seeding, and a versions report.

Every notebook ends its imports with :func:`print_config` so that a reader sees what ran where.
"""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path

import numpy as np
import torch

DATA_DIR_ENV = "CRANIALKIT_DATA_DIR"


def device(name: str = "auto") -> torch.device:
    """The torch device to use: ``"auto"`` picks CUDA, then Apple MPS, then CPU.

    Any other string (``"cpu"``, ``"cuda:1"``) is passed to :class:`torch.device` unchanged.
    """
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def data_dir() -> Path:
    """The one data location: ``$CRANIALKIT_DATA_DIR`` if set, else a per-user cache directory.

    The cache directory follows XDG (``$XDG_CACHE_HOME/cranialkit`` or ``~/.cache/cranialkit``), so that
    datasets and checkpoints survive between runs; it is never a temporary directory.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        path = Path(env).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(cache) / "cranialkit"
    path.mkdir(parents=True, exist_ok=True)
    return path


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that runs repeat."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def supports_autocast(dev: torch.device) -> bool:
    """Whether mixed precision (autocast) is worth using on ``dev``: CUDA only."""
    return dev.type == "cuda"


def print_config() -> None:
    """Print versions, the chosen device and the data directory (the last import line of every notebook)."""
    import monai
    import scipy

    from cranialkit import __version__

    dev = device("auto")
    lines = {
        "cranialkit": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "cpu threads": str(torch.get_num_threads()),
        "data dir": str(data_dir()),
    }
    width = max(len(k) for k in lines)
    for key, value in lines.items():
        print(f"{key:<{width}} : {value}")
