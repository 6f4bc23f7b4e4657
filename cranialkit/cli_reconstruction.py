"""``cranialkit train | evaluate | reconstruct``: the reconstruction networks without a notebook.

Taught in notebooks 10_unet_training (one stage) and 11_two_stage_reconstruction (coarse → fine). ``train`` also
runs under ``torchrun --nproc-per-node N -m cranialkit train`` (PyTorch DDP: NCCL on GPUs, gloo on CPU).

Two stages: ``train --stage both --recipe cpu`` trains the coarse stage into ``<run dir>/coarse`` and then the fine
stage into ``<run dir>/fine``; ``evaluate`` and ``reconstruct`` take the pair as ``--checkpoint
<run dir>/coarse/best.pt --fine-checkpoint <run dir>/fine/best.pt`` (or ``--checkpoint <run dir>``, which finds
both). Settings come from a recipe (``cranialkit.reconstruction.recipes``); a flag given on the command line
overrides the recipe's value for the stage being trained.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from cranialkit.cli_args import (
    data_source,
    device_name,
    existing_file,
    float_range,
    grid_side,
    int_range,
    non_negative_int,
    output_file,
    output_folder,
    positive_float,
    positive_int,
)
from cranialkit.errors import UsageError

# Flags that set one stage's recipe values (flag attribute → recipe key), and the stage they belong to.
_STAGE_FLAGS = {
    "resolution": ("coarse", "resolution"), "target": ("coarse", "target"),
    "partial_volume": ("coarse", "partial_volume"), "spacing": ("fine", "spacing_mm"), "patch": ("fine", "patch"),
    "margin": ("fine", "margin_mm"), "size": (None, "size"), "steps": (None, "steps"),
    "batch_size": (None, "batch_size"), "lr": (None, "lr"), "val_every": (None, "val_every"),
    "augment": (None, "augment"),
}


def _stage_settings(args: argparse.Namespace, stage: str) -> dict:
    """The recipe's settings for ``stage`` with the flags given on the command line."""
    from cranialkit.reconstruction.recipes import recipe

    overrides = {}
    for flag, (owner, key) in _STAGE_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if args.stage == "both" and owner is None:
            raise UsageError(f"--{flag.replace('_', '-')}: with --stage both every setting comes from --recipe "
                             f"{args.recipe}; train the stages one by one (--stage coarse, then --stage fine) to "
                             f"change it")
        if owner not in (None, stage):
            if args.stage != "both" and not (flag == "resolution" and stage == "fine"):
                raise UsageError(f"--{flag.replace('_', '-')}: a setting of the {owner} stage, not of --stage "
                                 f"{stage}")
            continue
        overrides[key] = value
    return recipe(args.recipe, stage, **overrides)


def _checked_configs(args: argparse.Namespace) -> dict:
    """Each stage's settings, with its network configuration checked before any data is prepared."""
    from cranialkit.reconstruction.recipes import coarse_config_of, coarse_model_config, fine_configs

    stages = ("coarse", "fine") if args.stage == "both" else (args.stage,)
    settings = {stage: _stage_settings(args, stage) for stage in stages}
    if "coarse" in settings:
        try:
            coarse_shape = coarse_model_config(settings["coarse"]).shape
        except ValueError as exc:
            raise UsageError(f"--resolution {settings['coarse']['resolution']}: {exc}; choose another --resolution "
                             f"or --size") from exc
    elif args.coarse_checkpoint is not None:
        coarse_shape = coarse_config_of(args.coarse_checkpoint).shape
    else:
        coarse_shape = (args.resolution,) * 3
    if "fine" in settings:
        try:
            fine_configs(settings["fine"], coarse_shape)
        except ValueError as exc:
            raise UsageError(f"--patch {settings['fine']['patch']}: {exc}; choose another --patch or --size") from exc
        settings["fine"]["coarse_shape"] = list(coarse_shape)
    return settings


def _data_identity(args: argparse.Namespace) -> dict:
    """What ``--data`` is, for an output's identity: the phantom settings, or the dataset folder and its files."""
    from cranialkit.data.datasets import load_dataset
    from cranialkit.jobs import files_signature

    if args.data == "phantom":
        return {"phantom": {"n_subjects": args.n_subjects, "seed": args.data_seed}, "split_seed": args.split_seed}
    dataset = load_dataset(args.data)
    return {"root": str(Path(args.data).resolve()), "split_seed": args.split_seed,
            **files_signature(args.data, [p for c in dataset for p in c.paths()])}


