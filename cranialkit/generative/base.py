"""The common interface of every generator, its training loop (checkpoints, resume) and the registry.

Taught in notebook 04_vae (and used by 05–09). A generator learns 2-channel volumes ``x`` float32
``(N, 2, S, S, S)`` in {0, 1}: channel 0 = defective skull, channel 1 = implant, at the generator resolution
``S`` voxels per side. Every concrete generator (VAE, WGAN-GP, IntroVAE, Soft-IntroVAE, VQ-VAE, LDMs) subclasses
:class:`Generator` and implements only what differs between methods:

- ``__init__(**config)`` with keyword arguments only; it calls ``super().__init__(config)`` so that
  ``type(model)(**model.config)`` rebuilds the same architecture (that is how :func:`load_generator` works);
- ``latent_shape`` — shape of ONE latent sample (no batch dim), e.g. ``(32,)`` or ``(4, 8, 8, 8)``;
- ``decode(z)`` → probabilities in [0, 1], ``(n, 2, S, S, S)``; ``encode(x)`` → latent means or ``None``;
- ``optimizers(lr)`` → ``dict`` of named ``torch.optim.Optimizer`` (the base class stores it in ``self.optim``,
  saves and restores its state);
- ``training_step(batch, step)`` → ``dict[str, float]`` of loss terms; it does its own ``zero_grad``,
  ``backward`` and ``self.optim[...].step()`` (adversarial methods need several per step).

The base class owns :meth:`Generator.fit` (batches, progress bar, atomic checkpoints holding model + optimizer
states + step + history + RNG states, and exact resume), :meth:`Generator.sample` (latent points from
:mod:`cranialkit.generative.sampling`, decoded in batches) and :meth:`Generator.save`.
"""

from __future__ import annotations

import abc
import importlib
import math
import os
import pkgutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cranialkit.config import device as resolve_device
from cranialkit.errors import CheckpointError, OutputMismatchError
from cranialkit.jobs import atomic_torch_save, describe_differences, load_weights

_REGISTRY: dict[str, type[Generator]] = {}
# Modules of this package that hold no generator (skipped when looking for registered ones).
RETRAIN_ADVICE = "it was written by an older cranialkit: delete it and train again"
_NON_GENERATOR_MODULES = {"base", "blocks", "data", "sampling", "postprocess", "recipes"}


