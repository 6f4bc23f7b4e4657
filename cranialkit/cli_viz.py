"""``cranialkit export-implant | render``: implant meshes for printing and 3D pictures without a notebook.

Taught in notebook 13_visualize_reconstructions (see :mod:`cranialkit.export` and :mod:`cranialkit.viz.render3d`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cranialkit.cli_args import existing_file, float_range, int_range, non_negative_int, output_file
from cranialkit.errors import UsageError


def _export_implant(args: argparse.Namespace) -> int:
    from cranialkit.export import export_implant
    from cranialkit.jobs import atomic_write_text

    report = export_implant(
        args.implant,
        args.output,
        smooth=args.smooth > 0,
        smooth_iterations=max(args.smooth, 1),
        pass_band=args.pass_band,
    )
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
        print(f"report: {args.json}")
    return 0 if report["watertight"] else 1


def _render(args: argparse.Namespace) -> int:
    import imageio.v3 as iio

    from cranialkit.io import read_mask
    from cranialkit.jobs import atomic_path
    from cranialkit.viz.render3d import render_error_map, render_reconstruction

    output = Path(args.output)
    if args.error_map and (args.implant is None or args.truth is None):
        raise UsageError("--error-map: needs --implant and --truth")
    defective = read_mask(args.defective)
    implant = read_mask(args.implant, allow_empty=True) if args.implant else None
    truth = read_mask(args.truth) if args.truth else None
    if args.error_map:
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
    with atomic_path(output) as tmp:
        iio.imwrite(tmp, image, extension=output.suffix.lower())
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
    export.add_argument("implant", type=existing_file, help="implant mask file (.nrrd, .nii.gz)")
    export.add_argument("-o", "--output", required=True, type=output_file(".stl", ".ply"),
                        help="mesh file to write (.stl or .ply)")
    export.add_argument(
        "--smooth",
        type=non_negative_int,
        default=20,
        metavar="N",
        help="windowed-sinc smoothing iterations (0 = raw marching cubes; default 20)",
    )
    export.add_argument(
        "--pass-band", type=float_range(0.0, 2.0, low_open=True), default=0.1,
        help="smoothing pass band, above 0 and at most 2: lower is smoother (default 0.1)"
    )
    export.add_argument("--json", type=output_file(".json"), help="also write the report as JSON to this file")
    export.set_defaults(func=_export_implant)

    render = subparsers.add_parser(
        "render",
        help="render a defective skull with predicted/true implants to a PNG",
        description="3D surface render (pyvista, off screen) of a defective skull, optionally with a predicted "
        "implant (orange-red) and the true implant (teal), or a surface-distance error map.",
    )
    render.add_argument("defective", type=existing_file, help="defective skull mask (.nrrd, .nii.gz)")
    render.add_argument("--implant", type=existing_file, help="predicted implant mask")
    render.add_argument("--truth", type=existing_file, help="true implant mask")
    render.add_argument("-o", "--output", required=True, type=output_file(".png", ".jpg", ".jpeg"),
                        help="picture to write (.png or .jpg)")
    render.add_argument(
        "--camera",
        default="auto",
        choices=("auto", "implant", "iso", "top", "bottom", "front", "back", "left", "right"),
        help="auto, implant, iso, top, bottom, front, back, left or right (default auto)"
    )
    render.add_argument(
        "--size",
        type=int_range(64, 8192),
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
