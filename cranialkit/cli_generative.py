"""``cranialkit train-generator`` and ``cranialkit generate``: generative augmentation without a notebook.

Taught in notebooks 04_vae (training) and 09_uds_vs_random (sampling). Both commands work for every generator in
the registry (``cranialkit.generative.available_generators()``).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from cranialkit.cli_args import (
    data_source,
    device_name,
    float_range,
    grid_side,
    non_negative_int,
    output_file,
    output_folder,
    positive_float,
    positive_int,
)
from cranialkit.errors import UsageError


def _config_argument(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}); write e.g. '{{\"latent_dim\": 64}}'") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object of settings, got {text!r}")
    return value


def _class_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text):
        raise argparse.ArgumentTypeError(f"{text!r}: a defect-class folder name needs letters, digits, _ . - only")
    return text


def add_parsers(subparsers) -> None:
    train = subparsers.add_parser("train-generator", help="train a generator of (defective skull, implant) pairs")
    train.add_argument("--model", required=True, help="registry name, e.g. vae, wgan_gp, introvae, soft_introvae")
    train.add_argument("--data", default="phantom", type=data_source,
                       help='"phantom" or the folder of a dataset (any layout)')
    train.add_argument("--resolution", type=grid_side(8, 16, 256), default=32,
                       help="generator grid, voxels per side, a multiple of 8 (default 32)")
    train.add_argument("--steps", type=positive_int, default=500)
    train.add_argument("--batch-size", type=positive_int, default=8)
    train.add_argument("--lr", type=positive_float, default=1e-3)
    train.add_argument("--checkpoint", required=True, type=output_file(".pt"),
                       help="checkpoint file (resumes when it exists, if trained with the same settings and data)")
    train.add_argument("--overwrite", action="store_true",
                       help="delete an existing --checkpoint made with other settings or data and start over")
    train.add_argument("--config", default={}, type=_config_argument,
                       help='extra model settings as JSON, e.g. \'{"latent_dim": 64}\'')
    train.add_argument("--seed", type=non_negative_int, default=0)
    train.add_argument("--device", default="auto", type=device_name)
    train.set_defaults(func=_train)

    gen = subparsers.add_parser("generate", help="sample a trained generator into a dataset folder")
    gen.add_argument("--model", default=None, help="expected registry name (checked against the checkpoint)")
    gen.add_argument("--checkpoint", required=True, type=Path)
    gen.add_argument("--n", type=positive_int, default=100,
                     help="number of samples to draw (invalid ones are not written)")
    gen.add_argument("--sampler", choices=("random", "uds"), default="uds")
    gen.add_argument("--scale", type=positive_float, default=1.0,
                     help="how far from the latent centre the points reach")
    gen.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random sampler (UDS ignores it)")
    gen.add_argument("--out", required=True, type=output_folder,
                     help="output dataset folder (resumes when it exists, if made with the same checkpoint and "
                          "settings)")
    gen.add_argument("--overwrite", action="store_true",
                     help="start --out over when it holds samples of another checkpoint or settings")
    gen.add_argument("--name", default=None, type=_class_name,
                     help="defect-class folder name (default: the model name)")
    gen.add_argument("--spacing-mm", type=float_range(0.05, 20.0), default=None,
                     help="voxel size of the generator grid in mm (0.05-20)")
    gen.add_argument("--batch-size", type=positive_int, default=8)
    gen.add_argument("--device", default="auto", type=device_name)
    gen.set_defaults(func=_generate)


def _train(args: argparse.Namespace) -> int:
    from cranialkit.data.datasets import load_dataset, phantom_dataset
    from cranialkit.generative import available_generators, get_generator
    from cranialkit.generative.data import pairs_from_dataset

    if args.model.replace("-", "_") not in available_generators():
        raise UsageError(f"--model {args.model}: unknown generator; choose one of {', '.join(available_generators())}")
    try:
        model = get_generator(args.model)(resolution=args.resolution, **args.config)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--config: {exc}; see the {args.model} class for its settings") from exc
    if args.overwrite and args.checkpoint.exists():
        args.checkpoint.unlink()
    dataset = phantom_dataset() if args.data == "phantom" else load_dataset(args.data)
    volumes = pairs_from_dataset(dataset, args.resolution)
    history = model.fit(volumes, steps=args.steps, batch_size=args.batch_size, lr=args.lr, device=args.device,
                        checkpoint_path=args.checkpoint, seed=args.seed)
    last = {k: round(v[-1], 5) for k, v in history.items()}
    print(json.dumps({"model": model.name, "checkpoint": str(args.checkpoint), "steps": args.steps, "last": last}))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from cranialkit.checkpoints import read_checkpoint

    read_checkpoint(args.checkpoint, "generator")  # a wrong file is named before the generator code is imported
    from cranialkit.augment.generative import generate_dataset
    from cranialkit.generative import load_generator

    model = load_generator(args.checkpoint, device=args.device)
    if args.model is not None and model.name != args.model.replace("-", "_"):
        raise UsageError(f"--model {args.model}: {args.checkpoint} holds a {model.name!r} generator, not "
                         f"{args.model!r}; leave --model out or give the right checkpoint")
    summary = generate_dataset(model, args.n, args.out, sampler=args.sampler, seed=args.seed, scale=args.scale,
                               spacing_mm=args.spacing_mm, name=args.name, batch_size=args.batch_size,
                               device=args.device, overwrite=args.overwrite)
    print(json.dumps(summary))
    return 0
