"""Training recipes: the settings notebooks 04–08 train their generators with, sized for a 2-core CPU in minutes.

Used by notebooks 04_vae … 08_latent_diffusion, 09_uds_vs_random and 12_augmentation_study and by
``benchmarks/generator_quality.py``, so that all of them train, name and find the same models
(:func:`checkpoint_path`, built on :mod:`cranialkit.checkpoints`). At 32³ voxels on the phantom training pairs of
the series (10 subjects × 6 defect classes = 60 pairs; the latent diffusion models on 20 subjects,
:func:`recipe_pairs`); budgets are in steps, not seconds. Relative CPU cost of one
step at batch 8 (VAE = 1, ≈ 0.1–0.3 CPU-s): IntroVAE ≈ 3 and Soft-IntroVAE ≈ 5 in their adversarial phase, WGAN-GP
(three critic updates per step) ≈ 6. IntroVAE and Soft-IntroVAE warm up as plain VAEs and start from the "vae"
recipe's model (:func:`warm_start_from_vae`), so their warm-up costs nothing once notebook 04 has run.

:func:`recipe` with ``smoke=True`` gives the tiny version every notebook uses in smoke mode (the test suite), so
that notebook 09 finds the smoke-trained models of 04–08 the same way it finds the full ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cranialkit.checkpoints import checkpoint_path as named_checkpoint
from cranialkit.checkpoints import data_fingerprint
from cranialkit.generative.base import Generator, get_generator
from cranialkit.generative.blocks import NETWORK_VERSION
from cranialkit.generative.data import TrainingPairs, training_pairs

RECIPES: dict[str, dict] = {
    # β = 3e-3 keeps the posteriors close enough to the prior that random latent points decode into valid cases;
    # smaller β gives sharper, more varied samples of which fewer are valid. At 500 steps the samples pass the
    # validity criteria but many are shapeless blobs; 2000 steps give skull-shaped samples. The decoder paints the
    # complete skull and a cone-shaped defect ("skull_and_cap"): a decoder that paints both channels voxel by
    # voxel blurs the defect away for latent points between training cases whose defects lie in different places.
    "vae": {"steps": 2000, "batch_size": 8, "lr": 2e-3,
            "config": {"latent_dim": 32, "beta": 3e-3, "output": "skull_and_cap"}},
    # The generator paints the complete skull and a cone-shaped defect region. Painting the pair directly leaves
    # most implants too small to be valid; a voxel-wise region is never seen by the critic where there is no bone,
    # so it leaves one-voxel implant rims along the skull (wgan_gp.py). Three critic updates per generator update;
    # validity rises late (the skull is learnt before the defect) and 1000 steps fit a 10-minute CPU budget.
    "wgan_gp": {"steps": 1000, "batch_size": 8, "lr": 1e-3,
                "config": {"latent_dim": 32, "n_critic": 3, "output": "skull_and_cap"}},
    # 2000 plain-VAE warm-up steps (exactly the "vae" recipe: β = 1/3e-3 makes the warm-up loss β times the VAE's),
    # then 200 adversarial steps. The margin sits above the KL of real data after the warm-up (≈ 21 nats) and α is
    # gentle: with a margin far above it (60) and α = 0.25 the encoder wins the game and samples decode into faint
    # fragments.
    "introvae": {"steps": 2200, "batch_size": 8, "lr": 2e-3,
                 "config": {"latent_dim": 32, "warmup_steps": 2000, "alpha": 0.05, "beta": 1 / 3e-3, "margin": 25.0,
                            "output": "skull_and_cap"}},
    # 2000 plain-VAE warm-up steps (the "vae" recipe), then 150 adversarial steps at a tenth of the learning rate:
    # at the full rate the adversarial phase wrecks the model within 150 steps, and longer runs at a tenth degrade
    # it too at this scale. β_neg = 4 β_kl.
    "soft_introvae": {"steps": 2150, "batch_size": 8, "lr": 2e-3,
                      "config": {"latent_dim": 32, "warmup_steps": 2000, "beta_kl": 3e-3, "beta_neg": 1.2e-2,
                                 "adversarial_lr_scale": 0.1, "output": "skull_and_cap"}},
    # Latent diffusion (notebook 08): the autoencoder trains first (1500 steps: fewer leave reconstructions too
    # coarse to sample good cases from), then the denoiser for ``steps``. The denoiser predicts v, which stays
    # well scaled at the first sampling steps where an ε-prediction's error is multiplied by ≈ 14. The VQ-VAE
    # trains at 3e-3 on 20 subjects (120 pairs): on the series' 60 pairs its codebook collapses (every pair
    # encoded alike, every sample the same), and at 1e-3 far fewer samples are valid. The KL autoencoder trains
    # at 1e-3: at 3e-3 it stalls at blurry reconstructions.
    "ldm_vqvae": {"steps": 600, "batch_size": 8, "lr": 1e-3, "n_subjects": 20,
                  "config": {"autoencoder": {"levels": 2}, "autoencoder_steps": 1500, "autoencoder_lr": 3e-3,
                             "prediction_type": "v_prediction"}},
    "ldm_vae": {"steps": 600, "batch_size": 8, "lr": 1e-3, "n_subjects": 20,
                "config": {"autoencoder": {"levels": 2}, "autoencoder_steps": 1500, "autoencoder_lr": 1e-3,
                           "prediction_type": "v_prediction"}},
}

# The phantom subjects a recipe trains on unless it says otherwise (× 6 defect classes: the series' 60 pairs).
SERIES_SUBJECTS = 10
# Smoke mode (the test suite): a few steps of every stage, batch 2, 2 subjects — every code path, only smaller.
SMOKE = {"steps": 4, "batch_size": 2, "warmup_steps": 2, "autoencoder_steps": 4, "n_subjects": 2}


def recipe(name: str, smoke: bool = False) -> dict:
    """A copy of the recipe for generator ``name`` (``steps``, ``batch_size``, ``lr``, ``n_subjects``, model
    ``config``); with ``smoke``, its tiny version (:data:`SMOKE` steps, batch size and subjects, same model
    settings)."""
    key = name.replace("-", "_")
    if key not in RECIPES:
        raise KeyError(f"no training recipe for {name!r}; recipes exist for {', '.join(sorted(RECIPES))}")
    entry = {"n_subjects": SERIES_SUBJECTS, **RECIPES[key], "config": dict(RECIPES[key]["config"])}
    if smoke:
        entry.update(steps=SMOKE["steps"], batch_size=SMOKE["batch_size"], n_subjects=SMOKE["n_subjects"])
        for stage in ("warmup_steps", "autoencoder_steps"):
            if stage in entry["config"]:
                entry["config"][stage] = SMOKE[stage]
    return entry


def recipe_pairs(name: str, data: str = "phantom", resolution: int = 32, seed: int = 0,
                 smoke: bool = False) -> TrainingPairs:
    """The training pairs of ``name``'s recipe: its ``n_subjects`` phantom subjects (the series' 10, 20 for the
    latent diffusion models), or the dataset folder ``data``. Notebooks 09 and 12 find the models of 04–08 with
    these pairs."""
    return training_pairs(data, recipe(name, smoke=smoke)["n_subjects"], resolution, seed)


def checkpoint_path(model: Generator, volumes: np.ndarray, steps: int, batch_size: int, lr: float,
                    seed: int = 0) -> Path:
    """Where ``model`` trained on ``volumes`` with these settings lives (:func:`cranialkit.checkpoints.checkpoint_path`,
    kind "generator"): the model's whole configuration, the training settings, the network version and a
    fingerprint of the training pairs name the file, so notebook 09 finds exactly what 04–08 trained."""
    settings = {"config": model.config, "batch_size": batch_size, "lr": lr, "seed": seed,
                "network_version": NETWORK_VERSION}
    return named_checkpoint("generator", model.name, settings, model.resolution, steps, data_fingerprint(volumes))


def warmup_vae(model: Generator, volumes: np.ndarray, batch_size: int, lr: float, seed: int = 0, device: str = "auto",
               progress: bool = True) -> tuple[Generator, Path]:
    """The plain VAE whose training is ``model``'s warm-up (IntroVAE or Soft-IntroVAE, see
    :mod:`cranialkit.generative.warm_start`) and its checkpoint: loaded when it exists — with the recipes' settings
    that is notebook 04's model — trained for ``warmup_steps`` otherwise."""
    from cranialkit.generative.warm_start import warmup_vae_config

    warmup_steps = int(model.config["warmup_steps"])
    vae_settings = {k: v for k, v in warmup_vae_config(model).items() if k != "resolution"}
    vae, _ = train_or_load("vae", volumes, steps=warmup_steps, device=device, seed=seed, progress=progress,
                           batch_size=batch_size, lr=lr, **vae_settings)
    return vae, checkpoint_path(vae, volumes, warmup_steps, batch_size, lr, seed)


