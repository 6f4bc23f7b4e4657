"""Leave-one-out reconstruction quality on a few real cases trained together with phantoms; prints one JSON object.

Meant for a GPU: for each fold, trains the U-Net on the phantom training split plus all real cases but one
(mixed by weight, geometric augmentation on the fly), then reconstructs the held-out real case at its original
geometry (e.g. 512 × 512 × Z SkullFix) and, in the first fold, the phantom test split: DSC, boundary DSC, HD95 (mm).

    python benchmarks/real_data_quality.py --real <folder of real SkullFix cases> --resolution 128 --size small
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from cranialkit.augment.geometric import preset
from cranialkit.config import data_dir
from cranialkit.config import device as pick_device
from cranialkit.data.datasets import load_dataset
from cranialkit.preprocessing import stack_cases
from cranialkit.reconstruction.data import load_splits, source_from_arrays
from cranialkit.reconstruction.evaluation import evaluate_cases, summarize_by_class
from cranialkit.reconstruction.inference import Reconstructor, load_checkpoint
from cranialkit.reconstruction.network import ModelConfig
from cranialkit.reconstruction.trainer import TrainConfig, train


def _rounded(row: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", required=True, help="dataset folder with a few real cases (any supported layout)")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--size", default="small")
    parser.add_argument("--n-subjects", type=int, default=12, help="phantom subjects")
    parser.add_argument("--real-weight", type=float, default=1.0, help="sampling weight of the real cases")
    parser.add_argument("--augment", default="mild")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--folds", type=int, default=None, help="how many real cases to hold out (default: all)")
    parser.add_argument("--time-limit", type=float, default=None, help="start no new fold after this many seconds")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", help="where to save the predicted implants (NRRD)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    shape = (args.resolution,) * 3
    dev = pick_device(args.device)
    real = load_dataset(args.real)
    real_arrays = stack_cases(real, shape)
    splits = load_splits("phantom", args.n_subjects, args.resolution, 0, 0)
    phantom_train = stack_cases(splits["train"], shape)
    phantom_val = stack_cases(splits["val"], shape)
    prepared_s = time.perf_counter() - started
    folds = []
    for k, held_out in enumerate(real.cases[: args.folds]):
        if args.time_limit is not None and time.perf_counter() - started > args.time_limit:
            break
        keep = [i for i in range(len(real)) if i != k]
        sources = [
            source_from_arrays("phantoms", phantom_train, "implant", 1.0, preset(args.augment)),
            source_from_arrays("real", real_arrays.select(keep), "implant", args.real_weight, preset(args.augment)),
        ]
        run_dir = data_dir() / "runs" / f"real_loo_{args.resolution}_{args.size}_{args.steps}_fold{k}"
        config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                             val_every=max(1, args.steps // 4), device=args.device, progress=False, compile="off")
        t0 = time.perf_counter()
        result = train(ModelConfig(args.size, "implant", shape), config, sources, phantom_val, run_dir)
        train_s = time.perf_counter() - t0
        model, model_config = load_checkpoint(result.best_path, dev)
        reconstructor = Reconstructor(model, model_config, dev)
        out = Path(args.out) / f"fold{k}" if args.out else None
        real_rows = evaluate_cases(reconstructor, [held_out], out, progress=False)
        fold = {"held_out": held_out.key, "train_seconds": round(train_s, 1),
                "val_dsc_curve": [[r["step"], round(r["dsc"], 4)] for r in result.history["val"]],
                "real": [_rounded(r) for r in real_rows]}
        if k == 0:
            phantom_rows = evaluate_cases(reconstructor, splits["test"], None, progress=False)
            fold["phantom_test_per_class"] = [_rounded(s) for s in summarize_by_class(phantom_rows)]
        folds.append(fold)
        print(json.dumps(fold), file=sys.stderr, flush=True)
    real_dsc = [f["real"][0]["dsc"] for f in folds]
    print(json.dumps({
        "benchmark": "real_data_quality",
        "measured": "leave-one-out implant DSC/bDSC/HD95 (mm) on real cases at original geometry; phantom test",
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "parameters": vars(args),
        "prepare_seconds": round(prepared_s, 1),
        "real_mean_dsc": round(sum(real_dsc) / len(real_dsc), 4) if real_dsc else None,
        "folds": folds,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
