"""Speed of 3D renders and implant export, and the export's fidelity (watertight, volume vs voxels).

    python benchmarks/render_export.py               # phantoms at 64³ and 128³, real SkullFix 000 when present
    python benchmarks/render_export.py --quick       # phantoms at 64³ only, the real implant's export only

For each phantom defect class: export time, the mesh volume's relative difference to the voxel volume
(count × voxel volume) and watertightness of the written STL; then the time of one reconstruction render and one
error-map render (600×600, off screen). On the real SkullFix case 000 (oblique, 512² × 237, 0.45 × 0.45 × 0.63 mm),
read from ``../shared/data`` beside the repository: the same figures. Prints one JSON object.
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
from scipy import ndimage

os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")

from cranialkit.data.phantom import PHANTOM_CLASSES, make_defect, make_skull  # noqa: E402
from cranialkit.export import export_implant  # noqa: E402
from cranialkit.io import read_mask  # noqa: E402
from cranialkit.viz.render3d import render_error_map, render_reconstruction  # noqa: E402

SKULLFIX = Path(__file__).resolve().parents[2] / "shared" / "data" / "skullfix_sample" / "training_set"


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
        if (SKULLFIX / "implant" / "000.nrrd").is_file():
            implant, read_s = _timed(read_mask, SKULLFIX / "implant" / "000.nrrd")
            if args.quick:
                report, export_s = _timed(export_implant, implant, folder / "real.stl")
                result["skullfix_000"] = {
                    "read_s": round(read_s, 2),
                    "volume_difference_percent": round(100 * report["volume_difference"], 3),
                    "volume_ml": round(report["volume_ml"], 3),
                    "bounding_box_size_mm": [round(v, 1) for v in report["bounding_box_mm"]["size"]],
                    "watertight": report["watertight"],
                    "export_s": round(export_s, 2),
                }
            else:
                defective = read_mask(SKULLFIX / "defective_skull" / "000.nrrd")
                real = bench_case(defective, implant, folder, "real", args.window)
                real["read_s"] = round(read_s, 2)
                result["skullfix_000"] = real
        else:
            result["skullfix_000"] = f"not found: {SKULLFIX}"
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