def register(name: str) -> Callable[[type[Generator]], type[Generator]]:
    """Class decorator: make a :class:`Generator` subclass available as ``name`` (sets ``cls.name``)."""

    def decorator(cls: type[Generator]) -> type[Generator]:
        if not (isinstance(cls, type) and issubclass(cls, Generator)):
            raise TypeError(f"register({name!r}) expects a Generator subclass, got {cls!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"generator name {name!r} is already registered by {existing.__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def _import_generator_modules() -> None:
    """Import every module of ``cranialkit.generative`` so that their ``@register`` decorators run."""
    package = importlib.import_module("cranialkit.generative")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in _NON_GENERATOR_MODULES and not info.name.startswith("_"):
            importlib.import_module(f"cranialkit.generative.{info.name}")


def available_generators() -> list[str]:
    """Names of all registered generators, sorted."""
    _import_generator_modules()
    return sorted(_REGISTRY)


def get_generator(name: str) -> type[Generator]:
    """The generator class registered as ``name`` (``"ldm-vqvae"`` and ``"ldm_vqvae"`` are the same)."""
    key = name.replace("-", "_")
    if key not in _REGISTRY:
        _import_generator_modules()
    if key not in _REGISTRY:
        raise KeyError(f"unknown generator {name!r}; available: {', '.join(sorted(_REGISTRY)) or 'none'}")
    return _REGISTRY[key]


def as_volumes_tensor(volumes: np.ndarray | torch.Tensor, resolution: int | None = None) -> torch.Tensor:
    """Check and convert training volumes to a float32 CPU tensor ``(N, 2, S, S, S)`` with values in [0, 1]."""
    x = torch.as_tensor(np.asarray(volumes) if not isinstance(volumes, torch.Tensor) else volumes)
    if x.ndim != 5 or x.shape[1] != 2 or not (x.shape[2] == x.shape[3] == x.shape[4]):
        raise ValueError(
            f"volumes must have shape (N, 2, S, S, S) (channel 0 = defective skull, 1 = implant), got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError("volumes is empty (N = 0): nothing to train on")
    if resolution is not None and x.shape[2] != resolution:
        raise ValueError(f"volumes have resolution {x.shape[2]} but the generator was built for {resolution}")
    x = x.float().cpu()
    if not torch.isfinite(x).all():
        raise ValueError("volumes contain NaN or infinite values")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"volumes must lie in [0, 1], got range [{x.min().item():g}, {x.max().item():g}]")
    return x


class Generator(nn.Module, abc.ABC):
    """Abstract generator of (defective skull, implant) pairs; see the module docstring for the contract."""

    name: str = "generator"

    def __init__(self, config: dict):
        super().__init__()
        self.config: dict = dict(config)
        self.optim: dict[str, torch.optim.Optimizer] = {}

    # ----- what each method defines -------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent sample, without the batch dimension."""

    @property
    def resolution(self) -> int:
        """Generator resolution S (voxels per side)."""
        return int(self.config["resolution"])

    @abc.abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent points ``(n, *latent_shape)`` → probabilities in [0, 1], ``(n, 2, S, S, S)``."""

    def encode(self, x: torch.Tensor) -> torch.Tensor | None:
        """Volumes ``(n, 2, S, S, S)`` → latent means ``(n, *latent_shape)``; ``None`` when there is no encoder."""
        return None

    @abc.abstractmethod
    def optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers over this model's parameters (called once by :meth:`fit`)."""

    @abc.abstractmethod
    def training_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        """One optimisation step on ``batch`` (on the model's device); returns the loss terms as floats."""

    # ----- shared machinery ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def fit(
        self,
        volumes: np.ndarray | torch.Tensor,
        steps: int,
        batch_size: int = 4,
        lr: float = 1e-3,
        device: str = "auto",
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: int = 100,
        seed: int = 0,
        progress: bool = True,
    ) -> dict[str, list[float]]:
        """Train for ``steps`` optimisation steps on ``volumes`` ``(N, 2, S, S, S)`` and return the loss history.

        With ``checkpoint_path``, a checkpoint (model, optimizers, step, history, RNG states) is written atomically
        every ``checkpoint_every`` steps and at the end; if the file already exists, training RESUMES from it and
        continues up to ``steps`` in total (a finished checkpoint returns at once). On CPU a resumed run gives the
        same weights as an uninterrupted one. A checkpoint trained on other data or with another ``lr``,
        ``batch_size`` or ``seed`` is refused (naming the difference) rather than continued. ``volumes`` may also be
        a cranialkit Dataset (prepared with :func:`cranialkit.generative.data.pairs_from_dataset` at the generator
        resolution).
        """
        if not isinstance(volumes, (np.ndarray, torch.Tensor)):
            from cranialkit.generative.data import pairs_from_dataset

            volumes = pairs_from_dataset(volumes, self.resolution)
        data = as_volumes_tensor(volumes, self.resolution)
        if steps < 0 or batch_size < 1 or checkpoint_every < 1:
            raise ValueError(f"need steps >= 0, batch_size >= 1, checkpoint_every >= 1; got {steps}, {batch_size}, "
                             f"{checkpoint_every}")
        dev = resolve_device(device)
        self.to(dev)
        torch.manual_seed(seed)
        self.optim = self.optimizers(lr)
        batch_rng = torch.Generator().manual_seed(seed)
        history: dict[str, list[float]] = {}
        start = 0
        from cranialkit.checkpoints import data_fingerprint

        self._fit_settings = {"lr": float(lr), "batch_size": int(batch_size), "seed": int(seed),
                              "data": data_fingerprint(data.numpy())}
        path = Path(checkpoint_path) if checkpoint_path is not None else None
        if path is not None and path.exists():
            start, history = self._load_training_checkpoint(path, batch_rng)
        self.train()
        bar = _progress(range(start, steps), progress, desc=f"{self.name} training", initial=start, total=steps)
        for step in bar:
            index = torch.randint(len(data), (min(batch_size, len(data)),), generator=batch_rng)
            terms = self.training_step(data[index].to(dev), step)
            for key, value in terms.items():
                if not math.isfinite(value):
                    raise FloatingPointError(f"{self.name}: loss term {key!r} became {value} at step {step}; "
                                             f"try a smaller learning rate (lr={lr:g})")
                history.setdefault(key, []).append(float(value))
            if hasattr(bar, "set_postfix") and step % 10 == 0:
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(terms.items())[:3]})
            if path is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
                self._save_training_checkpoint(path, step + 1, history, batch_rng)
        self.eval()
        return history

    def _save_training_checkpoint(self, path: Path, step: int, history: dict, batch_rng: torch.Generator | None,
                                  rng: dict | None = None) -> None:
        """Write the training state atomically; ``rng`` replaces the current random-number states (warm starts)."""
        if rng is None:
            rng = {"torch": torch.get_rng_state(), "batches": batch_rng.get_state()}
            if self.device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(self.device)
        atomic_torch_save(
            {
                "name": self.name,
                "config": self.config,
                "state_dict": self.state_dict(),
                "optimizers": {key: opt.state_dict() for key, opt in self.optim.items()},
                "step": step,
                "history": history,
                "rng": rng,
                **({"fit": self._fit_settings} if getattr(self, "_fit_settings", None) else {}),
            },
            path,
        )

    def _load_training_checkpoint(self, path: Path, batch_rng: torch.Generator) -> tuple[int, dict]:
        from cranialkit.checkpoints import read_checkpoint

        ckpt = read_checkpoint(path, "generator", map_location=self.device)
        if ckpt.get("name") != self.name or ckpt.get("config") != self.config:
            raise OutputMismatchError(f"{path}: checkpoint is for {ckpt.get('name')!r} with config "
                                      f"{ckpt.get('config')}, not {self.name!r} with {self.config}; delete it or pass "
                                      f"another checkpoint_path")
        saved = ckpt.get("fit")  # absent in a warm start's checkpoint, which any fit may continue
        if saved is not None and saved != self._fit_settings:
            raise OutputMismatchError(f"{path}: this checkpoint was trained with other settings or data "
                                      f"({describe_differences(saved, self._fit_settings)}); delete it (--overwrite) "
                                      f"or pass another checkpoint_path")
        load_weights(self, ckpt["state_dict"], path, advice=RETRAIN_ADVICE)
        for key, state in ckpt.get("optimizers", {}).items():
            self.optim[key].load_state_dict(state)
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        batch_rng.set_state(ckpt["rng"]["batches"].cpu())
        if "cuda" in ckpt["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"].cpu(), self.device)
        return int(ckpt["step"]), {k: list(v) for k, v in ckpt["history"].items()}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        sampler: str = "random",
        seed: int = 0,
        batch_size: int = 8,
        scale: float = 1.0,
        device: str = "auto",
    ) -> np.ndarray:
        """``n`` new pairs as probabilities ``(n, 2, S, S, S)`` float32: latent points from ``sampler``, decoded.

        ``sampler`` is ``"random"`` (Gaussian) or ``"uds"`` (uniform deterministic sampling), see
        :func:`cranialkit.generative.sampling.latent_points`; ``scale`` multiplies how far from the centre they go.
        """
        from cranialkit.generative.sampling import latent_points

        z = latent_points(n, self.latent_shape, sampler, seed=seed, scale=scale)
        return self.decode_batched(z, batch_size=batch_size, device=device)

    @torch.no_grad()
    def decode_batched(self, z: torch.Tensor, batch_size: int = 8, device: str = "auto") -> np.ndarray:
        """Decode latent points in batches of ``batch_size`` on ``device``; returns float32 numpy probabilities."""
        dev = resolve_device(device)
        self.to(dev).eval()
        out = np.empty((len(z), 2, self.resolution, self.resolution, self.resolution), dtype=np.float32)
        for start in range(0, len(z), batch_size):
            chunk = z[start:start + batch_size].to(dev)
            out[start:start + len(chunk)] = self.decode(chunk).float().cpu().numpy()
        return out

    @torch.no_grad()
    def encode_batched(self, volumes: np.ndarray | torch.Tensor, batch_size: int = 8,
                       device: str = "auto") -> np.ndarray | None:
        """Latent means of ``volumes`` ``(N, 2, S, S, S)`` as numpy ``(N, *latent_shape)``, or None (no encoder)."""
        x = as_volumes_tensor(volumes, self.resolution)
        dev = resolve_device(device)
        self.to(dev).eval()
        parts = []
        for start in range(0, len(x), batch_size):
            mu = self.encode(x[start:start + batch_size].to(dev))
            if mu is None:
                return None
            parts.append(mu.float().cpu().numpy())
        return np.concatenate(parts)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``{"name", "config", "state_dict"}`` atomically; :func:`load_generator` reads it back."""
        return atomic_torch_save({"name": self.name, "config": self.config, "state_dict": self.state_dict()}, path)


def load_generator(path: str | os.PathLike, device: str = "auto") -> Generator:
    """Rebuild a generator saved by :meth:`Generator.save` or by a :meth:`Generator.fit` checkpoint."""
    from cranialkit.checkpoints import read_checkpoint

    path = Path(path)
    ckpt = read_checkpoint(path, "generator")
    try:
        model = get_generator(ckpt["name"])(**ckpt["config"])
    except (KeyError, TypeError) as exc:  # an unknown generator, or settings this version does not take
        raise CheckpointError(f"{path}: cannot rebuild its {ckpt['name']!r} generator ({exc}); "
                              f"{RETRAIN_ADVICE}") from exc
    load_weights(model, ckpt["state_dict"], path, advice=RETRAIN_ADVICE)
    return model.to(resolve_device(device)).eval()


def _progress(iterable, enabled: bool, **kwargs):
    """A tqdm progress bar (notebook-aware) when ``enabled``, else the plain iterable."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
