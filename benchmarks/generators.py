"""Training and sampling throughput of every registered generator; prints one JSON object.

    python benchmarks/generators.py            # 64³ on CPU; 128³ as well when CUDA is available
    python benchmarks/generators.py --quick    # fewer timed steps (about a minute on a 2-core CPU)
    python benchmarks/generators.py --models vae wgan_gp --resolutions 32
    python benchmarks/generators.py --resolutions 32 64 --json docs/benchmarks   # also write its record

Each generator trains on random shell-shaped 2-channel volumes (throughput does not depend on the content) for a
few untimed warm-up steps, then ``--steps`` timed steps; then ``--samples`` samples are drawn (UDS) and timed.
Per-model settings (``MODEL_CONFIGS``) keep the models small; a generator without an entry uses its defaults.
Reported: training steps/s, training volumes/s (= steps/s × batch) and samples/s, per device and resolution.
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
from cranialkit.generative import available_generators, get_generator
from cranialkit.generative.recipes import recipe

# The notebook recipes' model settings (recipes.RECIPES: the cone decoder "skull_and_cap", WGAN-GP n_critic 3), with
# the VAE family's warm-up skipped so that IntroVAE and Soft-IntroVAE are timed on their adversarial steps.
MODEL_CONFIGS: dict[str, dict] = {
    **{name: recipe(name)["config"] for name in ("vae", "wgan_gp")},
    **{name: {**recipe(name)["config"], "warmup_steps": 0} for name in ("introvae", "soft_introvae")},
    # LDMs: time the denoiser steps (fit would first train the autoencoder for 500 steps); sampling = DDIM-50.
    # benchmarks/ldm_speed.py times both stages, DDIM vs DDPM, and their sample quality.
    "ldm_vqvae": {"autoencoder_steps": 0},
    "ldm_vae": {"autoencoder_steps": 0},
}
SKIP = {"vqvae"}  # an autoencoder only: it has no prior to sample from on its own


def shell_volumes(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` random skull-like shells with a cap as implant, ``(n, 2, S, S, S)`` float32."""
    rng = np.random.default_rng(seed)
    g = (np.mgrid[:size, :size, :size] + 0.5) / size - 0.5
    out = np.zeros((n, 2, size, size, size), np.float32)
    for i in range(n):
        r = np.sqrt((g**2).sum(0)) / rng.uniform(0.85, 1.0)
        skull = (r < 0.42) & (r > 0.36)
        cap = skull & (g[2] > rng.uniform(0.2, 0.3))
        out[i, 0], out[i, 1] = skull & ~cap, cap
    return out


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench_one(name: str, resolution: int, dev: torch.device, steps: int, samples: int, batch: int) -> dict:
    torch.manual_seed(0)
    model = get_generator(name)(resolution=resolution, **MODEL_CONFIGS.get(name, {}))
    data = shell_volumes(max(batch, 4), resolution)
    model.fit(data, steps=2, batch_size=batch, device=str(dev), progress=False)  # warm-up (allocations, kernels)
    _sync(dev)
    start = time.perf_counter()
    model.fit(data, steps=steps, batch_size=batch, device=str(dev), progress=False)
    _sync(dev)
    train_s = time.perf_counter() - start
    model.sample(min(samples, batch), sampler="uds", batch_size=batch, device=str(dev))
    _sync(dev)
    start = time.perf_counter()
    model.sample(samples, sampler="uds", batch_size=batch, device=str(dev))
    _sync(dev)
    sample_s = time.perf_counter() - start
    return {
        "model": name, "resolution": resolution, "device": str(dev), "batch_size": batch, "timed_steps": steps,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "train_steps_per_s": round(steps / train_s, 4), "train_volumes_per_s": round(steps * batch / train_s, 3),
        "samples": samples, "samples_per_s": round(samples / sample_s, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 timed steps and 4 samples per model")
    parser.add_argument("--models", nargs="*", default=None, help="registry names (default: all but vqvae)")
    parser.add_argument("--resolutions", nargs="*", type=int, default=None,
                        help="CPU resolutions (default 64); CUDA adds 128")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU runs (only 128³ on CUDA)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the result as a benchmark record here (docs/benchmarks/<name>.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = args.steps or (2 if args.quick else 5)
    samples = args.samples or (4 if args.quick else 16)
    names = args.models or [n for n in available_generators() if n not in SKIP]
    runs = [] if args.gpu_only else [(torch.device("cpu"), r) for r in (args.resolutions or [64])]
    gpu = resolve_device("auto")
    if gpu.type == "cuda":
        runs.append((gpu, 128))
    results, errors = [], {}
    for dev, resolution in runs:
        for name in names:
            try:
                n_steps = steps if dev.type == "cpu" else max(steps, 10)
                n_samples = samples if dev.type == "cpu" else max(samples, 32)
                results.append(bench_one(name, resolution, dev, n_steps, n_samples, args.batch_size))
            except Exception as exc:  # noqa: BLE001 - one broken model must not hide the others' figures
                errors[f"{name}@{resolution}/{dev}"] = f"{type(exc).__name__}: {exc}"
    output = {
        "benchmark": "generators: training and sampling throughput",
        "machine": platform.node(), "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(gpu) if gpu.type == "cuda" else None,
        "parameters": {"quick": args.quick, "steps": steps, "samples": samples, "batch_size": args.batch_size,
                       "configs": MODEL_CONFIGS},
        "results": results, "errors": errors,
    }
    print(json.dumps(output, indent=1))
    if args.json:
        on_gpu = gpu.type == "cuda" and args.gpu_only
        rows = [[r["model"], f"{r['resolution']}³", r["device"], f"{r['parameters'] / 1e6:.2f} M",
                 r["train_steps_per_s"], r["train_volumes_per_s"], r["samples_per_s"]] for r in results]
        write_record(args.json, make_record(
            "generators_gpu" if on_gpu else "generators_cpu",
            f"Generator throughput on {'a GPU' if on_gpu else 'the CPU'} (`benchmarks/generators.py`)",
            [table(f"Each model with its notebook recipe's settings; batch {args.batch_size}; {steps} timed steps; "
                   "samples drawn with UDS", ["generator", "grid", "device", "parameters", "training steps/s",
                                             "training volumes/s", "samples/s"], rows)],
            threads=torch.get_num_threads(), device=describe_machine(gpu if on_gpu else "cpu"), results=output))


if __name__ == "__main__":
    main()
