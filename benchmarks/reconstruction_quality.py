"""Reconstruction quality with and without geometric augmentation on the same step budget; prints one JSON object.

For each augmentation preset, trains the U-Net on the phantom training split (same seed, steps, batch, network)
and evaluates the test split at the original geometry: DSC, boundary DSC and HD95 (mm) per defect class.
Defaults are notebook 10's (64³, "compact", 6000 steps of batch 2; about 8 minutes per preset on 2 CPU cores).
``--quick`` runs a few steps (a smoke test, not a measurement). Runs are named by the checkpoint convention
(:func:`cranialkit.checkpoints.checkpoint_path`) and resume.

    python benchmarks/reconstruction_quality.py --augment none,mild
    python benchmarks/reconstruction_quality.py --json docs/benchmarks   # also write its record (benchmarks/report.py)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from report import describe_machine, make_record, table, write_record

from cranialkit.augment.geometric import preset
from cranialkit.checkpoints import checkpoint_path, data_fingerprint
from cranialkit.config import device as pick_device
from cranialkit.preprocessing import stack_cases
from cranialkit.reconstruction.data import load_splits, source_from_arrays
from cranialkit.reconstruction.evaluation import evaluate_cases, summarize_by_class
from cranialkit.reconstruction.inference import Reconstructor, load_checkpoint
from cranialkit.reconstruction.network import ModelConfig
from cranialkit.reconstruction.trainer import TrainConfig, train


def run(args: argparse.Namespace, augment: str, target: str) -> dict:
    shape = (args.resolution,) * 3
    splits = load_splits("phantom", args.n_subjects, args.resolution, 0, 0)
    train_arrays = stack_cases(splits["train"], shape)
    sources = [source_from_arrays("cases", train_arrays, target, 1.0, preset(augment))]
    val = stack_cases(splits["val"], shape)
    settings = {"size": args.size, "target": target, "augment": augment, "batch_size": args.batch_size, "lr": args.lr,
                "val_every": args.val_every, "seed": args.seed}
    run_dir = checkpoint_path("reconstruction", "unet", settings, args.resolution, args.steps,
                              data_fingerprint(train_arrays.defective, train_arrays.implant))
    if args.run_root:
        run_dir = Path(args.run_root) / run_dir.name
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, val_every=args.val_every,
                         seed=args.seed, device=args.device, progress=False)
    started = time.perf_counter()
    result = train(ModelConfig(args.size, target, shape), config, sources, val, run_dir)
    train_s = time.perf_counter() - started
    model, model_config = load_checkpoint(result.best_path, pick_device(args.device))
    by_radius = {}
    for radius in args.closing_radii:
        reconstructor = Reconstructor(model, model_config, args.device, closing_radius=radius)
        rows = evaluate_cases(reconstructor, splits["test"], progress=False)
        by_radius[radius] = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}
                             for s in summarize_by_class(rows)]
    return {
        "augment": augment,
        "target": target,
        "train_seconds": round(train_s, 1),
        "val_dsc_curve": [[r["step"], round(r["dsc"], 4)] for r in result.history["val"]],
        "test_per_class": by_radius[args.closing_radii[0]],
        **({"test_per_class_by_closing_radius": by_radius} if len(by_radius) > 1 else {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--augment", default="none,mild", help="comma-separated presets to compare")
    parser.add_argument("--targets", default="implant", help="comma-separated: implant, complete")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--size", default="compact")
    parser.add_argument("--n-subjects", type=int, default=20)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--closing-radii", type=lambda text: [int(r) for r in text.split(",")], default=[2],
                        help="post-processing closing radii (grid voxels) to evaluate, comma-separated; the first is "
                             "the reported one")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run-root", help="where the runs go (default: <data dir>/runs); existing runs resume")
    parser.add_argument("--quick", action="store_true", help="a few steps at 32³ with 4 subjects (smoke test)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the result as a benchmark record here (docs/benchmarks/<name>.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.val_every, args.resolution, args.n_subjects = 4, 2, 32, 4
    results = []
    for target in args.targets.split(","):
        for augment in args.augment.split(","):
            results.append(run(args, augment, target))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # partial results survive a time-out
    dev = pick_device(args.device)
    output = {
        "benchmark": "reconstruction_quality",
        "measured": "test implant DSC / bDSC / HD95 (mm) per phantom defect class after the same training budget",
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "parameters": {k: v for k, v in vars(args).items() if k not in ("run_root", "json")},
        "results": results,
    }
    print(json.dumps(output, indent=1))
    if args.json:
        rows = []
        for r in results:
            mean = next(s for s in r["test_per_class"] if s["defect_class"] == "mean of classes")
            rows.append([r["augment"], r["target"], round(mean["dsc"], 3), round(mean["bdsc"], 3),
                         round(mean["hd95"], 2), r["train_seconds"]])
        write_record(args.json, make_record(
            "reconstruction_quality", "Reconstruction quality with and without augmentation "
            "(`benchmarks/reconstruction_quality.py`)",
            [table(f"Test split, mean of the defect classes; {args.resolution}³, {args.size}, {args.steps} steps of "
                   f"batch {args.batch_size}, seed {args.seed}", ["augmentation", "target", "DSC", "bDSC",
                                                                 "HD95 (mm)", "training s"], rows)],
            threads=args.threads, device=describe_machine(dev), results=output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
