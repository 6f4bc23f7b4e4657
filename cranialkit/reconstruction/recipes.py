"""Training recipes of the two reconstruction stages, and the one function that trains a stage from them.

Taught in notebook 11_two_stage_reconstruction; shared by ``cranialkit train --recipe`` and
``benchmarks/real_data_quality.py``, so that all three train the same models.

- ``"cpu"``: sized for a 2-core CPU — both stages together train in under 30 minutes. Coarse: 96³ (≈ 2 mm over a
  head, so the vault is two to three voxels thick), network "compact", partial-volume inputs and targets.
  Fine: 1 mm, 64³ patches (64 mm of skull around a point), network "compact".
- ``"gpu"``: the paper's scale — coarse 128³ and a fine grid of 0.5 mm, network "small", more steps.
- ``"smoke"``: tiny, for the tests and ``smoke = True`` notebooks: every code path, in seconds.

Every value can be overridden (``recipe("cpu", "fine", steps=3000)``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cranialkit.reconstruction.fine import FineConfig
from cranialkit.reconstruction.network import ModelConfig

STAGES = ("coarse", "fine")

RECIPES: dict[str, dict[str, dict]] = {
    "cpu": {
        "coarse": {"resolution": 96, "size": "compact", "target": "implant", "partial_volume": True, "steps": 6000,
                   "batch_size": 2, "lr": 3e-3, "augment": "mild", "val_every": 500},
        "fine": {"spacing_mm": 1.0, "patch": 64, "margin_mm": 10.0, "size": "compact", "steps": 6000,
                 "batch_size": 2, "lr": 2e-3, "augment": "mild", "val_every": 1000},
    },
    "gpu": {
        "coarse": {"resolution": 128, "size": "small", "target": "implant", "partial_volume": True, "steps": 20000,
                   "batch_size": 4, "lr": 2e-3, "augment": "mild", "val_every": 1000},
        "fine": {"spacing_mm": 0.5, "patch": 96, "margin_mm": 10.0, "size": "small", "steps": 20000,
                 "batch_size": 4, "lr": 2e-3, "augment": "mild", "val_every": 2000},
    },
    "smoke": {
        "coarse": {"resolution": 32, "size": "compact", "target": "implant", "partial_volume": True, "steps": 4,
                   "batch_size": 2, "lr": 3e-3, "augment": "mild", "val_every": 2},
        "fine": {"spacing_mm": 3.0, "patch": 16, "margin_mm": 6.0, "size": "tiny", "steps": 4, "batch_size": 2,
                 "lr": 2e-3, "augment": "mild", "val_every": 2},
    },
}


def recipe(name: str, stage: str, **overrides) -> dict:
    """The settings of ``stage`` ("coarse" or "fine") in recipe ``name``, with ``overrides`` (None values ignored)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {tuple(RECIPES)}")
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
    settings = dict(RECIPES[name][stage])
    unknown = set(overrides) - set(settings)
    if unknown:
        raise ValueError(f"recipe {name!r}, stage {stage!r}: unknown settings {sorted(unknown)}")
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def coarse_model_config(settings: dict) -> ModelConfig:
    """The coarse network of a coarse-stage recipe."""
    return ModelConfig(settings["size"], settings["target"], (int(settings["resolution"]),) * 3,
                       partial_volume=bool(settings["partial_volume"]))


def fine_configs(settings: dict, coarse_shape: Sequence[int]) -> tuple[ModelConfig, FineConfig]:
    """The fine network and the fine-stage settings of a fine-stage recipe that follows a coarse grid of
    ``coarse_shape``."""
    patch = (int(settings["patch"]),) * 3
    fine = FineConfig(float(settings["spacing_mm"]), float(settings["margin_mm"]), patch, tuple(coarse_shape))
    return ModelConfig(settings["size"], "implant", patch, in_channels=2), fine


