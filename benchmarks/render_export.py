"""Speed of 3D renders and implant export, and the export's fidelity (watertight, volume vs voxels).

    python benchmarks/render_export.py                        # phantoms at 64³ and 128³
    python benchmarks/render_export.py --real <SkullFix folder>  # and the first real case of that dataset
    python benchmarks/render_export.py --quick                # phantoms at 64³ only; the real implant's export only
    python benchmarks/render_export.py --json docs/benchmarks   # also write its record (benchmarks/report.py)

For each phantom defect class: export time, the mesh volume's relative difference to the voxel volume
(count × voxel volume) and watertightness of the written STL; then the time of one reconstruction render and one
error-map render (600×600, off screen). With ``--real``, the same figures for the first case of a real dataset
(e.g. SkullFix 000: oblique, 512² × 237, 0.45 × 0.45 × 0.63 mm). Prints one JSON object.
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
from scipy import ndimage

os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")

from report import describe_machine, make_record, table, write_record  # noqa: E402

from cranialkit.data.datasets import load_dataset  # noqa: E402
from cranialkit.data.phantom import PHANTOM_CLASSES, make_defect, make_skull  # noqa: E402
from cranialkit.export import export_implant  # noqa: E402
from cranialkit.viz.render3d import render_error_map, render_reconstruction  # noqa: E402


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def _imperfect(implant, defective):
    """A plausible wrong prediction for the error map: the implant grown by one voxel, minus the skull."""
    return implant.with_array(ndimage.binary_dilation(implant.array) & ~defective.array)


def bench_case(defective, implant, folder: Path, name: str, window: int) -> dict:
    report, export_s = _timed(export_implant, implant, folder / f"{name}.stl")
    _, render_s = _timed(render_reconstruction, defective, implant, implant, window_size=(window, window))
    _, error_s = _timed(
        render_error_map, _imperfect(implant, defective), implant, defective=defective, window_size=(window, window)
    )
    return {
        "implant_voxels": int(implant.array.sum()),
        "volume_ml": round(report["volume_ml"], 3),
        "voxel_volume_ml": round(report["voxel_volume_ml"], 3),
        "volume_difference_percent": round(100 * report["volume_difference"], 2),
        "watertight": report["watertight"],
        "n_faces": report["n_faces"],
        "export_s": round(export_s, 2),
        "render_s": round(render_s, 2),
        "error_map_s": round(error_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64³ phantoms; real case: export only")
    parser.add_argument("--resolutions", type=int, nargs="+", default=None, help="phantom grids (default 64 128)")
    parser.add_argument("--window", type=int, default=600, help="render size in pixels")
    parser.add_argument("--real", type=Path, default=None, help="a real dataset folder: also its first case")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the result as a benchmark record here (docs/benchmarks/<name>.json)")
    args = parser.parse_args()
    resolutions = args.resolutions or ([64] if args.quick else [64, 128])
    result: dict = {
        "benchmark": "render_export",
        "what": "implant export (STL, watertight, volume vs voxels) and off-screen render times",
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "parameters": {"resolutions": resolutions, "window": args.window, "quick": args.quick},
        "phantom": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for resolution in resolutions:
            skull = make_skull(0, shape=(resolution,) * 3)
            per_class = {}
            for defect_class in PHANTOM_CLASSES:
                defective, implant = make_defect(skull, defect_class, seed=0)
                per_class[defect_class] = bench_case(defective, implant, folder, defect_class, args.window)
            differences = [abs(c["volume_difference_percent"]) for c in per_class.values()]
            result["phantom"][str(resolution)] = {
                "classes": per_class,
                "max_abs_volume_difference_percent": max(differences),
                "all_watertight": all(c["watertight"] for c in per_class.values()),
            }
        if args.real is not None:
            case = load_dataset(args.real)[0]
            implant, read_s = _timed(lambda: case.implant)
            result["real_case"] = case.key
            if args.quick:
                report, export_s = _timed(export_implant, implant, folder / "real.stl")
                result["real"] = {
                    "read_s": round(read_s, 2),
                    "volume_difference_percent": round(100 * report["volume_difference"], 3),
                    "volume_ml": round(report["volume_ml"], 3),
                    "bounding_box_size_mm": [round(v, 1) for v in report["bounding_box_mm"]["size"]],
                    "watertight": report["watertight"],
                    "export_s": round(export_s, 2),
                }
            else:
                real = bench_case(case.defective, implant, folder, "real", args.window)
                real["read_s"] = round(read_s, 2)
                result["real"] = real
    print(json.dumps(result, indent=1))
    if args.json:
        write_record(args.json, render_export_record(result, args.window))


def render_export_record(result: dict, window: int) -> dict:
    """The benchmark record (benchmarks/report.py): one row per phantom grid, and the real case."""
    def spread(cases: dict, key: str) -> str:
        values = [c[key] for c in cases.values()]
        return f"{min(values):g}–{max(values):g}"

    rows = []
    for resolution, entry in result["phantom"].items():
        cases = entry["classes"]
        rows.append([f"phantom, {len(cases)} classes", f"{resolution}³",
                     f"{entry['max_abs_volume_difference_percent']} %",
                     f"{sum(c['watertight'] for c in cases.values())}/{len(cases)}", spread(cases, "export_s"),
                     spread(cases, "render_s"), spread(cases, "error_map_s")])
    if "real" in result:
        real = result["real"]
        voxels = f"{real['implant_voxels']} implant voxels" if "implant_voxels" in real else "—"
        rows.append([f"real {result['real_case']}", voxels,
                     f"{abs(real['volume_difference_percent'])} %", "yes" if real["watertight"] else "no",
                     real["export_s"], real.get("render_s"), real.get("error_map_s")])
    return make_record("render_export", "3D rendering and implant export (`benchmarks/render_export.py`)",
                       [table(f"Export fidelity (mesh volume of the written STL vs the voxel volume); renders "
                              f"{window}×{window}", ["case", "grid", "max |volume difference|", "watertight",
                                                    "export s", "render s", "error map s"], rows)],
                       threads=torch.get_num_threads(), device=describe_machine("cpu"), results=result)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
