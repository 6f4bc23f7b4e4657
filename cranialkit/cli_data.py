"""``cranialkit make-phantoms | download | dataset-info``: the data commands (see notebook 01_data_and_preprocessing).

Each command prints what it did and returns 0; errors reach :func:`cranialkit.cli.main`, which prints one line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cranialkit.cli_args import existing_folder, float_range, int_range, non_negative_int, output_folder, positive_int


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register the data commands on the ``cranialkit`` parser."""
    from cranialkit.data.datasets import LAYOUTS
    from cranialkit.data.phantom import PHANTOM_CLASSES

    make = subparsers.add_parser("make-phantoms", help="generate a phantom dataset (SkullBreak layout, NRRD)")
    make.add_argument("--out", type=output_folder, default=None,
                      help="output folder (default: data_dir()/phantoms/<resolution>_<n>_<seed>)")
    make.add_argument("--n-subjects", type=positive_int, default=10, help="number of subjects (default 10)")
    make.add_argument("--resolution", type=int_range(16, 512), default=64,
                      help="cube side in voxels, 16-512 (default 64)")
    make.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    make.add_argument("--classes", nargs="+", default=list(PHANTOM_CLASSES), choices=PHANTOM_CLASSES,
                      metavar="CLASS", help=f"defect classes (default: all of {', '.join(PHANTOM_CLASSES)})")
    make.set_defaults(func=_make_phantoms)

    download = subparsers.add_parser("download", help="download, verify and unpack a real dataset")
    download.add_argument("name", choices=("skullbreak", "skullfix", "mug500"))
    download.add_argument("--root", type=output_folder, default=None, help="where to put it (default: data_dir())")
    download.add_argument("--timeout", type=float_range(0.0, 3600.0, low_open=True), default=60.0,
                          help="network timeout in seconds")
    download.set_defaults(func=_download)

    info = subparsers.add_parser("dataset-info", help="cases per defect class, shapes and spacing of a dataset")
    info.add_argument("path", type=existing_folder, help="dataset folder (any supported layout)")
    info.add_argument("--layout", default="auto", choices=("auto", *LAYOUTS), help="layout (default: detect)")
    info.add_argument("--check-voxels", action="store_true",
                      help="also read every case and check that implant and defective skull do not overlap (slow)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_dataset_info)


def _make_phantoms(args: argparse.Namespace) -> int:
    from cranialkit.data.datasets import load_dataset, phantom_root
    from cranialkit.data.phantom import make_phantom_dataset

    out = args.out or phantom_root(args.n_subjects, args.resolution, args.seed)
    make_phantom_dataset(out, n_subjects=args.n_subjects, shape=(args.resolution,) * 3,
                         classes=tuple(args.classes), seed=args.seed)
    dataset = load_dataset(out)
    print(f"{len(dataset)} cases ({len(dataset.subjects())} subjects × {len(dataset.classes())} classes) in {out}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from cranialkit.data.download import download_dataset

    print(download_dataset(args.name, root=args.root, timeout=args.timeout))
    return 0


def dataset_info(path: Path, layout: str = "auto", check_voxels: bool = False) -> dict:
    """Summary of a dataset plus shape and spacing (mm) of each class's first case.

    Loading checks every case's headers (one grid per case, no implant that is a copy of its skull); with
    ``check_voxels`` every case is also read and :func:`~cranialkit.data.datasets.check_case_volumes` run on it.
    """
    from cranialkit.data.datasets import check_case_volumes, load_dataset
    from cranialkit.io import read_grid, read_mask

    dataset = load_dataset(path, layout=layout)
    info = dataset.summary()
    grids = {}
    for cls in dataset.classes():
        case = next(c for c in dataset if c.defect_class == cls)
        grid = read_grid(case.defective_path)
        grids[cls] = {"example": case.key, "shape": list(grid.shape),
                      "spacing_mm": [round(float(s), 4) for s in grid.spacing]}
    info["grids"] = grids
    if check_voxels:
        for case in dataset:
            complete = read_mask(case.complete_path) if case.complete_path else None
            implant = read_mask(case.implant_path) if case.implant_path else None
            check_case_volumes(case, case.defective, implant=implant, complete=complete)
        info["voxels_checked"] = len(dataset)
    return info


def _dataset_info(args: argparse.Namespace) -> int:
    info = dataset_info(args.path, args.layout, args.check_voxels)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['root']}: {info['layout']} layout, {info['cases']} cases, {info['subjects']} subjects, "
          f"{info['cases_with_ground_truth']} with ground truth")
    for cls, count in info["cases_per_class"].items():
        grid = info["grids"][cls]
        print(f"  {cls:<16} {count:>5} cases   e.g. {grid['example']}: {grid['shape']} voxels, "
              f"{grid['spacing_mm']} mm")
    if info["healthy_skulls"]:
        print(f"  healthy skulls: {info['healthy_skulls']}")
    checked = f"; voxels of all {info['voxels_checked']} cases checked" if "voxels_checked" in info else ""
    print(f"  OK: every case's files share one grid{checked}")
    return 0