def _file_identity(path) -> dict | None:
    from cranialkit.jobs import files_signature

    return None if path is None else {"path": str(Path(path).resolve()), **files_signature(Path(path).parent, [path])}


def _default_run_dir(args: argparse.Namespace, settings: dict, identity: dict) -> Path:
    from cranialkit.checkpoints import checkpoint_path, settings_digest

    name = ("two_stage" if args.stage == "both" else args.stage) + ("_refit" if args.refit else "")
    first = settings.get("coarse") or settings["fine"]
    size = first.get("resolution") or first.get("patch")
    return checkpoint_path("reconstruction", name, settings, size, first["steps"], settings_digest(identity["data"]))


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


def _train(args: argparse.Namespace) -> int:
    from cranialkit.jobs import claim_output, exclusive_run, files_signature
    from cranialkit.reconstruction import distributed

    if args.stage == "fine" and args.coarse_checkpoint is None and args.resolution is None:
        raise UsageError("--stage fine: give --coarse-checkpoint (whose crops validate the fine stage and whose grid "
                         "it follows) or at least --resolution of the coarse grid")
    settings = _checked_configs(args)
    if args.coarse_checkpoint is not None:
        from cranialkit.checkpoints import read_checkpoint

        read_checkpoint(args.coarse_checkpoint, "reconstruction")
    identity = {"job": "train", "stage": args.stage, "data": _data_identity(args), "settings": settings,
                "seed": args.seed, "amp": not args.no_amp, "init": _file_identity(args.init),
                "coarse_checkpoint": _file_identity(args.coarse_checkpoint),
                "mix": [{"root": str(Path(p).resolve()), "weight": w,
                         **files_signature(p, [f for f in Path(p).rglob("*") if f.is_file()])} for p, w in args.mix],
                **({"refit": True} if args.refit else {})}
    run_dir = Path(args.run_dir) if args.run_dir else _default_run_dir(args, settings, identity)
    info = distributed.init_from_env()
    held = contextlib.ExitStack()
    try:
        if info.is_main:  # one training per run folder (another `train` into it is refused); same inputs only
            held.enter_context(exclusive_run(run_dir, "train", "a training"))
            claim_output(run_dir, identity, overwrite=args.overwrite,
                         known=("last.pt", "best.pt", "history.json", "coarse", "fine"))
        distributed.barrier()
        results = _train_stages(args, settings, run_dir)
        if info.is_main:
            print(json.dumps({"run_dir": str(run_dir), **{
                stage: {"step": r.step, "best": str(r.best_path),
                        "last_val": r.history["val"][-1] if r.history["val"] else {}}
                for stage, r in results.items()}}))
    finally:
        held.close()
        distributed.shutdown()
    return 0


def _train_stages(args: argparse.Namespace, settings: dict, run_dir: Path) -> dict:
    """Train the stages asked for; with ``--stage both`` the fine stage follows the coarse one just trained."""
    from cranialkit.data.datasets import load_dataset
    from cranialkit.reconstruction.data import load_splits, refit_splits
    from cranialkit.reconstruction.recipes import train_stage

    resolution = settings.get("coarse", {}).get("resolution") or 64
    splits = load_splits(args.data, args.n_subjects, resolution, args.data_seed, args.split_seed)
    if args.refit:
        splits = refit_splits(splits)
    mix = [(f"mix{i}:{Path(path).name}", load_dataset(path), weight) for i, (path, weight) in enumerate(args.mix)]
    common = {"mix": mix, "seed": args.seed, "device": args.device, "progress": True, "amp": not args.no_amp,
              "num_workers": args.workers, "compile": args.compile, "threads": args.threads}
    results = {}
    coarse_checkpoint = args.coarse_checkpoint
    for stage in settings:
        stage_dir = run_dir / stage if args.stage == "both" else run_dir
        stage_settings = {k: v for k, v in settings[stage].items() if k != "coarse_shape"}
        results[stage] = train_stage(
            stage, stage_settings, splits["train"], splits["val"], stage_dir, coarse_checkpoint=coarse_checkpoint,
            coarse_shape=settings[stage].get("coarse_shape"), init_weights=args.init if args.stage != "both" else None,
            **common)
        if stage == "coarse":
            coarse_checkpoint = results[stage].best_path
    return results


