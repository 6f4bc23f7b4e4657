"""``cranialkit make-phantoms | download | dataset-info``: the data commands (see notebook 01_data_and_preprocessing).

Each command prints what it did and returns 0, or prints a one-line error and returns 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register the data commands on the ``cranialkit`` parser."""
    from cranialkit.data.phantom import PHANTOM_CLASSES

    make = subparsers.add_parser("make-phantoms", help="generate a phantom dataset (SkullBreak layout, NRRD)")
    make.add_argument("--out", type=Path, default=None,
                      help="output folder (default: data_dir()/phantoms/<resolution>_<n>_<seed>)")
    make.add_argument("--n-subjects", type=int, default=10, help="number of subjects (default 10)")
    make.add_argument("--resolution", type=int, default=64, help="cube side in voxels (default 64)")
    make.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    make.add_argument("--classes", nargs="+", default=list(PHANTOM_CLASSES), choices=PHANTOM_CLASSES,
                      metavar="CLASS", help=f"defect classes (default: all of {', '.join(PHANTOM_CLASSES)})")
    make.set_defaults(func=_make_phantoms)

    download = subparsers.add_parser("download", help="download, verify and unpack a real dataset")
    download.add_argument("name", choices=("skullbreak", "skullfix", "mug500"))
    download.add_argument("--root", type=Path, default=None, help="where to put it (default: data_dir())")
    download.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
    download.set_defaults(func=_download)

    info = subparsers.add_parser("dataset-info", help="cases per defect class, shapes and spacing of a dataset")
    info.add_argument("path", type=Path, help="dataset folder (any supported layout)")
    info.add_argument("--layout", default="auto", help="layout (default: detect)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_dataset_info)


def _make_phantoms(args: argparse.Namespace) -> int:
    from cranialkit.data.datasets import load_dataset, phantom_root
    from cranialkit.data.phantom import make_phantom_dataset

    try:
        out = args.out or phantom_root(args.n_subjects, args.resolution, args.seed)
        make_phantom_dataset(out, n_subjects=args.n_subjects, shape=(args.resolution,) * 3,
                             classes=tuple(args.classes), seed=args.seed)
        dataset = load_dataset(out)
    except ValueError as exc:
        print(f"error: {exc}")
        return 1
    print(f"{len(dataset)} cases ({len(dataset.subjects())} subjects × {len(dataset.classes())} classes) in {out}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from cranialkit.data.datasets import DatasetLayoutError
    from cranialkit.data.download import DownloadError, download_dataset

    try:
        path = download_dataset(args.name, root=args.root, timeout=args.timeout)
    except (DownloadError, DatasetLayoutError) as exc:
        print(f"error: {exc}")
        return 1
    print(path)
    return 0


def dataset_info(path: Path, layout: str = "auto") -> dict:
    """Summary of a dataset plus shape and spacing (mm) of each class's first case (headers only)."""
    from cranialkit.data.datasets import _header_grid, load_dataset

    dataset = load_dataset(path, layout=layout)
    info = dataset.summary()
    grids = {}
    for cls in dataset.classes():
        case = next(c for c in dataset if c.defect_class == cls)
        shape, spacing = _header_grid(case.defective_path)
        grids[cls] = {"example": case.key, "shape": list(shape), "spacing_mm": [round(float(s), 4) for s in spacing]}
    info["grids"] = grids
    return info


def _dataset_info(args: argparse.Namespace) -> int:
    from cranialkit.data.datasets import DatasetLayoutError
    from cranialkit.io import VolumeFileError

    try:
        info = dataset_info(args.path, args.layout)
    except (DatasetLayoutError, VolumeFileError) as exc:
        print(f"error: {exc}")
        return 1
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
    return 0
