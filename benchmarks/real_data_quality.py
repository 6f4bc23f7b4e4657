"""Two-stage reconstruction on real skulls: train both stages with a recipe, score coarse vs coarse + fine on a test
part that no training or tuning saw, time inference of one full-resolution case; optionally stages trained on
phantoms only, scored on the same real cases (sim-to-real): the same recipe trained here (``--phantoms N``) or
stages trained elsewhere, e.g. notebook 11's (``--sim-checkpoints COARSE FINE``).

    python benchmarks/real_data_quality.py --data <SkullFix folder or "skullfix"> --recipe cpu --out <run folder> \\
        --json docs/benchmarks

The dataset is split by subject with the dataset's seeded split (70 % train, 15 % validation, 15 % test): the
stages train on the training part, validate (checkpoint choice) on the validation part, and are scored on the test
part at each case's original geometry (DSC, boundary DSC, HD95 in mm). With ``--refit`` the recipe, chosen on the
validation part beforehand, trains on the training and validation parts together and the last checkpoints are
scored: more skulls to learn from, the same untouched test part. Training resumes from ``--out``, so an
interrupted run continues where it stopped; the training minutes reported are the trainer's own clock.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from report import command_line, describe_machine, make_record, table, write_record

from cranialkit.config import cpu_threads
from cranialkit.reconstruction.data import load_splits, refit_splits
from cranialkit.reconstruction.evaluation import evaluate_cases, summarize_by_class
from cranialkit.reconstruction.inference import Reconstructor
from cranialkit.reconstruction.recipes import recipe, train_stage

PUBLISHED = ("Published figures on real SkullFix for comparison: a U-Net at full resolution 0.91 DSC / 0.95 bDSC / "
             "1.79 mm, point-cloud diffusion (PCDiff) 0.90 / 0.93 / 1.69 mm; heavy augmentation on a GPU (Wodzinski "
             "et al. 2024) > 0.96 DSC.")


def _minutes(result) -> float:
    return result.history["train"][-1]["seconds"] / 60 if result.history["train"] else 0.0


def _scores(cases: list, device: str, coarse: Path, fine: Path | None = None) -> list[dict]:
    """Per-case scores at the original geometry of the stages in ``coarse`` (and ``fine``) on ``cases``."""
    stages = Reconstructor.from_checkpoint(coarse, device=device, fine_checkpoint=fine)
    return evaluate_cases(stages, cases, progress=False)


def _row(label: str, rows: list[dict]) -> list:
    mean = {s["defect_class"]: s for s in summarize_by_class(rows)}["all cases"]
    return [label, len(rows), round(mean["dsc"], 3), round(mean["bdsc"], 3), round(mean["hd95"], 2),
            round(float(np.mean([r["seconds"] for r in rows])), 1)]


def _train_both(name: str, train_cases, val_cases, recipe_name: str, out: Path, device: str, threads: int) -> dict:
    """Train the coarse stage, then the fine stage validated on its crops (no validation when ``val_cases`` is empty:
    the last checkpoints); return checkpoints and minutes."""
    coarse = train_stage("coarse", recipe(recipe_name, "coarse"), train_cases, val_cases, out / "coarse",
                         device=device, threads=threads)
    print(f"{name}: coarse stage done ({_minutes(coarse):.1f} min)", file=sys.stderr, flush=True)
    fine = train_stage("fine", recipe(recipe_name, "fine"), train_cases, val_cases, out / "fine",
                       coarse_checkpoint=coarse.best_path, device=device, threads=threads)
    print(f"{name}: fine stage done ({_minutes(fine):.1f} min)", file=sys.stderr, flush=True)
    return {"coarse": coarse.best_path, "fine": fine.best_path, "coarse_minutes": _minutes(coarse),
            "fine_minutes": _minutes(fine), "coarse_steps": coarse.step, "fine_steps": fine.step}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a SkullFix-layout dataset with implants (folder or name)")
    parser.add_argument("--recipe", default="cpu", help="cranialkit.reconstruction.recipes name")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumable)")
    parser.add_argument("--refit", action="store_true",
                        help="train on the training and validation parts together (no checkpoint choice)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the free cores)")
    parser.add_argument("--phantoms", type=int, default=0,
                        help="also train on this many phantom subjects only and score on the real test part")
    parser.add_argument("--phantom-resolution", type=int, default=192)
    parser.add_argument("--sim-checkpoints", type=Path, nargs=2, metavar=("COARSE", "FINE"), default=None,
                        help="phantom-trained coarse and fine checkpoints to score on the real test part")
    parser.add_argument("--sim-label", default="notebook 11's stages, trained on phantoms only",
                        help="the row name of --sim-checkpoints")
    parser.add_argument("--json", type=Path, default=None, help="write the record into this folder")
    parser.add_argument("--note", action="append", default=[],
                        help="a sentence that heads the record's notes (repeatable): what the figures show")
    args = parser.parse_args(argv)
    threads, why = cpu_threads(args.threads)
    torch.set_num_threads(threads)
    print(f"{threads} threads ({why})", file=sys.stderr)
    splits = load_splits(args.data, split_seed=args.split_seed)
    parts = {k: [c.case_id for c in v] for k, v in splits.items()}
    real = _train_both("real", splits["train"], splits["val"], args.recipe, args.out / "real", args.device, threads)
    test = list(splits["test"])
    two_stage = Reconstructor.from_checkpoint(real["coarse"], device=args.device, fine_checkpoint=real["fine"])
    rows = {"coarse": _scores(test, args.device, real["coarse"]),
            "coarse + fine": evaluate_cases(two_stage, test, progress=False)}
    n_train = len(splits["train"])
    results = [_row(f"{label}, trained on {n_train} real cases", r) for label, r in rows.items()]
    raw = {"parts": parts, "real": {k: v for k, v in real.items() if not isinstance(v, Path)}, "rows": rows}
    if args.refit:
        refit_cases = refit_splits(splits)["train"]
        refit = _train_both("refit", refit_cases, [], args.recipe, args.out / "refit", args.device, threads)
        trained_on = f"trained on the {len(refit_cases)} training and validation cases"
        for stages, fine in (("coarse", None), ("coarse + fine", refit["fine"])):
            rows[f"{stages}, refit"] = _scores(test, args.device, refit["coarse"], fine)
            results.append(_row(f"{stages}, {trained_on}", rows[f"{stages}, refit"]))
        raw["refit"] = {k: v for k, v in refit.items() if not isinstance(v, Path)}

    case = test[0]
    started = time.perf_counter()
    defective = case.defective
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    two_stage.reconstruct(defective)
    inference_s = time.perf_counter() - started
    raw.update(read_seconds=read_s, inference_seconds=inference_s)

    ids = [r["case_id"] for r in rows["coarse"]]
    shown = ", refit" if args.refit else ""  # per case: the last-trained stages
    per_case = [[f"{metric} {stages}", *[round(r[key], 3 if key != "hd95" else 2) for r in rows[stages + shown]]]
                for metric, key, stages in (("DSC", "dsc", "coarse"), ("DSC", "dsc", "coarse + fine"),
                                            ("bDSC", "bdsc", "coarse + fine"), ("HD95 (mm)", "hd95", "coarse + fine"))]
    if args.phantoms:
        phantom_splits = load_splits("phantom", args.phantoms, args.phantom_resolution, 0, args.split_seed)
        sim = _train_both("phantoms", phantom_splits["train"], phantom_splits["val"], args.recipe,
                          args.out / f"phantoms{args.phantoms}", args.device, threads)
        sim_rows = _scores(test, args.device, sim["coarse"], sim["fine"])
        results.append(_row(f"coarse + fine, trained on {args.phantoms} phantom subjects only", sim_rows))
        raw["phantoms"] = {"rows": sim_rows, **{k: v for k, v in sim.items() if not isinstance(v, Path)}}
    if args.sim_checkpoints:
        sim_rows = _scores(test, args.device, *args.sim_checkpoints)
        results.append(_row(f"coarse + fine, {args.sim_label}", sim_rows))
        raw["sim_checkpoints"] = {"label": args.sim_label, "rows": sim_rows}
    minutes = real["coarse_minutes"] + real["fine_minutes"]
    training_text = f"{n_train} training and {len(splits['val'])} validation cases (checkpoint choice)"
    if args.refit:
        training_text += (f"; refit: the same recipe on the {len(refit_cases)} training and validation cases "
                          f"together, last checkpoints ({raw['refit']['coarse_minutes']:.1f} + "
                          f"{raw['refit']['fine_minutes']:.1f} min)")
    summary = {"benchmark": "real_data_quality", "parts": {k: len(v) for k, v in parts.items()},
               "training_minutes": round(minutes, 1), "results": results,
               "inference_seconds": round(inference_s, 1), "read_seconds": round(read_s, 1)}
    print(json.dumps(summary, indent=1))
    if args.json is not None:
        columns = ["model", "test cases", "DSC", "bDSC", "HD95 (mm)", "s per case"]
        write_record(args.json, make_record(
            "real_data_quality", "Two-stage reconstruction on real SkullFix skulls",
            [table(f"Test part ({len(test)} cases no training or tuning saw), at the original geometry", columns,
                   results, note=f"Recipe '{args.recipe}': coarse {real['coarse_steps']} steps "
                                 f"({real['coarse_minutes']:.1f} min) + fine {real['fine_steps']} steps "
                                 f"({real['fine_minutes']:.1f} min) = {minutes:.1f} min of training; "
                                 f"{training_text}. "
                                 f"One full-resolution case ({case.case_id}, "
                                 f"{'×'.join(map(str, defective.shape))} voxels): read {read_s:.1f} s, both stages "
                                 f"{inference_s:.1f} s."),
             table(f"Per test case{' (refit stages)' if args.refit else ''}", ["case", *ids], per_case)],
            notes=[*args.note, PUBLISHED], threads=threads,
            device=describe_machine(args.device if args.device != "auto" else "cpu"),
            command=command_line("benchmarks/real_data_quality.py", sys.argv[1:] if argv is None else argv,
                                 folders=("--data", "--out", "--json", "--sim-checkpoints")), raw=raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
