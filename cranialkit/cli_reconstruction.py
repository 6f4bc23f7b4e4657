"""``cranialkit train | evaluate | reconstruct``: the reconstruction network without a notebook.

Taught in notebook 10_unet_training. ``train`` also runs under ``torchrun --nproc-per-node N -m cranialkit train``
(PyTorch DDP: NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from cranialkit.cli_args import (
    data_source,
    device_name,
    existing_file,
    grid_side,
    non_negative_int,
    output_file,
    output_folder,
    positive_float,
    positive_int,
)
from cranialkit.errors import UsageError


def _default_run_dir(args: argparse.Namespace) -> Path:
    from cranialkit.config import data_dir

    name = "phantom" if args.data == "phantom" else Path(args.data).name
    return data_dir() / "runs" / f"unet_{name}_{args.resolution}_{args.size}_{args.target}_{args.augment}_s{args.seed}"


def _mix_argument(text: str) -> tuple[str, float]:
    path, _, weight = text.rpartition(":")
    if not path:
        path, weight = text, "1"
    try:
        value = float(weight)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PATH or PATH:WEIGHT with a number") from exc
    if not (value >= 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: the weight must be a finite number >= 0")
    if not Path(path).is_dir():
        raise argparse.ArgumentTypeError(f"{path}: no such dataset folder")
    return path, value


def _model_config(args: argparse.Namespace):
    """The network settings of ``train``, checked before any data is prepared."""
    from cranialkit.reconstruction.network import ModelConfig

    try:
        return ModelConfig(args.size, args.target, (args.resolution,) * 3)
    except ValueError as exc:
        raise UsageError(f"--resolution {args.resolution}: {exc}; choose another --resolution or --size") from exc


def _data_identity(args: argparse.Namespace) -> dict:
    """What ``--data`` is, for an output's identity: the phantom settings, or the dataset folder and its files."""
    from cranialkit.data.datasets import load_dataset
    from cranialkit.jobs import files_signature

    if args.data == "phantom":
        return {"phantom": {"n_subjects": args.n_subjects, "seed": args.data_seed}, "split_seed": args.split_seed}
    dataset = load_dataset(args.data)
    return {"root": str(Path(args.data).resolve()), "split_seed": args.split_seed,
            **files_signature(args.data, [p for c in dataset for p in c.paths()])}


def _train(args: argparse.Namespace) -> int:
    from cranialkit.augment.geometric import preset
    from cranialkit.jobs import claim_output, exclusive_run, files_signature
    from cranialkit.preprocessing import stack_cases
    from cranialkit.reconstruction import distributed
    from cranialkit.reconstruction.data import load_splits, source_from_arrays, source_from_dataset
    from cranialkit.reconstruction.network import ModelConfig
    from cranialkit.reconstruction.trainer import TrainConfig, train

    model_config = _model_config(args)
    run_dir = Path(args.run_dir) if args.run_dir else _default_run_dir(args)
    identity = {"job": "train", "data": _data_identity(args), "model": model_config.to_dict(),
                "augment": args.augment, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                "val_every": args.val_every, "seed": args.seed, "amp": not args.no_amp,
                "mix": [{"root": str(Path(p).resolve()), "weight": w,
                         **files_signature(p, [f for f in Path(p).rglob("*") if f.is_file()])} for p, w in args.mix]}
    info = distributed.init_from_env()
    held = contextlib.ExitStack()
    try:
        if info.is_main:  # one training per run folder (another `train` into it is refused); same inputs only
            held.enter_context(exclusive_run(run_dir, "train", "a training"))
            claim_output(run_dir, identity, overwrite=args.overwrite, known=("last.pt", "best.pt", "history.json"))
        distributed.barrier()
        shape = (args.resolution,) * 3
        splits = load_splits(args.data, args.n_subjects, args.resolution, args.data_seed, args.split_seed)
        augment = preset(args.augment)
        sources = [source_from_arrays("cases", stack_cases(splits["train"], shape), args.target, 1.0, augment)]
        for i, (path, weight) in enumerate(args.mix):
            sources.append(source_from_dataset(f"mix{i}:{Path(path).name}", path, shape, args.target, weight, augment))
        val = stack_cases(splits["val"], shape) if len(splits["val"]) else None
        config = TrainConfig(
            steps=args.steps, batch_size=args.batch_size, lr=args.lr, val_every=args.val_every, seed=args.seed,
            device=args.device, amp=not args.no_amp, compile=args.compile, num_workers=args.workers,
        )
        result = train(ModelConfig(args.size, args.target, shape), config, sources, val, run_dir)
        if info.is_main:
            last_val = result.history["val"][-1] if result.history["val"] else {}
            print(json.dumps({"run_dir": str(run_dir), "step": result.step, "best": str(result.best_path),
                              "last_val": last_val}))
    finally:
        held.close()
        distributed.shutdown()
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from cranialkit.checkpoints import read_checkpoint

    read_checkpoint(args.checkpoint, "reconstruction")  # a wrong file is named before the network code is imported
    from cranialkit.reconstruction.data import load_splits
    from cranialkit.reconstruction.evaluation import evaluate_cases, format_table, summarize_by_class
    from cranialkit.reconstruction.inference import Reconstructor

    reconstructor = Reconstructor.from_checkpoint(args.checkpoint, device=args.device,
                                                  flip_axes=() if args.no_flip else (0,))
    splits = load_splits(args.data, args.n_subjects, reconstructor.config.shape[0], args.data_seed, args.split_seed)
    cases = [c for part in splits.values() for c in part] if args.split == "all" else list(splits[args.split])
    if not cases:
        raise UsageError(f"--split {args.split}: the {args.split} split of {args.data} has no cases; choose another "
                         f"--split (or more --n-subjects)")
    rows = evaluate_cases(reconstructor, cases, args.out, progress=True, overwrite=args.overwrite)
    print(format_table(rows))
    print()
    print(format_table(summarize_by_class(rows)))
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    from cranialkit.checkpoints import read_checkpoint
    from cranialkit.io import read_mask, write_volume

    defective = read_mask(args.defective)  # first: wrong inputs are named before the network code is imported
    read_checkpoint(args.checkpoint, "reconstruction")
    from cranialkit.reconstruction.inference import Reconstructor

    reconstructor = Reconstructor.from_checkpoint(args.checkpoint, device=args.device,
                                                  flip_axes=() if args.no_flip else (0,))
    implant = reconstructor.reconstruct(defective)
    write_volume(implant, args.output)
    print(f"{args.output}: implant of {int(implant.array.sum())} voxels on the grid of {args.defective}")
    return 0


