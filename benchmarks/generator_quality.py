"""Quality of each generator trained with its notebook recipe: validity, novelty, diversity, random vs UDS.

    python benchmarks/generator_quality.py                 # the four recipes at 32³ on phantoms
    python benchmarks/generator_quality.py --quick         # 1/10 of the steps (a smoke check, not a result)
    python benchmarks/generator_quality.py --json docs/benchmarks   # also write its record (benchmarks/report.py)

Trains the generators of notebooks 04–07 (``cranialkit.generative.recipes.RECIPES``) from scratch on the phantom
training pairs of the series, then draws ``--n`` samples with each sampler and reports the valid fraction after
post-processing (for random sampling also over 5 draws of ``--n``, seeds 0–4, and their mean: one draw of 100 is
noisy), the nearest-training-case Dice (≈ 1 would be copies), the pairwise diversity (1 − Dice) of the decoded
volumes and the coverage measures of the latent points, and which post-processing criterion the rejected samples
failed (``rejections``). Training time is reported as wall seconds and as CPU seconds per step (``cpu_s_per_step``):
on a machine shared with other jobs the wall time is inflated, while CPU seconds / threads estimates the wall time
of an idle machine. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from report import describe_machine, make_record, table, write_record

from cranialkit.config import device as resolve_device
from cranialkit.generative import get_generator
from cranialkit.generative.data import training_pairs
from cranialkit.generative.postprocess import rejection_counts
from cranialkit.generative.recipes import RECIPES, recipe
from cranialkit.generative.sampling import (
    latent_coverage,
    latent_points,
    nearest_training_dice,
    valid_fraction,
    valid_fraction_by_seed,
    vault_gap_fraction,
    volume_diversity,
)


def evaluate(model, training: np.ndarray, n: int, device: str) -> dict:
    out = {}
    for sampler in ("random", "uds"):
        samples = model.sample(n, sampler=sampler, seed=1, device=device)
        nearest = nearest_training_dice(samples, training)
        out[sampler] = {
            "valid_fraction": valid_fraction(samples),
            "rejections": rejection_counts(samples),
            "nearest_training_dice_mean": float(nearest.mean()),
            "nearest_training_dice_max": float(nearest.max()),
            **{f"diversity_{k}": v for k, v in volume_diversity(samples).items()},
            "vault_gap_fraction_mean": float(vault_gap_fraction(samples).mean()),  # training: see main()
            **{k: v for k, v in latent_coverage(latent_points(n, model.latent_shape, sampler, seed=1)).items()
               if k in ("covering_distance", "projection_discrepancy", "mean_nn_distance")},
        }
    # one draw of 100 is noisy (± ~7 points): the mean over 5 random draws is the figure to compare
    draws = valid_fraction_by_seed(model, n, seeds=(0, 2, 3, 4), device=device)  # seed 1 was drawn above
    out["random"]["valid_fraction_5_draws"] = [draws[0], out["random"]["valid_fraction"], *draws[1:]]
    out["random"]["valid_fraction_5_draws_mean"] = float(np.mean(out["random"]["valid_fraction_5_draws"]))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["vae", "wgan_gp", "introvae", "soft_introvae"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=100, help="samples per sampler")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", default=None, help="an .npz with `pairs` (N, 2, S, S, S) and `spacing_mm` to use "
                        "instead of making phantoms (e.g. on a machine without the data dependencies)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the result as a benchmark record here (docs/benchmarks/<name>.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.pairs:
        with np.load(args.pairs) as npz:
            training, spacing = npz["pairs"].astype(np.float32), float(npz["spacing_mm"])
        args.resolution = training.shape[-1]
    else:
        pairs = training_pairs(n_subjects=10, resolution=args.resolution, seed=0)
        training, spacing = pairs.volumes, pairs.spacing_mm
    results = {}
    for name in args.models:
        r = recipe(name)
        steps = max(5, r["steps"] // 10) if args.quick else r["steps"]
        torch.manual_seed(0)
        model = get_generator(name)(resolution=args.resolution, **r["config"])
        start, cpu_start = time.perf_counter(), time.process_time()
        history = model.fit(training, steps=steps, batch_size=r["batch_size"], lr=r["lr"], device=args.device,
                            progress=False, seed=0)
        train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
        results[name] = {"steps": steps, "train_seconds": round(train_s, 1),
                         "cpu_s_per_step": round(cpu_s / max(1, steps), 3),
                         "final_losses": {k: round(float(np.mean(v[-20:])), 4) for k, v in history.items()},
                         **evaluate(model, training, args.n, args.device)}
    output = {
        "benchmark": "generator quality at the notebook recipes",
        "machine": platform.node(), "device": str(resolve_device(args.device)), "torch": torch.__version__,
        "parameters": {"resolution": args.resolution, "n": args.n, "quick": args.quick, "training_pairs": len(training),
                       "spacing_mm": spacing, "recipes": {k: RECIPES[k] for k in args.models}},
        "training_set": {"diversity_pair": volume_diversity(training)["pair"],
                         "vault_gap_fraction_mean": float(vault_gap_fraction(training).mean())},
        "results": results,
    }
    print(json.dumps(output, indent=1))
    if args.json:
        rows = []
        for name, r in results.items():
            random, uds = r["random"], r["uds"]
            rows.append([name, r["steps"], r["train_seconds"],
                         f"{random['valid_fraction']:.0%} / {uds['valid_fraction']:.0%}",
                         f"{random['valid_fraction_5_draws_mean']:.0%}",
                         f"{random['nearest_training_dice_mean']:.2f} ({random['nearest_training_dice_max']:.2f})",
                         f"{random['diversity_pair']:.2f} / {uds['diversity_pair']:.2f}",
                         round(random["vault_gap_fraction_mean"], 3)])
        training_set = output["training_set"]
        write_record(args.json, make_record(
            "generator_quality", "Generators at the notebook recipes (`benchmarks/generator_quality.py`)",
            [table(f"{args.n} samples per sampler, {args.resolution}³, {len(training)} phantom pairs (training set "
                   f"diversity {training_set['diversity_pair']:.2f}, "
                   f"vault gap {training_set['vault_gap_fraction_mean']:.3f})",
                   ["generator", "steps", "training s", "valid random / UDS", "valid, mean of 5 random draws",
                    "nearest-training Dice mean (max)", "diversity random / UDS", "vault gap fraction"], rows)],
            threads=args.threads, device=describe_machine(resolve_device(args.device)), results=output))


if __name__ == "__main__":
    main()
