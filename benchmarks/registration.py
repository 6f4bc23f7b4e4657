"""Benchmark of cranialkit.registration: seconds per pair, batched pairs/s, peak memory and Dice after registration.

Pairs are phantom complete skulls (different subjects) put on a cubic grid around the skull
(:func:`cranialkit.preprocessing.to_grid`), optionally also real SkullFix complete skulls (``--skullfix``). On CPU
the same pairs are registered with SimpleITK (affine + B-spline, mean squares on smoothed masks) when it is
installed (the ``bench`` extra), for a side-by-side Dice and seconds per pair. Prints one JSON object.

    python benchmarks/registration.py --quick                 # 64³, 2 pairs, about a minute on 2 CPU cores
    python benchmarks/registration.py --resolutions 64 128    # the CPU figures
    python benchmarks/registration.py --resolutions 128 256 --batch-size 4 --device cuda   # GPU figures
    python benchmarks/registration.py --json docs/benchmarks   # also write its record (benchmarks/report.py)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from report import describe_machine, make_record, table, write_record

from cranialkit.config import device as resolve_device
from cranialkit.data.phantom import make_skull
from cranialkit.preprocessing import to_grid
from cranialkit.registration import DEFAULT_ALPHA, RegistrationConfig, register, summarize


def phantom_pairs(resolution: int, n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` (source, target) pairs of distinct phantom subjects at ``resolution``³ (bool arrays)."""
    skulls = [to_grid(make_skull(seed, (resolution,) * 3), (resolution,) * 3)[0].array.astype(bool)
              for seed in range(1, n_pairs + 2)]
    return np.stack(skulls[:-1]), np.stack(skulls[1:])