def add_parsers(subparsers) -> None:
    """Add ``train``, ``evaluate`` and ``reconstruct`` to the ``cranialkit`` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", default="phantom", type=data_source,
                        help='"phantom" or a dataset folder (SkullBreak/SkullFix layout)')
    common.add_argument("--n-subjects", type=positive_int, default=20, help="phantom subjects to generate (default 20)")
    common.add_argument("--data-seed", type=non_negative_int, default=0, help="seed of the phantom dataset")
    common.add_argument("--split-seed", type=non_negative_int, default=0,
                        help="seed of the train/val/test split by subject")
    common.add_argument("--device", default="auto", type=device_name, help='"auto", "cpu", "cuda", "cuda:1", ...')

    p = subparsers.add_parser("train", parents=[common], help="train the reconstruction U-Net (torchrun for DDP)")
    p.add_argument("--resolution", type=grid_side(8, 16, 512), default=64,
                   help="grid side in voxels, a multiple of 8 (16 for sizes other than tiny): 64, 128, 256")
    p.add_argument("--size", default="tiny", choices=("tiny", "compact", "small", "paper"), help="network size")
    p.add_argument("--target", default="implant", choices=("implant", "complete"), help="what the network predicts")
    p.add_argument("--augment", default="mild", choices=("none", "mild", "extreme"), help="geometric preset")
    p.add_argument("--mix", type=_mix_argument, action="append", default=[], metavar="PATH[:WEIGHT]",
                   help="also train on a pre-generated dataset folder, sampled with WEIGHT (repeatable)")
    p.add_argument("--steps", type=positive_int, default=1500)
    p.add_argument("--batch-size", type=positive_int, default=2, help="global batch (all processes together)")
    p.add_argument("--lr", type=positive_float, default=2e-3)
    p.add_argument("--val-every", type=positive_int, default=100)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--workers", type=non_negative_int, default=0,
                   help="CPU DataLoader workers (0: augment on the device)")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision even where supported")
    p.add_argument("--compile", default="auto", choices=("auto", "on", "off"), help="torch.compile (auto: CUDA)")
    p.add_argument("--run-dir", type=output_folder,
                   help="checkpoints and history (default: <data dir>/runs/<name>); resumes if present")
    p.add_argument("--overwrite", action="store_true",
                   help="start --run-dir over when it holds a run of other data or settings (otherwise refused)")
    p.set_defaults(func=_train)

    p = subparsers.add_parser("evaluate", parents=[common], help="per-case and per-class DSC, bDSC, HD95 of a split")
    p.add_argument("--checkpoint", required=True, type=Path, help="best.pt or last.pt of a training run")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    p.add_argument("--no-flip", action="store_true", help="no left-right mirror averaging at test time")
    p.add_argument("--out", type=output_folder,
                   help="folder for implants (NRRD), manifest and metrics.csv (resumable with the same checkpoint "
                        "and data)")
    p.add_argument("--overwrite", action="store_true",
                   help="start --out over when it holds results of another checkpoint or data (otherwise refused)")
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser("reconstruct", help="predict the implant of one defective skull (NRRD/NIfTI)")
    p.add_argument("defective", type=existing_file, help="defective skull file (binary NRRD or NIfTI)")
    p.add_argument("-o", "--output", required=True, type=output_file(".nrrd", ".nhdr", ".nii", ".nii.gz"),
                   help="implant file to write (.nrrd or .nii.gz)")
    p.add_argument("--checkpoint", required=True, type=Path, help="best.pt or last.pt of a training run")
    p.add_argument("--device", default="auto", type=device_name)
    p.add_argument("--no-flip", action="store_true", help="no left-right mirror averaging at test time")
    p.set_defaults(func=_reconstruct)
