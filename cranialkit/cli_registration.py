"""``cranialkit register-augment``: registration-based augmentation of a dataset from the command line.

Taught in notebook 03_registration_augmentation. Example (4 machines, one shard each)::

    cranialkit register-augment --data /data/SkullBreak --out /data/skullbreak_reg --resolution 128 \\
        --alpha 0.5 --shard 0 --num-shards 4 --batch-size 4 --device auto
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cranialkit.registration import DEFAULT_ALPHA


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "register-augment",
        help="register every ordered pair of subjects and write N·(N−1) new cases (resumable, shardable)",
        description="Register every complete skull to every other one and warp the source's defective skull and "
        "implant onto the target. Writes a SkullBreak-layout dataset with a manifest; rerun the same command to "
        "resume after an interruption.",
    )
    parser.add_argument("--data", required=True,
                        help="dataset folder (SkullBreak, SkullFix, phantom layout) or 'phantom' for phantoms")
    parser.add_argument("--out", required=True, type=Path, help="output folder of the augmented dataset")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help=f"regularization weight (larger = smoother; default {DEFAULT_ALPHA})")
    parser.add_argument("--resolution", type=int, default=64, help="cubic grid size in voxels (default 64)")
    parser.add_argument("--shard", type=int, default=0, help="which shard of the pairs to run (0-based)")
    parser.add_argument("--num-shards", type=int, default=1, help="number of shards the pairs are split into")
    parser.add_argument("--batch-size", type=int, default=1, help="pairs registered at once (GPU: 4-8)")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--classes", nargs="+", default=None, help="defect classes to use (default: all)")
    parser.add_argument("--regularizer", choices=("diffusion", "bending"), default="diffusion")
    parser.add_argument("--levels", type=int, default=4, help="pyramid levels")
    parser.add_argument("--iterations", type=int, nargs="+", default=None,
                        help="Adam steps per level, coarse to fine (one number or one per level)")
    parser.add_argument("--subjects", type=int, default=5, help="with --data phantom: number of phantom subjects")
    parser.add_argument("--seed", type=int, default=0, help="with --data phantom: seed of the phantoms")
    parser.add_argument("--max-pairs", type=int, default=None, help="stop after this many new pairs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_register_augment)


def run_register_augment(args: argparse.Namespace) -> int:
    try:
        return _register_augment(args)
    except ValueError as exc:  # bad dataset folder, settings mismatch, bad shard...: one clear line, no traceback
        print(f"cranialkit register-augment: error: {exc}", file=sys.stderr)
        return 2


def _register_augment(args: argparse.Namespace) -> int:
    from cranialkit.augment.registration import augment_dataset
    from cranialkit.data.datasets import load_dataset, phantom_dataset
    from cranialkit.registration import RegistrationConfig

    if args.data == "phantom":
        dataset = phantom_dataset(n_subjects=args.subjects, resolution=args.resolution, seed=args.seed)
    else:
        dataset = load_dataset(args.data)
    options = {"alpha": args.alpha, "regularizer": args.regularizer, "levels": args.levels}
    if args.iterations is not None:
        options["iterations"] = args.iterations[0] if len(args.iterations) == 1 else tuple(args.iterations)
    config = RegistrationConfig(**options)
    records = augment_dataset(
        dataset, args.out, config, resolution=args.resolution, shard=args.shard, num_shards=args.num_shards,
        batch_size=args.batch_size, device=args.device, classes=args.classes, max_pairs=args.max_pairs,
        progress=not args.no_progress,
    )
    if records:
        dice = sum(r["dice"] for r in records) / len(records)
        folding = sum(r["folding_percent"] for r in records) / len(records)
        print(f"{args.out}: {len(records)} pairs done (all shards); mean Dice after registration {dice:.3f}, "
              f"mean folding {folding:.3f} %")
    return 0
