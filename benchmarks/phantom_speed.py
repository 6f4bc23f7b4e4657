"""Phantom generation speed: one complete skull + the five SkullBreak defects, on one CPU thread.

Prints one JSON object: seconds per case (best of ``--repeats``) at each size, split into skull and defects, and
the time to write a 64³ dataset of 10 subjects × 6 classes (NRRD, as ``make_phantom_dataset`` does).
Target (issue 2): a 256³ case in under 5 s on one core.

    python benchmarks/phantom_speed.py            # 64³, 128³, 256³ (about half a minute)
    python benchmarks/phantom_speed.py --quick    # 64³ and 128³ only, no dataset
    python benchmarks/phantom_speed.py --json docs/benchmarks   # also write its record (benchmarks/report.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from report import describe_machine, make_record, table, write_record

from cranialkit.data.phantom import SKULLBREAK_CLASSES, make_defect, make_phantom_dataset, make_skull


def time_case(size: int, seed: int) -> tuple[float, float]:
    """Seconds to make one skull and its five SkullBreak defects at ``size``³."""
    start = time.perf_counter()
    skull = make_skull(seed, (size, size, size))
    made_skull = time.perf_counter()
    for defect_class in SKULLBREAK_CLASSES:
        make_defect(skull, defect_class, seed)
    return made_skull - start, time.perf_counter() - made_skull


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="cube sizes (voxels)")
    parser.add_argument("--repeats", type=int, default=3, help="cases per size; the best time is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads")
    parser.add_argument("--quick", action="store_true", help="64³ and 128³, two repeats, no dataset")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the result as a benchmark record here (docs/benchmarks/<name>.json)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats = [64, 128], 2
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    make_skull(0, (32, 32, 32))  # warm-up: imports, torch kernels
    results = {}
    for size in args.sizes:
        times = [time_case(size, seed) for seed in range(args.repeats)]
        best = min(times, key=sum)
        results[f"{size}^3"] = {
            "case_s": round(sum(best), 3),
            "skull_s": round(best[0], 3),
            "five_defects_s": round(best[1], 3),
            "median_case_s": round(float(np.median([sum(t) for t in times])), 3),
        }
    dataset_s = None
    if not args.quick:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            make_phantom_dataset(folder, n_subjects=10, shape=(64, 64, 64), seed=0)
            dataset_s = round(time.perf_counter() - start, 2)
    output = {
        "benchmark": "phantom_speed",
        "measured": "seconds for one complete skull + 5 SkullBreak defects (best of repeats)",
        "device": f"cpu ({platform.processor() or platform.machine()}), {args.threads} thread(s)",
        "torch": torch.__version__,
        "parameters": {"sizes": args.sizes, "repeats": args.repeats, "threads": args.threads,
                       "field_of_view_mm": 240.0},
        "results": results,
        "dataset_64^3_10x6_s": dataset_s,
        "target": "256^3 case < 5 s on one core",
    }
    print(json.dumps(output, indent=2))
    if args.json:
        rows = [[f"{key.replace('^3', '³')}", r["case_s"], r["skull_s"], r["five_defects_s"]]
                for key, r in results.items()]
        note = (f"Writing a 64³ dataset of 10 subjects × 6 classes (NRRD, manifest): {dataset_s} s."
                if dataset_s else None)
        write_record(args.json, make_record(
            "phantom_speed", "Phantom generation (`benchmarks/phantom_speed.py`)",
            [table(f"One case = complete skull + the five SkullBreak defects (best of {args.repeats} cases per size)",
                   ["grid", "case (s)", "skull (s)", "5 defects (s)"], rows, note)],
            threads=args.threads, device=f"{describe_machine('cpu')}, torch {torch.__version__}",
            notes=["Target: a 256³ case in under 5 s on one core."], results=output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
