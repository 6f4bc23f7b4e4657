"""``cranialkit register-augment``: registration-based augmentation of a dataset from the command line.

Taught in notebook 03_registration_augmentation. Example (4 machines, one shard each)::

    cranialkit register-augment --data /data/SkullBreak --out /data/skullbreak_reg --resolution 128 \\
        --alpha 0.5 --shard 0 --num-shards 4 --batch-size 4 --device auto
"""

from __future__ import annotations

import argparse

from cranialkit.cli_args import (
    data_source,
    device_name,
    int_range,
    non_negative_float,
    non_negative_int,
    output_folder,
    positive_int,
)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "register-augment",
        help="register every ordered pair of subjects and write N·(N−1) new cases (resumable, shardable)",
        description="Register every complete skull to every other one and warp the source's defective skull and "
        "implant onto the target. Writes a SkullBreak-layout dataset with a manifest; rerun the same command to "
        "resume after an interruption.",
    )
    parser.add_argument("--data", required=True, type=data_source,
                        help="dataset folder (SkullBreak, SkullFix, phantom layout) or 'phantom' for phantoms")
    parser.add_argument("--out", required=True, type=output_folder, help="output folder of the augmented dataset")
    parser.add_argument("--alpha", type=non_negative_float, default=None,
                        help="regularization weight (larger = smoother; default: RegistrationConfig's, 1.0)")
    parser.add_argument("--resolution", type=int_range(16, 512), default=64,
                        help="cubic grid size in voxels, 16-512 (default 64)")
    parser.add_argument("--shard", type=non_negative_int, default=0, help="which shard of the pairs to run (0-based)")
    parser.add_argument("--num-shards", type=positive_int, default=1, help="number of shards the pairs are split into")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="pairs registered at once (GPU: 4-8)")
    parser.add_argument("--device", type=device_name, default="auto", help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--classes", nargs="+", default=None, help="defect classes to use (default: all)")
    parser.add_argument("--regularizer", choices=("diffusion", "bending"), default="diffusion")
    parser.add_argument("--levels", type=int_range(1, 6), default=4, help="pyramid levels, 1-6 (default 4)")
    parser.add_argument("--iterations", type=positive_int, nargs="+", default=None,
                        help="Adam steps per level, coarse to fine (one number or one per level)")
    parser.add_argument("--subjects", type=int_range(2), default=5,
                        help="with --data phantom: number of phantom subjects (at least 2)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="with --data phantom: seed of the phantoms")
    parser.add_argument("--max-pairs", type=positive_int, default=None, help="stop after this many new pairs")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete what an earlier run with other data or settings left in --out and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_register_augment)


def run_register_augment(args: argparse.Namespace) -> int:
    from cranialkit.data.datasets import load_dataset, phantom_dataset
    from cranialkit.errors import UsageError

    if args.shard >= args.num_shards:
        raise UsageError(f"--shard {args.shard}: must be below --num-shards {args.num_shards} (shards count from 0)")
    if args.iterations is not None and len(args.iterations) not in (1, args.levels):
        raise UsageError(f"--iterations: give one number or one per level ({args.levels} for --levels "
                         f"{args.levels}), got {len(args.iterations)}")
    if args.data == "phantom":
        dataset = phantom_dataset(n_subjects=args.subjects, resolution=args.resolution, seed=args.seed)
    else:
        dataset = load_dataset(args.data)
    if args.classes:
        unknown = sorted(set(args.classes) - set(dataset.classes()))
        if unknown:
            raise UsageError(f"--classes {' '.join(unknown)}: not in {args.data}; it has "
                             f"{', '.join(dataset.classes())}")
    from cranialkit.augment.registration import augment_dataset
    from cranialkit.registration import RegistrationConfig

    options = {"regularizer": args.regularizer, "levels": args.levels}
    if args.alpha is not None:
        options["alpha"] = args.alpha
    if args.iterations is not None:
        options["iterations"] = args.iterations[0] if len(args.iterations) == 1 else tuple(args.iterations)
    config = RegistrationConfig(**options)
    records = augment_dataset(
        dataset, args.out, config, resolution=args.resolution, shard=args.shard, num_shards=args.num_shards,
        batch_size=args.batch_size, device=args.device, classes=args.classes, max_pairs=args.max_pairs,
        progress=not args.no_progress, overwrite=args.overwrite,
    )
    if records:
        dice = sum(r["dice"] for r in records) / len(records)
        folding = sum(r["folding_percent"] for r in records) / len(records)
        print(f"{args.out}: {len(records)} pairs done (all shards); mean Dice after registration {dice:.3f}, "
              f"mean folding {folding:.3f} %")
    return 0