def _stage_checkpoints(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The coarse checkpoint and the fine one (or None): ``--checkpoint`` may be a two-stage run folder."""
    checkpoint, fine = Path(args.checkpoint), args.fine_checkpoint
    if checkpoint.is_dir() and (checkpoint / "coarse" / "best.pt").is_file():
        if fine is None and (checkpoint / "fine" / "best.pt").is_file():
            fine = checkpoint / "fine" / "best.pt"
        checkpoint = checkpoint / "coarse" / "best.pt"
    return checkpoint, fine


def _reconstructor(args: argparse.Namespace):
    """The one- or two-stage reconstructor of ``--checkpoint`` [``--fine-checkpoint``], files checked first."""
    from cranialkit.checkpoints import read_checkpoint

    coarse, fine = _stage_checkpoints(args)
    read_checkpoint(coarse, "reconstruction")  # a wrong file is named before the network code is imported
    if fine is not None:
        read_checkpoint(fine, "reconstruction")
    from cranialkit.reconstruction.inference import Reconstructor

    return Reconstructor.from_checkpoint(coarse, device=args.device, fine_checkpoint=fine,
                                         flip_axes=() if args.no_flip else (0,))


def _trained_with_refit(coarse_checkpoint: Path) -> bool:
    """Whether the run folder of ``coarse_checkpoint`` (a stage's folder or a two-stage run) was trained with
    ``--refit``, as its ``identity.json`` says."""
    from cranialkit.errors import OutputMismatchError
    from cranialkit.jobs import IDENTITY_FILE, read_identity

    for folder in (coarse_checkpoint.parent, coarse_checkpoint.parent.parent):
        try:
            identity = read_identity(folder / IDENTITY_FILE)
        except OutputMismatchError:  # an unreadable identity says nothing about the refit
            return False
        if identity is not None:
            return bool(identity.get("refit"))
    return False


def _evaluate(args: argparse.Namespace) -> int:
    from cranialkit.reconstruction.data import load_splits
    from cranialkit.reconstruction.evaluation import evaluate_cases, format_table, summarize_by_class

    reconstructor = _reconstructor(args)
    splits = load_splits(args.data, args.n_subjects, reconstructor.config.shape[0], args.data_seed, args.split_seed)
    cases = [c for part in splits.values() for c in part] if args.split == "all" else list(splits[args.split])
    if not cases:
        raise UsageError(f"--split {args.split}: the {args.split} split of {args.data} has no cases; choose another "
                         f"--split (or more --n-subjects)")
    print(f"evaluating {len(cases)} cases with the {reconstructor.stages} stage"
          f"{'s' if reconstructor.fine is not None else ''}")
    if args.split in ("val", "all") and _trained_with_refit(_stage_checkpoints(args)[0]):
        print(f"note: --checkpoint {args.checkpoint} was trained with --refit, on the validation part too: its "
              f"--split {args.split} scores are not held out (--split test is)", file=sys.stderr)
    rows = evaluate_cases(reconstructor, cases, args.out, progress=True, overwrite=args.overwrite)
    print(format_table(rows))
    print()
    print(format_table(summarize_by_class(rows)))
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    from cranialkit.io import read_mask, write_volume

    defective = read_mask(args.defective)  # first: wrong inputs are named before the network code is imported
    reconstructor = _reconstructor(args)
    implant = reconstructor.reconstruct(defective)
    write_volume(implant, args.output)
    print(f"{args.output}: implant of {int(implant.array.sum())} voxels on the grid of {args.defective} "
          f"({reconstructor.stages})")
    return 0


def _add_checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="best.pt or last.pt of a (coarse) training run, or the folder of a --stage both run")
    p.add_argument("--fine-checkpoint", type=existing_file,
                   help="best.pt of a fine-stage run: reconstruct in two stages (coarse → fine)")
    p.add_argument("--no-flip", action="store_true", help="no left-right mirror averaging at test time")


def add_parsers(subparsers) -> None:
    """Add ``train``, ``evaluate`` and ``reconstruct`` to the ``cranialkit`` command."""
    from cranialkit.reconstruction.recipes import RECIPES

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", default="phantom", type=data_source,
                        help='"phantom", a dataset folder (SkullBreak/SkullFix layout) or the name of a downloaded '
                             'dataset ("skullfix")')
    common.add_argument("--n-subjects", type=positive_int, default=20, help="phantom subjects to generate (default 20)")
    common.add_argument("--data-seed", type=non_negative_int, default=0, help="seed of the phantom dataset")
    common.add_argument("--split-seed", type=non_negative_int, default=0,
                        help="seed of the train/val/test split by subject")
    common.add_argument("--device", default="auto", type=device_name, help='"auto", "cpu", "cuda", "cuda:1", ...')

    p = subparsers.add_parser("train", parents=[common], help="train a reconstruction stage (torchrun for DDP)")
    p.add_argument("--stage", default="coarse", choices=("coarse", "fine", "both"),
                   help="coarse (whole head), fine (crop around the defect) or both, one after the other")
    p.add_argument("--recipe", default="cpu", choices=tuple(RECIPES),
                   help="settings of both stages (cranialkit.reconstruction.recipes); flags below override them")
    stage = p.add_argument_group("settings of the stage being trained (default: the recipe's)")
    stage.add_argument("--size", choices=("tiny", "compact", "small", "paper"), help="network size")
    stage.add_argument("--steps", type=positive_int)
    stage.add_argument("--batch-size", type=positive_int, help="global batch (all processes together)")
    stage.add_argument("--lr", type=positive_float)
    stage.add_argument("--val-every", type=positive_int)
    stage.add_argument("--augment", choices=("none", "mild", "extreme"), help="geometric preset")
    coarse = p.add_argument_group("coarse stage")
    coarse.add_argument("--resolution", type=grid_side(8, 16, 512),
                        help="coarse grid side in voxels, a multiple of 8 (16 for sizes other than tiny)")
    coarse.add_argument("--target", choices=("implant", "complete"), help="what the coarse network predicts")
    coarse.add_argument("--partial-volume", action=argparse.BooleanOptionalAction, default=None,
                        help="inputs and targets as the share of each voxel that is bone (--no-partial-volume: "
                             "nearest-neighbour masks)")
    fine = p.add_argument_group("fine stage")
    fine.add_argument("--spacing", type=float_range(0.05, 20.0), help="fine grid spacing in mm (isotropic)")
    fine.add_argument("--patch", type=int_range(16, 256), help="fine training patch side in voxels")
    fine.add_argument("--margin", type=float_range(0.0, 100.0), help="mm of skull around the coarse implant")
    fine.add_argument("--coarse-checkpoint", type=existing_file,
                      help="coarse stage whose crops validate the fine stage (and whose grid it follows)")
    p.add_argument("--init", type=existing_file, help="start from the weights of this checkpoint (same network)")
    p.add_argument("--mix", type=_mix_argument, action="append", default=[], metavar="PATH[:WEIGHT]",
                   help="also train on a pre-generated dataset folder, sampled with WEIGHT (repeatable)")
    p.add_argument("--refit", action="store_true",
                   help="train on the training and validation parts together, keeping the last checkpoint: for a "
                        "recipe already chosen on the validation part (the test part stays untouched)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--no-amp", action="store_true", help="no mixed precision even where supported")
    p.add_argument("--compile", default="auto", choices=("auto", "on", "off"), help="torch.compile (auto: CUDA)")
    p.add_argument("--workers", type=non_negative_int, default=0,
                   help="CPU DataLoader workers (0: augment on the device)")
    p.add_argument("--threads", type=positive_int,
                   help="CPU threads (default: the cores that other work leaves free, printed at the start)")
    p.add_argument("--run-dir", type=output_folder,
                   help="checkpoints and history (default: <data dir>/runs/<name>); resumes if present")
    p.add_argument("--overwrite", action="store_true",
                   help="start --run-dir over when it holds a run of other data or settings (otherwise refused)")
    p.set_defaults(func=_train)

    p = subparsers.add_parser("evaluate", parents=[common], help="per-case and per-class DSC, bDSC, HD95 of a split")
    _add_checkpoint_arguments(p)
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    p.add_argument("--out", type=output_folder,
                   help="folder for implants (NRRD), manifest and metrics.csv (resumable with the same checkpoints "
                        "and data)")
    p.add_argument("--overwrite", action="store_true",
                   help="start --out over when it holds results of another checkpoint or data (otherwise refused)")
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser("reconstruct", help="predict the implant of one defective skull (NRRD/NIfTI)")
    p.add_argument("defective", type=existing_file, help="defective skull file (binary NRRD or NIfTI)")
    p.add_argument("-o", "--output", required=True, type=output_file(".nrrd", ".nhdr", ".nii", ".nii.gz"),
                   help="implant file to write (.nrrd or .nii.gz)")
    _add_checkpoint_arguments(p)
    p.add_argument("--device", default="auto", type=device_name)
    p.set_defaults(func=_reconstruct)