def warm_start_from_vae(model: Generator, volumes: np.ndarray, steps: int, batch_size: int, lr: float, seed: int = 0,
                        device: str = "auto", progress: bool = True) -> Path:
    """:func:`checkpoint_path` of ``model`` (IntroVAE or Soft-IntroVAE, ``steps`` in all), with its warm-up in place.

    When the model's checkpoint does not exist yet, it is made from the :func:`warmup_vae` at the end of the
    warm-up; ``model.fit(volumes, steps, ..., checkpoint_path=<returned path>)`` then runs only the adversarial
    steps. A model without warm-up steps (or one whose checkpoint exists) is left alone.
    """
    from cranialkit.generative.warm_start import write_warmup_checkpoint

    path = checkpoint_path(model, volumes, steps, batch_size, lr, seed)
    warmup_steps = int(model.config.get("warmup_steps", 0))
    if path.exists() or warmup_steps <= 0 or steps <= warmup_steps:
        return path
    _, vae_path = warmup_vae(model, volumes, batch_size, lr, seed, device=device, progress=progress)
    return write_warmup_checkpoint(model, vae_path, path)


def autoencoder_checkpoint_path(model: Generator, volumes: np.ndarray, batch_size: int, seed: int = 0) -> Path:
    """Where the first stage (autoencoder) of a latent diffusion ``model`` lives, named by the same convention:
    its own configuration, ``autoencoder_steps`` and ``autoencoder_lr`` — independent of the denoiser's settings."""
    return checkpoint_path(model.autoencoder, volumes, int(model.config["autoencoder_steps"]), batch_size,
                           float(model.config["autoencoder_lr"]), seed)