def train_stage(
    stage: str,
    settings: dict,
    train_cases,
    val_cases=None,
    run_dir: str | os.PathLike | None = None,
    mix: Sequence[tuple] = (),
    coarse_checkpoint: str | os.PathLike | None = None,
    coarse_shape: Sequence[int] | None = None,
    init_weights: str | os.PathLike | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    stop_after: int | None = None,
    **train_options,
):
    """Train one stage with ``settings`` (:func:`recipe`) on ``train_cases`` (a ``Dataset`` with ground truth).

    ``mix``: more training data as ``(name, dataset, weight)`` — phantoms, registration- or generator-made cases —
    sampled by weight beside the real cases. The coarse stage validates on ``val_cases`` on its grid; the fine stage
    on crops that the coarse stage of ``coarse_checkpoint`` places (none without it), and follows a coarse grid of
    ``coarse_shape`` (default: the checkpoint's). ``train_options`` go to ``TrainConfig`` (``num_workers``,
    ``compile``, ``amp``, ``threads``, ``time_limit_s``). Returns the trainer's ``TrainResult``.
    """
    from cranialkit.reconstruction.trainer import TrainConfig, train

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
    config = TrainConfig(steps=int(settings["steps"]), batch_size=int(settings["batch_size"]),
                         lr=float(settings["lr"]), val_every=int(settings["val_every"]), seed=seed, device=device,
                         progress=progress, loss="dice+bce" if stage == "fine" or settings.get("partial_volume")
                         else "dice", **train_options)
    run_dir = Path(run_dir) if run_dir is not None else None
    if stage == "coarse":
        model_config = coarse_model_config(settings)
        sources, val = _coarse_data(model_config, settings["augment"], train_cases, val_cases, mix, progress)
        return train(model_config, config, sources, val, run_dir, stop_after=stop_after, init_weights=init_weights)
    if coarse_shape is None:
        if coarse_checkpoint is None:
            raise ValueError("the fine stage needs the coarse grid it follows: give coarse_checkpoint or coarse_shape")
        coarse_shape = coarse_config_of(coarse_checkpoint).shape
    model_config, fine = fine_configs(settings, coarse_shape)
    batches, val = _fine_data(fine, settings, train_cases, val_cases, mix, coarse_checkpoint, seed, device, progress)
    extra = {"fine_config": fine.to_dict(), "coarse_checkpoint": str(coarse_checkpoint or "")}
    return train(model_config, config, batches, val, run_dir, stop_after=stop_after, extra_state=extra,
                 init_weights=init_weights)


def coarse_config_of(checkpoint: str | os.PathLike) -> ModelConfig:
    """The network configuration of a coarse-stage checkpoint (a fine-stage one is refused)."""
    from cranialkit.checkpoints import read_checkpoint

    state = read_checkpoint(checkpoint, "reconstruction")
    if "fine_config" in state:
        raise ValueError(f"{checkpoint}: a fine-stage checkpoint; the fine stage follows a coarse one")
    return ModelConfig.from_dict(state["model_config"])


def _coarse_data(model_config: ModelConfig, augment: str, train_cases, val_cases, mix, progress: bool):
    from cranialkit.augment.geometric import preset
    from cranialkit.preprocessing import stack_cases
    from cranialkit.reconstruction.data import source_from_arrays

    pv = model_config.partial_volume

    def source(name: str, dataset, weight: float):
        arrays = stack_cases(dataset, model_config.shape, partial_volume=pv, progress=progress)
        return source_from_arrays(name, arrays, model_config.target, weight, preset(augment, soft=pv))

    sources = [source("cases", train_cases, 1.0)] + [source(name, data, weight) for name, data, weight in mix]
    val = None
    if val_cases is not None and len(val_cases):
        val = stack_cases(val_cases, model_config.shape, partial_volume=pv, progress=progress)
    return sources, val


def _fine_data(fine: FineConfig, settings: dict, train_cases, val_cases, mix, coarse_checkpoint, seed, device,
               progress):
    from cranialkit.reconstruction.fine import FineBatches, FineSource, fine_augmentation, fine_cases, fine_validation
    from cranialkit.reconstruction.inference import Reconstructor

    augment = fine_augmentation(settings["augment"])
    sources = [FineSource("cases", fine_cases(train_cases, fine, progress=progress), 1.0, augment)]
    sources += [FineSource(name, fine_cases(data, fine, progress=progress), weight, augment)
                for name, data, weight in mix]
    batches = FineBatches(sources, int(settings["batch_size"]), fine.patch, seed=seed)
    val = None
    if coarse_checkpoint is not None and val_cases is not None and len(val_cases):
        coarse = Reconstructor.from_checkpoint(coarse_checkpoint, device=device)
        val = fine_validation(val_cases, coarse, fine, progress=progress)
    return batches, val
