"""Latent diffusion (ldm_vqvae, ldm_vae): training and sampling throughput, and DDIM vs DDPM sample quality.

Prints ONE JSON object. For each model: autoencoder and denoiser training throughput (volumes/s), sampling
throughput with DDIM-<ddim_steps> and DDPM-<ddpm_steps> (samples/s, on ``--sample-batch-size`` samples or, with
``--compare``, on the ``--n-samples`` compared) and — with ``--compare`` — valid fraction,
diversity (mean pairwise 1 − Dice) and nearest-training Dice of ``--n-samples`` samples from each scheduler,
started from the same random noise (the "DDIM-50 vs DDPM-1000" comparison of notebook 08).

    python benchmarks/ldm_speed.py --quick                      # about a minute on a 2-core CPU
    python benchmarks/ldm_speed.py --compare --n-samples 100    # the full comparison (DDPM-1000 is slow on a CPU)
    python benchmarks/ldm_speed.py --resolution 128 --levels 3 --data synthetic   # GPU throughput at 128³
    python benchmarks/ldm_speed.py --checkpoint <notebook 08's ldm_vqvae checkpoint> --compare   # a trained model
    python benchmarks/ldm_speed.py --compare --json docs/benchmarks   # also write its record (benchmarks/report.py)

``--data phantom`` trains on phantom pairs (cranialkit.generative.data.training_pairs); ``synthetic`` on toy
shells made here (no files), enough for throughput but not for quality figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report import describe_machine, make_record, table, write_record  # noqa: E402

from cranialkit.config import device as pick_device  # noqa: E402
from cranialkit.generative import get_generator, load_generator  # noqa: E402
from cranialkit.generative.sampling import nearest_training_dice, valid_fraction, volume_diversity  # noqa: E402


def synthetic_pairs(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Toy (defective skull, implant) pairs: ellipsoidal shells with a cap cut off as the implant."""
    rng = np.random.default_rng(seed)
    grid = (np.indices((size,) * 3).astype(np.float32) - (size - 1) / 2) / (size / 2)
    out = np.zeros((n, 2, size, size, size), np.float32)
    for i in range(n):
        radii = rng.uniform(0.6, 0.9, 3)
        r = np.sqrt(((grid / radii[:, None, None, None]) ** 2).sum(0))
        shell = (r < 1.0) & (r > 0.85)
        direction = rng.normal(size=3)
        cap = np.tensordot(direction / np.linalg.norm(direction), grid, axes=1) > rng.uniform(0.3, 0.5)
        out[i, 0] = shell & ~cap
        out[i, 1] = shell & cap
    return out


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn, dev: torch.device) -> tuple[object, float]:
    _sync(dev)
    start = time.perf_counter()
    result = fn()
    _sync(dev)
    return result, time.perf_counter() - start


