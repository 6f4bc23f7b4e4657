"""Run-time configuration: compute device, data directory, seeding, and a versions report.

Every notebook ends its imports with :func:`print_config` so that a reader sees what ran where.
"""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cranialkit.errors import CranialkitError

if TYPE_CHECKING:  # torch is imported where a device is needed, so that the command line starts quickly
    import torch

DATA_DIR_ENV = "CRANIALKIT_DATA_DIR"


def device(name: str = "auto") -> torch.device:
    """The torch device to use: ``"auto"`` picks CUDA, then Apple MPS, then CPU.

    Any other string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) names the device; one that this machine does
    not have raises :class:`~cranialkit.errors.CranialkitError` (not an assertion deep inside torch).
    """
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    problem = device_problem(name)
    if problem:
        raise CranialkitError(f"device {name!r}: {problem}")
    return torch.device(name)


def device_problem(name: str) -> str | None:
    """Why ``name`` is not a usable device on this machine (with what to use instead), or None when it is."""
    if name in ("auto", "cpu"):
        return None
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        return "not a device name; use auto, cpu, cuda, cuda:N or mps"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "finds no GPU" if torch.backends.cuda.is_built() else "was built without CUDA"
            return f"CUDA is not available (torch {torch.__version__} {why}); use cpu or auto"
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            return f"this machine has {count} CUDA device(s); use cuda:0 … cuda:{count - 1}"
        return None
    if dev.type == "mps":
        available = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        return None if available else "Apple MPS is not available here; use cpu or auto"
    return None if dev.type == "cpu" else "not supported by cranialkit; use auto, cpu, cuda, cuda:N or mps"


def data_dir() -> Path:
    """The one data location: ``$CRANIALKIT_DATA_DIR`` if set, else a per-user cache directory.

    The cache directory follows XDG (``$XDG_CACHE_HOME/cranialkit`` or ``~/.cache/cranialkit``), so that
    datasets and checkpoints survive between runs; it is never a temporary directory. A location that is a file
    or cannot be created raises :class:`~cranialkit.errors.CranialkitError` naming it.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        source = f"{DATA_DIR_ENV}={env}"
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(cache) / "cranialkit"
        source = f"data directory {path}"
    if path.exists() and not path.is_dir():
        raise CranialkitError(f"{source}: is a file, not a folder; point {DATA_DIR_ENV} at a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CranialkitError(f"{source}: cannot create the folder ({exc.strerror}); point {DATA_DIR_ENV} at a "
                              f"folder you can write to") from exc
    return path


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that runs repeat."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cpu_threads(requested: int | None = None) -> tuple[int, str]:
    """How many threads CPU training should use, and why (a short phrase to print).

    ``requested`` wins; else ``OMP_NUM_THREADS`` when set; else the cores this process may use minus the ones other
    processes keep busy now (:func:`busy_cores`), at least 1. Two torch jobs that each take every core slow each
    other down many times over (threads wait for each other), so a busy machine gets fewer threads.
    """
    if requested is not None:
        return max(1, int(requested)), "as requested"
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"])), "from OMP_NUM_THREADS"
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    busy = busy_cores(cpus)
    free = int(min(len(cpus), max(1, round(len(cpus) - busy))))
    return free, f"{len(cpus)} cores, {busy:.1f} busy with other work"


def busy_cores(cpus: list[int], seconds: float = 0.5) -> float:
    """How many of the CPUs ``cpus`` other processes keep busy, measured over ``seconds`` (psutil's per-CPU use;
    this process is idle meanwhile). A load average would lag: it still counts a job that ended a minute ago."""
    import psutil

    use = psutil.cpu_percent(interval=seconds, percpu=True)
    return sum(use[i] for i in cpus if i < len(use)) / 100.0


def supports_autocast(dev: torch.device) -> bool:
    """Whether mixed precision (autocast) is worth using on ``dev``: CUDA only."""
    return dev.type == "cuda"


def print_config() -> None:
    """Print versions, the chosen device and the data directory (the last import line of every notebook)."""
    import monai
    import scipy
    import torch

    from cranialkit import __version__

    dev = device("auto")
    try:
        where = str(data_dir())
    except CranialkitError as exc:
        where = f"not usable: {exc}"
    lines = {
        "cranialkit": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "cpu threads": str(torch.get_num_threads()),
        "data dir": where,
    }
    width = max(len(k) for k in lines)
    for key, value in lines.items():
        print(f"{key:<{width}} : {value}")