def train_model(model: Generator, volumes: np.ndarray, steps: int, batch_size: int, lr: float, seed: int = 0,
                device: str = "auto", progress: bool = True) -> tuple[Path, dict]:
    """Train ``model`` on ``volumes`` under its :func:`checkpoint_path` and return the path and the loss history.

    A finished checkpoint is loaded at once, an unfinished one resumed. IntroVAE and Soft-IntroVAE start from the
    VAE of their warm-up (:func:`warm_start_from_vae`); a latent diffusion model first trains its autoencoder under
    :func:`autoencoder_checkpoint_path`.
    """
    fit_args = dict(batch_size=batch_size, device=device, seed=seed, progress=progress,
                    checkpoint_every=max(1, min(100, steps // 2)))
    if int(model.config.get("warmup_steps", 0)) > 0:  # IntroVAE, Soft-IntroVAE: the warm-up is a VAE's training
        path = warm_start_from_vae(model, volumes, steps, batch_size, lr, seed, device=device, progress=progress)
    else:
        path = checkpoint_path(model, volumes, steps, batch_size, lr, seed)
    if hasattr(model, "autoencoder") and not path.exists():  # latent diffusion: stage 1 under its own name
        model.autoencoder.fit(volumes, int(model.config["autoencoder_steps"]), lr=float(model.config["autoencoder_lr"]),
                              checkpoint_path=autoencoder_checkpoint_path(model, volumes, batch_size, seed), **fit_args)
        fit_args["autoencoder_steps"] = 0
    torch.manual_seed(seed)
    history = model.fit(volumes, steps=steps, lr=lr, checkpoint_path=path, **fit_args)
    return path, history


def recipe_model(name: str, volumes: np.ndarray, smoke: bool = False, seed: int = 0,
                 **overrides) -> tuple[Generator, dict]:
    """An untrained generator ``name`` built with its recipe (``overrides`` replace model settings) for the grid of
    ``volumes``, and the training settings ``{"steps", "batch_size", "lr"}`` (``overrides`` may replace them too).
    Its initial weights come from ``torch.manual_seed(seed)``, as in a notebook that seeds and then builds it."""
    plan = recipe(name, smoke=smoke)
    training = {key: overrides.pop(key, plan[key]) for key in ("steps", "batch_size", "lr")}
    torch.manual_seed(seed)
    model = get_generator(name)(resolution=int(np.shape(volumes)[-1]), **{**plan["config"], **overrides})
    return model, training


def train_or_load(name: str, volumes: np.ndarray, steps: int | None = None, device: str = "auto", seed: int = 0,
                  progress: bool = True, smoke: bool = False, **overrides) -> tuple[Generator, dict]:
    """The generator ``name`` trained with its recipe on ``volumes`` (:func:`train_model`: loaded when a finished
    checkpoint exists, trained or resumed otherwise). ``smoke`` takes the recipe's smoke version; ``steps`` and
    ``overrides`` (``batch_size``, ``lr``, model settings) replace the recipe's. Returns the model and its loss
    history."""
    if steps is not None:
        overrides["steps"] = steps
    model, training = recipe_model(name, volumes, smoke=smoke, seed=seed, **overrides)
    _, history = train_model(model, volumes, int(training["steps"]), int(training["batch_size"]),
                             float(training["lr"]), seed=seed, device=device, progress=progress)
    return model, history


def saved_model_path(name: str, volumes: np.ndarray, steps: int | None = None, seed: int = 0, smoke: bool = False,
                     **overrides) -> Path:
    """Where :func:`train_or_load` with the same arguments keeps (or will keep) its model: a notebook can say
    whether it found an earlier notebook's model before loading it."""
    if steps is not None:
        overrides["steps"] = steps
    model, training = recipe_model(name, volumes, smoke=smoke, seed=seed, **overrides)
    return checkpoint_path(model, volumes, int(training["steps"]), int(training["batch_size"]), float(training["lr"]),
                           seed)
