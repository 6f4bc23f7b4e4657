"""Tuning sweep (developer tool): train one reconstruction configuration, score the phantom test split.

    python dev/sweep_reconstruction.py '{"tag": "w16", "channels": [16, 32, 64, 128], "steps": 3000}' out.jsonl

Job keys (defaults = notebook 10's): channels, num_res_units, loss ("dice" | "dice_bce"), steps, batch_size, lr,
augment ("none" | "mild" | "extreme" | "mild_nonoise"), n_subjects, resolution, seed, device, threads, amp,
thresholds. Appends one JSON line: mean test DSC over the defect classes with closing radius 2, without and with a
left-right flip test-time average, plus the seconds trained; and the mean validation and test DSC for each
threshold of the sigmoid (plain and flip-averaged), so a threshold can be picked on validation cases.
The network sizes and the loss are patched in for the sweep only; a winner goes into the package properly.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss, DiceLoss

import cranialkit.reconstruction.network as network
import cranialkit.reconstruction.trainer as trainer
from cranialkit.augment.geometric import Compose, preset
from cranialkit.config import device as pick_device
from cranialkit.preprocessing import stack_cases
from cranialkit.reconstruction.data import load_splits, source_from_arrays
from cranialkit.reconstruction.evaluation import evaluate_cases, summarize_by_class
from cranialkit.reconstruction.inference import Reconstructor, load_checkpoint
from cranialkit.reconstruction.network import ModelConfig
from cranialkit.reconstruction.trainer import TrainConfig, train


def threshold_table(model, model_config, splits, thresholds) -> dict:
    """Mean DSC over defect classes (val and test) for each threshold, plain and flip-averaged (closing 2)."""
    from cranialkit.io import as_mask
    from cranialkit.metrics import evaluate_implant
    from cranialkit.preprocessing import postprocess_implant, to_grid

    device = next(model.parameters()).device
    model.eval()
    table = {}
    for split in ("val", "test"):
        scores: dict = {}
        for case in splits[split]:
            defective = as_mask(case.defective, "defective skull")
            small, transform = to_grid(defective, shape=model_config.shape)
            grid = np.asarray(small.array, bool)
            x = torch.from_numpy(grid).float()[None, None].to(device)
            with torch.no_grad():
                plain = torch.sigmoid(model(x).float())
                flipped = torch.flip(torch.sigmoid(model(torch.flip(x, (2,))).float()), (2,))
            for kind, prob in (("plain", plain), ("flip", (plain + flipped) / 2)):
                prob = prob[0, 0].cpu().numpy()
                for t in thresholds:
                    implant = (prob > t) & ~grid
                    if implant.any():
                        implant = postprocess_implant(implant, grid, closing_radius=2)
                    restored = np.asarray(transform.to_original(implant).array, bool) & ~defective.array
                    dsc = evaluate_implant(restored, case.implant.array, defective.array, defective.spacing)["dsc"]
                    scores.setdefault(f"{kind}@{t}", {}).setdefault(case.defect_class, []).append(float(dsc))
        table[split] = {k: round(float(np.mean([np.mean(v) for v in by_class.values()])), 4)
                        for k, by_class in scores.items()}
    return table


def main() -> None:
    job = json.loads(sys.argv[1])
    out = Path(sys.argv[2])
    torch.set_num_threads(int(job.get("threads", 2)))
    network.MODEL_SIZES["sweep"] = {"channels": tuple(job.get("channels", (8, 16, 32, 64))),
                                    "num_res_units": int(job.get("num_res_units", 1))}
    if job.get("loss", "dice") == "dice_batch":  # Dice over the whole batch, not averaged per case
        dice_batch = DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5, batch=True)
        trainer.soft_dice_loss = lambda logits, target: dice_batch(logits.float(), target.float())
    if job.get("loss", "dice") == "dice_bce":
        dice_ce = DiceCELoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)
        trainer.soft_dice_loss = lambda logits, target: dice_ce(logits.float(), target.float())
    resolution = int(job.get("resolution", 64))
    shape = (resolution,) * 3
    splits = load_splits("phantom", int(job.get("n_subjects", 20)), resolution, 0, 0)
    augment = job.get("augment", "mild")
    transform = Compose(preset("mild").transforms[:2]) if augment == "mild_nonoise" else preset(augment)
    sources = [source_from_arrays("cases", stack_cases(splits["train"], shape), "implant", 1.0, transform)]
    val = stack_cases(splits["val"], shape)
    config = TrainConfig(steps=int(job.get("steps", 3000)), batch_size=int(job.get("batch_size", 2)),
                         lr=float(job.get("lr", 3e-3)), val_every=int(job.get("val_every", 500)),
                         seed=int(job.get("seed", 0)), device=job.get("device", "auto"), progress=False,
                         amp=bool(job.get("amp", False)), compile=job.get("compile", "off"))
    run_dir = Path(tempfile.mkdtemp()) / "run"
    started = time.perf_counter()
    result = train(ModelConfig("sweep", "implant", shape), config, sources, val, run_dir)
    train_s = time.perf_counter() - started
    model, model_config = load_checkpoint(result.best_path, pick_device(config.device))
    row = {"job": job, "train_s": round(train_s, 1),
           "params": sum(p.numel() for p in model.parameters()),
           "val_curve": [[r["step"], round(r["dsc"], 4)] for r in result.history["val"]]}
    for name, flip_axes in (("plain", ()), ("flip_tta", (0,))):
        reconstructor = Reconstructor(model, model_config, next(model.parameters()).device, closing_radius=2,
                                      flip_axes=flip_axes)
        summary = summarize_by_class(evaluate_cases(reconstructor, splits["test"], progress=False))
        row[name] = {s["defect_class"]: round(float(s["dsc"]), 4) for s in summary}
    row["thresholds"] = threshold_table(model, model_config, splits, job.get("thresholds", [0.3, 0.4, 0.5, 0.6, 0.7]))
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k not in ("job",)} | {"tag": job.get("tag")}), flush=True)


if __name__ == "__main__":
    main()
