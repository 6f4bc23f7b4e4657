"""Tuning sweep (developer tool): train one generator configuration in stages, measure quality after each stage.

    python dev/sweep_generators.py '{"name": "wgan_gp", "stages": [500, 1000], "lr": 1e-3, "config": {...}}' out.jsonl

Appends one JSON line per stage to ``out.jsonl``: valid fraction of 100 random samples (seed 1) after post-processing
and its mean over 500 (seeds 0-4), the
rejection reasons, nearest-training Dice, diversity, wall seconds so far. For LDMs, ``ae_steps`` sets the
autoencoder's steps and the stages count denoiser steps (DDIM-50 sampling); ``"compare": [["ddpm", 1000],
["ddim", 50]]`` then also samples 100 with each scheduler after the last stage and records validity, diversity, time.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cranialkit.generative import get_generator
from cranialkit.generative.data import training_pairs
from cranialkit.generative.postprocess import rejection_counts
from cranialkit.generative.sampling import (
    nearest_training_dice,
    valid_fraction,
    valid_fraction_by_seed,
    volume_diversity,
)
from cranialkit.metrics import dice


def main() -> None:
    job = json.loads(sys.argv[1])
    out = Path(sys.argv[2])
    torch.set_num_threads(int(job.get("threads", 2)))
    device = job.get("device", "auto")
    seed = int(job.get("seed", 0))
    training = training_pairs(n_subjects=int(job.get("n_subjects", 10)), resolution=int(job.get("resolution", 32)),
                              seed=0).volumes
    torch.manual_seed(seed)
    name = job["name"]
    is_ldm = name.startswith("ldm")
    config = dict(job.get("config", {}))
    model = get_generator(name)(resolution=training.shape[-1], **config)
    ckpt = Path(tempfile.mkdtemp()) / "model.pt"
    start = time.perf_counter()
    for steps in job["stages"]:
        extra = {"autoencoder_steps": int(job.get("ae_steps", 400))} if is_ldm else {}
        if is_ldm and steps != job["stages"][0]:
            extra["autoencoder_steps"] = 0
        model.fit(training, steps, batch_size=int(job.get("batch_size", 8)), lr=float(job.get("lr", 1e-3)),
                  device=device, seed=seed, checkpoint_path=ckpt, checkpoint_every=max(1, steps), progress=False,
                  **extra)
        train_s = time.perf_counter() - start
        if is_ldm and steps == job["stages"][0]:  # how well the autoencoder reconstructs 40 training pairs
            latents = torch.from_numpy(model.autoencoder.encode_batched(training[:40], device=device))
            recon = model.autoencoder.decode_batched(latents, device=device) > 0.5
            ae_dice = [float(np.mean([dice(recon[i, c], training[i, c] > 0.5) for i in range(len(recon))]))
                       for c in (0, 1)]
            print(json.dumps({"tag": job.get("tag"), "autoencoder_dice_skull_implant": ae_dice}), flush=True)
        kwargs = {"num_inference_steps": 50} if is_ldm else {}
        samples = model.sample(100, sampler="random", seed=1, device=device, **kwargs)
        nearest = nearest_training_dice(samples, training)
        # 100 samples per seed are noisy (the same model gave 81-91 % over seeds 0-4): also the mean over 5 seeds.
        valid_by_seed = [valid_fraction(samples)] + valid_fraction_by_seed(model, 100, seeds=(0, 2, 3, 4),
                                                                           device=device, **kwargs)
        row = {"job": job, "steps": steps, "train_s": round(train_s, 1), "valid": valid_by_seed[0],
               "valid_500": round(float(np.mean(valid_by_seed)), 3), "valid_by_seed_1_0_2_3_4": valid_by_seed,
               "rejections": rejection_counts(samples), "nearest_dice": round(float(nearest.mean()), 3),
               "nearest_max": round(float(nearest.max()), 3),
               "diversity": {k: round(v, 3) for k, v in volume_diversity(samples).items()}}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: v for k, v in row.items() if k != "job"} | {"tag": job.get("tag")}), flush=True)
    for scheduler, n_steps in job.get("compare", []):  # LDMs: samplers after the last stage, same noise
        started = time.perf_counter()
        samples = model.sample(100, sampler="random", seed=1, device=device, scheduler=scheduler,
                               num_inference_steps=int(n_steps), batch_size=50)
        row = {"job": job, "scheduler": scheduler, "inference_steps": n_steps,
               "sample_s": round(time.perf_counter() - started, 1), "valid": valid_fraction(samples),
               "rejections": rejection_counts(samples),
               "nearest_dice": round(float(nearest_training_dice(samples, training).mean()), 3),
               "diversity": {k: round(v, 3) for k, v in volume_diversity(samples).items()}}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: v for k, v in row.items() if k != "job"} | {"tag": job.get("tag")}), flush=True)


if __name__ == "__main__":
    main()