_START = time.perf_counter()


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the JSON), with seconds since the start."""
    print(f"[{time.perf_counter() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


def measure(name: str, volumes: np.ndarray, args: argparse.Namespace, dev: torch.device) -> dict:
    """Train one model (or load ``--checkpoint``), time training and sampling, and (with --compare) measure
    DDIM vs DDPM sample quality."""
    torch.manual_seed(args.seed)
    if args.checkpoint:
        model = load_generator(args.checkpoint, device=str(dev))
        out = {"checkpoint": str(args.checkpoint)}
        log(f"{name}: loaded {args.checkpoint}")
    else:
        model = get_generator(name)(resolution=args.resolution, autoencoder=dict(levels=args.levels))
        fit = dict(batch_size=args.batch_size, lr=args.lr, device=str(dev), progress=False, seed=args.seed)
        # warm-up (kernel selection, allocator), then the timed part of each stage
        model.autoencoder.fit(volumes, 2, **fit)
        _, ae_seconds = _timed(lambda: model.autoencoder.fit(volumes, args.ae_steps, **fit), dev)
        log(f"{name}: autoencoder {args.ae_steps} steps in {ae_seconds:.1f} s")
        model.fit(volumes, 2, autoencoder_steps=0, **fit)
        _, den_seconds = _timed(lambda: model.fit(volumes, args.denoiser_steps, autoencoder_steps=0, **fit), dev)
        log(f"{name}: denoiser {args.denoiser_steps} steps in {den_seconds:.1f} s")
        out = {"autoencoder_train_volumes_per_s": args.ae_steps * args.batch_size / ae_seconds,
               "denoiser_train_volumes_per_s": args.denoiser_steps * args.batch_size / den_seconds}
    out.update(latent_shape=list(model.latent_shape), latent_scale=float(model.latent_scale))
    sample = dict(sampler="random", seed=args.seed, batch_size=args.sample_batch_size, device=str(dev))
    model.sample(2, num_inference_steps=2, **dict(sample, batch_size=2))  # warm-up
    n = args.n_samples if args.compare else args.sample_batch_size
    if args.compare:
        out["compare"] = {}
    for scheduler, steps in (("ddim", args.ddim_steps), ("ddpm", args.ddpm_steps)):
        samples, seconds = _timed(lambda s=scheduler, k=steps: model.sample(n, scheduler=s, num_inference_steps=k,
                                                                            **sample), dev)
        out[f"{scheduler}{steps}_samples_per_s"] = n / seconds
        log(f"{name}: {n} samples with {scheduler.upper()}-{steps} in {seconds:.1f} s")
        if args.compare:  # same random noise for both schedulers (same seed)
            nearest = nearest_training_dice(samples, volumes)
            out["compare"][f"{scheduler}{steps}"] = {
                "valid_fraction": valid_fraction(samples),
                "diversity_pair": volume_diversity(samples)["pair"],
                "nearest_training_dice_mean": float(nearest.mean()),
                "nearest_training_dice_max": float(nearest.max()),
                "seconds": seconds,
            }
            log(f"{name}: {out['compare'][f'{scheduler}{steps}']}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings: about a minute on a 2-core CPU")
    parser.add_argument("--models", default="ldm_vqvae,ldm_vae", help="comma-separated registry names")
    parser.add_argument("--data", choices=("phantom", "synthetic"), default="phantom")
    parser.add_argument("--n-subjects", type=int, default=20, help="phantom subjects (6 cases each; the recipe's 20)")
    parser.add_argument("--resolution", type=int, default=32, help="generator grid S (voxels per side)")
    parser.add_argument("--levels", type=int, default=2, help="autoencoder halvings (latent side S / 2^levels)")
    parser.add_argument("--ae-steps", type=int, default=400)
    parser.add_argument("--denoiser-steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--sample-batch-size", type=int, default=50)
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--ddpm-steps", type=int, default=1000)
    parser.add_argument("--compare", action="store_true", help="measure DDIM vs DDPM validity and diversity")
    parser.add_argument("--n-samples", type=int, default=100, help="samples per scheduler with --compare")
    parser.add_argument("--checkpoint", type=Path, help="a saved model to sample from (no training is timed)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the result as a benchmark record here (docs/benchmarks/<name>.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_subjects, args.ae_steps, args.denoiser_steps = 4, 10, 10
        args.sample_batch_size, args.ddpm_steps, args.n_samples = 8, 100, 8
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = pick_device(args.device)
    if args.checkpoint:  # the saved model decides the name and the resolution
        saved = load_generator(args.checkpoint, device="cpu")
        args.models, args.resolution = saved.name, saved.resolution
    if args.data == "phantom":
        from cranialkit.generative.data import training_pairs

        volumes = training_pairs(n_subjects=args.n_subjects, resolution=args.resolution, seed=args.seed).volumes
    else:
        volumes = synthetic_pairs(6 * args.n_subjects, args.resolution, seed=args.seed)
    log(f"{len(volumes)} training volumes at {args.resolution}³ on {dev}")
    results = {name: measure(name, volumes, args, dev) for name in args.models.split(",")}
    output = {
        "benchmark": "ldm_speed",
        "measured": "training volumes/s (autoencoder, denoiser), samples/s (DDIM, DDPM), DDIM vs DDPM quality",
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "parameters": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "n_training_volumes": len(volumes),
        "results": results,
    }
    print(json.dumps(output, indent=1))
    if args.json:
        write_record(args.json, ldm_record(output, args, dev))
    return 0


def ldm_record(output: dict, args: argparse.Namespace, dev: torch.device) -> dict:
    """The benchmark record (benchmarks/report.py): throughput per model, and the DDIM/DDPM comparison."""
    ddim, ddpm = f"ddim{args.ddim_steps}", f"ddpm{args.ddpm_steps}"
    speed = [[name, r.get("autoencoder_train_volumes_per_s"), r.get("denoiser_train_volumes_per_s"),
              r[f"{ddim}_samples_per_s"], r[f"{ddpm}_samples_per_s"]] for name, r in output["results"].items()]
    tables = [table(f"{output['n_training_volumes']} training pairs at {args.resolution}³, batch {args.batch_size}",
                    ["model", "autoencoder training volumes/s", "denoiser training volumes/s",
                     f"DDIM-{args.ddim_steps} samples/s", f"DDPM-{args.ddpm_steps} samples/s"], speed)]
    compared = [[name, scheduler.upper(), f"{c['valid_fraction']:.0%}", round(c["diversity_pair"], 3),
                 f"{c['nearest_training_dice_mean']:.3f} ({c['nearest_training_dice_max']:.3f})"]
                for name, r in output["results"].items() for scheduler, c in r.get("compare", {}).items()]
    if compared:
        tables.append(table(f"{args.n_samples} samples per scheduler from the same random noise",
                            ["model", "sampler", "valid", "diversity (pair 1 − Dice)", "nearest-training Dice"],
                            compared))
    return make_record("ldm_speed", "Latent diffusion: speed, and DDIM vs DDPM (`benchmarks/ldm_speed.py`)", tables,
                       threads=torch.get_num_threads(), device=describe_machine(dev), results=output)


if __name__ == "__main__":
    sys.exit(main())
