"""``cranialkit export-implant | render``: implant meshes for printing and 3D pictures without a notebook.

Taught in notebook 13_visualize_reconstructions (see :mod:`cranialkit.export` and :mod:`cranialkit.viz.render3d`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _export_implant(args: argparse.Namespace) -> int:
    from cranialkit.export import export_implant, make_readable
    from cranialkit.jobs import atomic_write_text

    try:
        report = export_implant(
            args.implant,
            args.output,
            smooth=args.smooth > 0,
            smooth_iterations=max(args.smooth, 1),
            pass_band=args.pass_band,
        )
    except (ValueError, OSError) as exc:  # VolumeFileError is a ValueError and names the file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    box = report["bounding_box_mm"]
    size = " × ".join(f"{v:.1f}" for v in box["size"])
    print(
        f"wrote {report['path']}: {report['n_faces']} triangles, "
        f"{'watertight' if report['watertight'] else 'NOT watertight'}"
    )
    print(
        f"volume {report['volume_ml']:.2f} ml (voxels {report['voxel_volume_ml']:.2f} ml, "
        f"{100 * report['volume_difference']:+.2f} %)"
    )
    print(
        f"bounding box {size} mm (LPS x, y, z), from {[round(v, 1) for v in box['min']]} "
        f"to {[round(v, 1) for v in box['max']]} mm"
    )
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        make_readable(args.json)
        print(f"report: {args.json}")
    return 0 if report["watertight"] else 1


def _render(args: argparse.Namespace) -> int:
    import imageio.v3 as iio

    from cranialkit.export import make_readable
    from cranialkit.io import read_mask
    from cranialkit.jobs import atomic_path
    from cranialkit.viz.render3d import render_error_map, render_reconstruction

    output = Path(args.output)
    if output.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        print(f"error: {output}: write a .png or .jpg picture", file=sys.stderr)
        return 2
    try:
        defective = read_mask(args.defective)
        implant = read_mask(args.implant, allow_empty=True) if args.implant else None
        truth = read_mask(args.truth) if args.truth else None
        if args.error_map:
            if implant is None or truth is None:
                print("error: --error-map needs --implant and --truth", file=sys.stderr)
                return 2
            image = render_error_map(
                implant, truth, defective=defective, camera=args.camera, window_size=args.size, title=args.title
            )
        else:
            image = render_reconstruction(
                defective,
                implant,
                truth,
                camera=args.camera,
                window_size=args.size,
                truth_style=args.truth_style,
                title=args.title,
            )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with atomic_path(output) as tmp:
        iio.imwrite(tmp, image, extension=output.suffix.lower())
        make_readable(tmp)
    print(f"wrote {output} ({image.shape[1]}×{image.shape[0]} pixels)")
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export-implant`` and ``render`` to the ``cranialkit`` command."""
    export = subparsers.add_parser(
        "export-implant",
        help="write an implant mask as a watertight STL/PLY mesh in mm (for printing)",
        description="Mesh an implant mask (NRRD/NIfTI) into a watertight, smoothed STL or PLY surface in LPS mm; "
        "report its volume (ml) and bounding box (mm).",
    )
    export.add_argument("implant", help="implant mask file (.nrrd, .nii.gz)")
    export.add_argument("-o", "--output", required=True, help="mesh file to write (.stl or .ply)")
    export.add_argument(
        "--smooth",
        type=int,
        default=20,
        metavar="N",
        help="windowed-sinc smoothing iterations (0 = raw marching cubes; default 20)",
    )
    export.add_argument(
        "--pass-band", type=float, default=0.1, help="smoothing pass band, 0-2: lower is smoother (default 0.1)"
    )
    export.add_argument("--json", help="also write the report as JSON to this file")
    export.set_defaults(func=_export_implant)

    render = subparsers.add_parser(
        "render",
        help="render a defective skull with predicted/true implants to a PNG",
        description="3D surface render (pyvista, off screen) of a defective skull, optionally with a predicted "
        "implant (orange-red) and the true implant (teal), or a surface-distance error map.",
    )
    render.add_argument("defective", help="defective skull mask (.nrrd, .nii.gz)")
    render.add_argument("--implant", help="predicted implant mask")
    render.add_argument("--truth", help="true implant mask")
    render.add_argument("-o", "--output", required=True, help="picture to write (.png or .jpg)")
    render.add_argument(
        "--camera", default="auto", help="auto, implant, iso, top, bottom, front, back, left or right (default auto)"
    )
    render.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(800, 800),
        metavar=("WIDTH", "HEIGHT"),
        help="picture size in pixels (default 800 800)",
    )
    render.add_argument("--truth-style", choices=("wireframe", "translucent"), default="wireframe")
    render.add_argument(
        "--error-map", action="store_true", help="colour the predicted implant by its distance (mm) to the true implant"
    )
    render.add_argument("--title", help="text in the upper-left corner")
    render.set_defaults(func=_render)