def skullfix_pairs(root: Path, resolution: int, n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of consecutive real SkullFix complete skulls (training_set/complete_skull/*.nrrd)."""
    from cranialkit.io import read_mask

    files = sorted((root / "training_set" / "complete_skull").glob("*.nrrd"))[: n_pairs + 1]
    if len(files) < 2:
        raise SystemExit(f"{root}: need at least 2 files in training_set/complete_skull/")
    skulls = [to_grid(read_mask(f), (resolution,) * 3)[0].array.astype(bool) for f in files]
    return np.stack(skulls[:-1]), np.stack(skulls[1:])


def _peak_memory_mb(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; the whole process so far


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench_cranialkit(sources, targets, config, dev, batch_size: int) -> dict:
    """One pair at a time (seconds per pair), then ``batch_size`` pairs at once (pairs per second)."""
    register(sources[:1], targets[:1], RegistrationConfig(levels=2, iterations=2, affine_iterations=2), device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rows, cpu_seconds = [], []
    for source, target in zip(sources, targets):
        _sync(dev)
        cpu = time.process_time()
        result = register(source, target, config, device=dev)
        _sync(dev)
        cpu_seconds.append(time.process_time() - cpu)
        rows.extend(summarize(result, source, target))
    out = {
        "seconds_per_pair": float(np.mean([r["seconds"] for r in rows])),
        "cpu_seconds_per_pair": float(np.mean(cpu_seconds)),
        "dice": [round(r["dice"], 4) for r in rows],
        "dice_affine": [round(r["dice_affine"], 4) for r in rows],
        "dice_before": [round(r["dice_before"], 4) for r in rows],
        "folding_percent": [round(r["folding_percent"], 4) for r in rows],
        "peak_memory_mb_single": round(_peak_memory_mb(dev), 1),
    }
    if batch_size > 1 and len(sources) >= batch_size:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        _sync(dev)
        start = time.perf_counter()
        batched = register(sources[:batch_size], targets[:batch_size], config, device=dev)
        _sync(dev)
        seconds = time.perf_counter() - start
        out["batch_size"] = batch_size
        out["batched_pairs_per_second"] = batch_size / seconds
        out["batched_dice"] = [round(r["dice"], 4) for r in summarize(batched, sources[:batch_size],
                                                                       targets[:batch_size])]
        out["peak_memory_mb_batched"] = round(_peak_memory_mb(dev), 1)
    return out


def alpha_sweep(sources, targets, alphas, dev) -> list[dict]:
    """All pairs at once for each alpha: mean Dice, affine Dice and folding %."""
    rows = []
    for alpha in alphas:
        summary = summarize(register(sources, targets, RegistrationConfig(alpha=alpha), device=dev), sources, targets)
        rows.append({"alpha": alpha, "dice": [round(r["dice"], 4) for r in summary],
                     "folding_percent": [round(r["folding_percent"], 4) for r in summary],
                     "std_log_jacobian": [round(r["std_log_jacobian"], 3) for r in summary]})
    return rows


def bench_simpleitk(sources, targets) -> dict | None:
    """SimpleITK: moments-centred affine, then a B-spline (mesh 8³) by LBFGSB, 3 resolution levels, mean squares
    on masks smoothed by 1 voxel, metric on a random 20 % of the voxels (with all voxels the B-spline stage took
    520 s per 64³ pair on one thread); the source mask is resampled linearly and thresholded at 0.5."""
    try:
        import SimpleITK as sitk
    except ImportError:
        return None
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(torch.get_num_threads())
    dice, seconds = [], []
    for source, target in zip(sources, targets):
        start = time.perf_counter()
        fixed = sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(target.astype(np.float32)), 1.0)
        moving = sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(source.astype(np.float32)), 1.0)
        initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                                    sitk.CenteredTransformInitializerFilter.MOMENTS)
        affine = sitk.ImageRegistrationMethod()
        affine.SetMetricAsMeanSquares()
        affine.SetMetricSamplingStrategy(affine.RANDOM)
        affine.SetMetricSamplingPercentage(0.2, 1)
        affine.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 100)
        affine.SetOptimizerScalesFromPhysicalShift()
        affine.SetShrinkFactorsPerLevel([4, 2, 1])
        affine.SetSmoothingSigmasPerLevel([2, 1, 0])
        affine.SetInitialTransform(initial, inPlace=False)
        affine.SetInterpolator(sitk.sitkLinear)
        affine_transform = affine.Execute(fixed, moving)
        bspline = sitk.BSplineTransformInitializer(fixed, [8, 8, 8])
        deformable = sitk.ImageRegistrationMethod()
        deformable.SetMetricAsMeanSquares()
        deformable.SetMetricSamplingStrategy(deformable.RANDOM)
        deformable.SetMetricSamplingPercentage(0.2, 1)
        deformable.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-6, numberOfIterations=60,
                                        maximumNumberOfFunctionEvaluations=300)
        deformable.SetShrinkFactorsPerLevel([4, 2, 1])
        deformable.SetSmoothingSigmasPerLevel([2, 1, 0])
        deformable.SetMovingInitialTransform(affine_transform)
        deformable.SetInitialTransform(bspline, inPlace=True)
        deformable.SetInterpolator(sitk.sitkLinear)
        deformable.Execute(fixed, moving)
        composite = sitk.CompositeTransform([affine_transform, bspline])
        mask = sitk.GetImageFromArray(source.astype(np.float32))
        warped = sitk.GetArrayFromImage(sitk.Resample(mask, fixed, composite, sitk.sitkLinear, 0.0)) >= 0.5
        seconds.append(time.perf_counter() - start)
        dice.append(2 * (warped & target).sum() / (warped.sum() + target.sum()))
    return {"method": "SimpleITK affine + B-spline (mesh 8, LBFGSB ≤ 60 it, 3 levels), mean squares on 20 % of voxels",
            "version": sitk.Version_VersionString(), "seconds_per_pair": float(np.mean(seconds)),
            "dice": [round(float(d), 4) for d in dice]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64³ only, 2 pairs")
    parser.add_argument("--resolutions", type=int, nargs="+", default=None)
    parser.add_argument("--pairs", type=int, default=2, help="phantom pairs per resolution")
    parser.add_argument("--batch-size", type=int, default=1, help="pairs registered at once for pairs/s")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--skullfix", type=Path, default=None, help="SkullFix root: also register real skulls")
    parser.add_argument("--no-phantoms", action="store_true", help="only the real skulls of --skullfix")
    parser.add_argument("--no-simpleitk", action="store_true")
    parser.add_argument("--sweep", type=float, nargs="*", default=None, help="also sweep these alphas (all pairs)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the result as a benchmark record here (docs/benchmarks/<name>.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    resolutions = args.resolutions or ([64] if args.quick else [64, 128])
    config = RegistrationConfig(alpha=args.alpha)
    report = {
        "benchmark": "registration",
        "what": "pairwise registration of complete skull masks (affine + dense displacement field)",
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "alpha": args.alpha,
        "config": {k: v for k, v in vars(config).items()},
        "results": [],
    }
    datasets = [] if args.no_phantoms else [("phantom", phantom_pairs)]
    if args.skullfix is not None:
        datasets.append(("skullfix", lambda r, n: skullfix_pairs(args.skullfix, r, n)))
    for name, make in datasets:
        for resolution in resolutions:
            sources, targets = make(resolution, max(args.pairs, args.batch_size))
            entry = {"data": name, "resolution": resolution, "pairs": len(sources)}
            entry["cranialkit"] = bench_cranialkit(sources, targets, config, dev, args.batch_size)
            if args.sweep:
                entry["alpha_sweep"] = alpha_sweep(sources, targets, args.sweep, dev)
            if dev.type == "cpu" and not args.no_simpleitk:
                entry["simpleitk"] = bench_simpleitk(sources, targets)
            report["results"].append(entry)
            print(json.dumps(entry), file=sys.stderr, flush=True)  # partial results survive an interruption
    print(json.dumps(report, indent=1))
    if args.json:
        write_record(args.json, registration_record(report, dev))


def _pairs(values: list) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


def registration_record(report: dict, dev: torch.device) -> dict:
    """The benchmark record (benchmarks/report.py) of a run: one row per data set and grid, one sweep table."""
    rows, sweeps = [], []
    for entry in report["results"]:
        ck, itk = entry["cranialkit"], entry.get("simpleitk")
        rows.append([entry["data"], f"{entry['resolution']}³", round(ck["seconds_per_pair"], 2),
                     round(ck["batched_pairs_per_second"], 2) if "batched_pairs_per_second" in ck else None,
                     f"{_pairs(ck['dice'])} ({_pairs(ck['dice_affine'])})", _pairs(ck["folding_percent"]),
                     round(itk["seconds_per_pair"], 1) if itk else None, _pairs(itk["dice"]) if itk else None])
        for row in entry.get("alpha_sweep", []):
            sweeps.append([entry["data"], f"{entry['resolution']}³", row["alpha"], _pairs(row["dice"]),
                           _pairs(row["folding_percent"]), _pairs(row["std_log_jacobian"])])
    tables = [table(f"alpha {report['alpha']:g}, {report['results'][0]['pairs'] if report['results'] else 0} pairs "
                    "per row", ["data", "grid", "s / pair", "batched pairs/s", "Dice after (affine only)",
                                "folding %", "SimpleITK s / pair", "SimpleITK Dice"], rows)]
    if sweeps:
        tables.append(table("Alpha sweep", ["data", "grid", "alpha", "Dice", "folding %", "std log det J"], sweeps))
    name = "registration_gpu" if dev.type == "cuda" else "registration_cpu"
    where = "a GPU" if dev.type == "cuda" else "the CPU"
    return make_record(name, f"Registration on {where} (`benchmarks/registration.py`)", tables,
                       threads=report["torch_threads"], device=describe_machine(dev), results=report)


if __name__ == "__main__":
    main()
