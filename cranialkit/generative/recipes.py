"""Training recipes: model settings and step counts sized for a 2-core CPU in minutes (quality: docs/BENCHMARKS.md).

Used by notebooks 04_vae, 05_wgan_gp, 06_introvae, 07_soft_introvae, 09_uds_vs_random and by
``benchmarks/generator_quality.py`` (which checks them), so that all report the same models. At 32³ voxels on the
phantom dataset (10 subjects × 6 defect classes = 60 pairs); budgeted in steps, not seconds. Relative CPU cost of
one step at batch 8 (adversarial phase; VAE = 1, ≈ 0.1–0.3 CPU-s): IntroVAE ≈ 3, Soft-IntroVAE ≈ 5, WGAN-GP
(n_critic = 3) ≈ 6. IntroVAE and Soft-IntroVAE warm up as plain VAEs — since session 9 by starting from the "vae"
recipe's model (:func:`warm_start_from_vae`), so their warm-up costs nothing once notebook 04 has run. Validity
under the session-5 criteria (speckle and scatter tests): docs/BENCHMARKS.md; the earlier 94–100 % figures counted
speckled and checkerboard samples as valid. Session 6 raised the KL weight of the VAE family from 1e-3 to 3e-3.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from cranialkit.config import data_dir
from cranialkit.generative.base import Generator, get_generator
from cranialkit.generative.blocks import NETWORK_VERSION

RECIPES: dict[str, dict] = {
    # 2000 steps (not 500): at 500 the samples were 100 % valid but blurry (reconstruction loss 0.61, half of them
    # shapeless blobs that the criteria still accept). Session 5 (resize-convolution decoder, speckle/scatter
    # criteria): 85 % valid at β = 1e-3. Session 6: β = 3e-3 (a sweep: 92 % valid, nearest-training Dice 0.72,
    # diversity 0.41 — more valid, closer to the training cases, less varied; notebook 04: 94 %, 377 s).
    # Session 8: the decoder paints the complete skull and a cone-shaped defect (output "skull_and_cap", as the
    # WGAN-GP): the plain decoder's samples were 85–94 % valid over 5 draws, run to run; the rejected ones had no
    # usable implant (codes between training cases, where the defect blurs away). With the cone: 100 % (sweeps).
    "vae": {"steps": 2000, "batch_size": 8, "lr": 2e-3,
            "config": {"latent_dim": 32, "beta": 3e-3, "output": "skull_and_cap"}},
    # The generator paints the complete skull and a defect region (output "skull_and_region"); painting the pair
    # directly gave 0–64 % valid (implants too small). n_critic 3: 97–100 % valid under the first criteria — but
    # those implants were specks over the vault. Session 5 (new decoder and criteria): 64 % after 1500 steps in
    # notebook 05, 13 min. Session 6: 1000 steps to fit the 10-minute budget (≈ 0.48 s per step on 2 cores);
    # validity swings between runs (53 % → 14 % from 750 to 1500 steps on 180 pairs). Notebook 05: 65 %, 536 s.
    # Session 8: the region as a cone (output "skull_and_cap") instead of a voxel map, whose untrained background
    # left one-voxel implant rims (wgan_gp.py): 96 % valid over 5 draws of 100 after 1000 steps (1-thread sweep;
    # 24 % at 500 steps — the skull is learnt later than with the voxel region).
    "wgan_gp": {"steps": 1000, "batch_size": 8, "lr": 1e-3,
                "config": {"latent_dim": 32, "n_critic": 3, "output": "skull_and_cap"}},
    # 2000 VAE warm-up steps, then 200 adversarial ones with a margin above the real data's KL (≈ 21 nats at β 333)
    # and a gentle α. With margin 60 / α 0.25 / 400 steps the encoder won the game and 89 % of the samples were
    # rejected. Session 6 (β 333, margin 15, 1500 + 400 steps): 85 % valid over 5 draws of 100. Session 7 (mean of
    # 5 draws of 100, one training run, 1 thread): 94 % at 1500 warm-up steps, 87 % at 2000 (the warm-up alone
    # swings between runs and checkpoints), 94 % after 200 adversarial steps at margin 25. Session 8: the cone
    # decoder (output "skull_and_cap", see "vae"): 100 % after 1000 warm-up steps (sweep). Session 9: β = 1/3e-3
    # exactly, so that the warm-up is the "vae" recipe's model and starts from it (warm_start): notebook 06 100 %
    # over 5 draws in 136 s.
    "introvae": {"steps": 2200, "batch_size": 8, "lr": 2e-3,
                 "config": {"latent_dim": 32, "warmup_steps": 2000, "alpha": 0.05, "beta": 1 / 3e-3, "margin": 25.0,
                            "output": "skull_and_cap"}},
    # 2000 VAE warm-up steps (1500 until session 8), then 150 adversarial ones at a tenth of the learning rate.
    # At the full rate the adversarial phase wrecked the model (83 % → 21 % valid); at a tenth it degrades after
    # ~150 steps (63 % at 300). The old recipe (250 + 150 steps at full rate) drew checkerboards. Session 6: KL
    # weight 3e-3 as the VAE (β_neg 4× it, as before): 95 % after the warm-up, 90 % after the 150 adversarial
    # steps; notebook 07: 81 %. Those were single draws of 100 samples with a lucky seed: over 5 draws notebook 07's
    # model gives 83 %. Session 7 (5 draws each): 91 % at 1500 warm-up steps, 90 % at 2000, 84 % after 100
    # adversarial steps — at this scale the soft adversarial phase lowers validity, which notebook 07 shows rather
    # than hides. Session 8: the cone decoder (output "skull_and_cap", see "vae"): 100 % after the warm-up (sweep).
    # Session 9: the warm-up is the "vae" recipe's 2000 steps, reused (warm_start): notebook 07 100 % over 5 draws
    # in 209 s.
    "soft_introvae": {"steps": 2150, "batch_size": 8, "lr": 2e-3,
                      "config": {"latent_dim": 32, "warmup_steps": 2000, "beta_kl": 3e-3, "beta_neg": 1.2e-2,
                                 "adversarial_lr_scale": 0.1, "output": "skull_and_cap"}},
}


def recipe(name: str) -> dict:
    """A copy of the recipe for generator ``name`` (``steps``, ``batch_size``, ``lr``, model ``config``)."""
    key = name.replace("-", "_")
    if key not in RECIPES:
        raise KeyError(f"no training recipe for {name!r}; recipes exist for {', '.join(sorted(RECIPES))}")
    entry = RECIPES[key]
    return {**entry, "config": dict(entry["config"])}


def training_data_fingerprint(volumes: np.ndarray) -> str:
    """A short hash of the training pairs (their shape and which voxels are set): a model trained on other data is
    another model, even when every setting is the same (e.g. after changing a notebook's ``n_subjects``)."""
    x = np.asarray(volumes)
    digest = hashlib.sha1(str(x.shape).encode())
    digest.update(np.packbits(x > 0.5).tobytes())
    return digest.hexdigest()[:10]


def checkpoint_path(model: Generator, volumes: np.ndarray, steps: int, batch_size: int, lr: float,
                    seed: int = 0) -> Path:
    """Where notebooks keep ``model`` trained on ``volumes`` with these settings (under the data dir): the file name
    holds the model name, resolution, steps and a hash of everything else (training data included), so notebook 09
    finds exactly what 04–07 trained and a change of any setting starts a new file instead of clashing with an old
    one."""
    settings = json.dumps({"config": model.config, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                           "network_version": NETWORK_VERSION, "data": training_data_fingerprint(volumes)},
                          sort_keys=True)
    digest = hashlib.sha1(settings.encode()).hexdigest()[:10]
    return data_dir() / "generators" / f"{model.name}_r{model.resolution}_s{steps}_{digest}.pt"


def warm_start_from_vae(model: Generator, volumes: np.ndarray, steps: int, batch_size: int, lr: float, seed: int = 0,
                        device: str = "auto", progress: bool = True) -> Path:
    """:func:`checkpoint_path` of ``model`` (IntroVAE or Soft-IntroVAE, ``steps`` in all), with its warm-up in place.

    The warm-up is a plain VAE (:mod:`cranialkit.generative.warm_start`): when the model's checkpoint does not exist
    yet, the VAE of the same settings is loaded from its own checkpoint — with the recipes' settings that is notebook
    04's model — or trained for ``warmup_steps`` now, and the model's checkpoint at the end of its warm-up is made
    from it. ``model.fit(volumes, steps, ..., checkpoint_path=<returned path>)`` then runs only the adversarial
    steps. A model without warm-up steps (or one whose checkpoint exists) is left alone.
    """
    from cranialkit.generative.warm_start import warmup_vae_config, write_warmup_checkpoint

    path = checkpoint_path(model, volumes, steps, batch_size, lr, seed)
    warmup_steps = int(model.config.get("warmup_steps", 0))
    if path.exists() or warmup_steps <= 0 or steps <= warmup_steps:
        return path
    vae_settings = {k: v for k, v in warmup_vae_config(model).items() if k != "resolution"}
    vae, _ = train_or_load("vae", volumes, steps=warmup_steps, device=device, seed=seed, progress=progress,
                           batch_size=batch_size, lr=lr, **vae_settings)
    return write_warmup_checkpoint(model, checkpoint_path(vae, volumes, warmup_steps, batch_size, lr, seed), path)


def train_or_load(name: str, volumes: np.ndarray, steps: int | None = None, device: str = "auto", seed: int = 0,
                  progress: bool = True, fallback_steps: int = 300, **overrides) -> tuple[Generator, dict]:
    """The generator ``name`` trained with its recipe on ``volumes`` — loaded from :func:`checkpoint_path` when a
    finished checkpoint exists, trained (or resumed) otherwise. ``steps`` and ``overrides`` (``batch_size``,
    ``lr``, model settings) replace the recipe's; generators without a recipe use their defaults and
    ``fallback_steps``. Returns the model and its loss history."""
    try:
        plan = recipe(name)
    except KeyError:
        plan = {"steps": fallback_steps, "batch_size": 8, "lr": 1e-3, "config": {}}
    steps = int(steps if steps is not None else plan["steps"])
    batch_size = int(overrides.pop("batch_size", plan["batch_size"]))
    lr = float(overrides.pop("lr", plan["lr"]))
    config = {**plan["config"], **overrides}
    resolution = int(np.shape(volumes)[-1])
    model = get_generator(name)(resolution=resolution, **config)
    if int(model.config.get("warmup_steps", 0)) > 0:  # IntroVAE, Soft-IntroVAE: the warm-up is a VAE's training
        path = warm_start_from_vae(model, volumes, steps, batch_size, lr, seed, device=device, progress=progress)
    else:
        path = checkpoint_path(model, volumes, steps, batch_size, lr, seed)
    torch.manual_seed(seed)
    history = model.fit(volumes, steps=steps, batch_size=batch_size, lr=lr, device=device, seed=seed,
                        checkpoint_path=path, progress=progress, checkpoint_every=max(1, min(100, steps // 2)))
    return model, history
