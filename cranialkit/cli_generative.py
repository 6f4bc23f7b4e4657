"""``cranialkit train-generator`` and ``cranialkit generate``: generative augmentation without a notebook.

Taught in notebooks 04_vae (training) and 09_uds_vs_random (sampling). Both commands work for every generator in
the registry (``cranialkit.generative.available_generators()``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parsers(subparsers) -> None:
    train = subparsers.add_parser("train-generator", help="train a generator of (defective skull, implant) pairs")
    train.add_argument("--model", required=True, help="registry name, e.g. vae, wgan_gp, introvae, soft_introvae")
    train.add_argument("--data", default="phantom", help='"phantom" or the folder of a dataset (any layout)')
    train.add_argument("--resolution", type=int, default=32, help="generator grid, voxels per side (default 32)")
    train.add_argument("--steps", type=int, default=500)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file (resumes when it exists)")
    train.add_argument("--config", default="{}", help='extra model settings as JSON, e.g. \'{"latent_dim": 64}\'')
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto")
    train.set_defaults(func=_train)

    gen = subparsers.add_parser("generate", help="sample a trained generator into a dataset folder")
    gen.add_argument("--model", default=None, help="expected registry name (checked against the checkpoint)")
    gen.add_argument("--checkpoint", required=True, type=Path)
    gen.add_argument("--n", type=int, default=100, help="number of samples to draw (invalid ones are not written)")
    gen.add_argument("--sampler", choices=("random", "uds"), default="uds")
    gen.add_argument("--scale", type=float, default=1.0, help="how far from the latent centre the points reach")
    gen.add_argument("--seed", type=int, default=0, help="seed of the random sampler (UDS ignores it)")
    gen.add_argument("--out", required=True, type=Path, help="output dataset folder (resumes when it exists)")
    gen.add_argument("--name", default=None, help="defect-class folder name (default: the model name)")
    gen.add_argument("--spacing-mm", type=float, default=None, help="voxel size of the generator grid in mm")
    gen.add_argument("--batch-size", type=int, default=8)
    gen.add_argument("--device", default="auto")
    gen.set_defaults(func=_generate)


def _train(args: argparse.Namespace) -> int:
    from cranialkit.data.datasets import load_dataset, phantom_dataset
    from cranialkit.generative import get_generator
    from cranialkit.generative.data import pairs_from_dataset

    try:
        extra = json.loads(args.config)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--config: not valid JSON ({exc})") from exc
    dataset = phantom_dataset() if args.data == "phantom" else load_dataset(args.data)
    volumes = pairs_from_dataset(dataset, args.resolution)
    model = get_generator(args.model)(resolution=args.resolution, **extra)
    history = model.fit(volumes, steps=args.steps, batch_size=args.batch_size, lr=args.lr, device=args.device,
                        checkpoint_path=args.checkpoint, seed=args.seed)
    last = {k: round(v[-1], 5) for k, v in history.items()}
    print(json.dumps({"model": model.name, "checkpoint": str(args.checkpoint), "steps": args.steps, "last": last}))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from cranialkit.augment.generative import generate_dataset
    from cranialkit.generative import load_generator

    model = load_generator(args.checkpoint, device=args.device)
    if args.model is not None and model.name != args.model.replace("-", "_"):
        raise SystemExit(f"{args.checkpoint}: holds a {model.name!r} generator, not {args.model!r}")
    summary = generate_dataset(model, args.n, args.out, sampler=args.sampler, seed=args.seed, scale=args.scale,
                               spacing_mm=args.spacing_mm, name=args.name, batch_size=args.batch_size,
                               device=args.device)
    print(json.dumps(summary))
    return 0
