"""3D surface renders of skulls and implants with pyvista: static images headless, interactive (trame) on request.

Taught in notebook 13_visualize_reconstructions.

A binary mask becomes a triangle surface by marching cubes (``skimage.measure.marching_cubes``, Lorensen's method,
which gives closed surfaces on binary data) on the mask padded by one block, so that objects touching the grid's
edge are closed too. Vertices are mapped to LPS world coordinates in mm with the volume's spacing, origin and
direction (``world = origin + direction @ (spacing * index)``), so that oblique scans come out right. The
staircase of the voxels is removed by windowed-sinc smoothing (pyvista's ``smooth_taubin``), which, unlike
Laplacian smoothing, does not shrink the surface.

Renders return RGB images (``numpy.ndarray``, ``(height, width, 3)``, uint8) so that a notebook shows them with
:func:`show_image` even without a display. ``interactive=True`` returns the pyvista ``Plotter`` instead; show it
with ``plotter.show(jupyter_backend="trame")`` in JupyterLab (needs the ``lab`` extra).

Colours: defective skull ivory, predicted implant orange-red, true implant teal (wireframe or translucent).
World axes in LPS: +x = patient's left, +y = posterior, +z = superior; named cameras use them.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyvista as pv
import vtk
from matplotlib.figure import Figure
from skimage.measure import block_reduce, marching_cubes

from cranialkit.jobs import atomic_path
from cranialkit.volume import Volume

if os.environ.get("PYVISTA_OFF_SCREEN", "").lower() == "true":
    pv.OFF_SCREEN = True
if not os.environ.get("DISPLAY"):
    # Headless: VTK first tries an X window and logs "bad X server connection" before it falls back to EGL or
    # OSMesa; that expected warning would clutter every notebook output. Errors are still printed.
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_ERROR)

SKULL_COLOR = "#efe6cf"  # ivory
PREDICTED_COLOR = "#e4572e"  # orange-red
TRUTH_COLOR = "#21b5a3"  # teal
CONTEXT_SKULL_COLOR = "#8c8f96"  # grey skull behind an error map
BACKGROUND = "#1e222a"  # dark slate: ivory and colours stand out, white text is readable
TEXT_COLOR = "white"
ERROR_BAR_TITLE = "distance to true implant (mm)"
ERROR_BAR_SHORT_TITLE = "distance (mm)"  # for windows under 300 pixels, where the long title is wider than the picture
WIREFRAME_MAX_FACES = 3000  # the true implant's wireframe is decimated to about this many triangles

# Camera directions (from the focal point towards the camera) and view-up vectors, in LPS world coordinates.
CAMERAS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "iso": ((0.55, -0.75, 0.6), (0.0, 0.0, 1.0)),  # from anterior-left-superior
    "top": ((0.0, 0.0, 1.0), (0.0, -1.0, 0.0)),  # from superior, face up in the image
    "bottom": ((0.0, 0.0, -1.0), (0.0, -1.0, 0.0)),
    "front": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),  # from anterior
    "back": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "left": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),  # looking at the patient's left side
    "right": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
}

MaskLike = np.ndarray | Volume


# --------------------------------------------------------------------------------------------------------------
# masks -> meshes
# --------------------------------------------------------------------------------------------------------------


def _mask_and_geometry(
    mask: MaskLike,
    spacing: Sequence[float] | None,
    origin: Sequence[float] | None,
    direction: np.ndarray | None,
    name: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The bool array and its geometry; explicit arguments override a Volume's own geometry."""
    if isinstance(mask, Volume):
        array = mask.array
        spacing = mask.spacing if spacing is None else spacing
        origin = mask.origin if origin is None else origin
        direction = mask.direction if direction is None else direction
    else:
        array = np.asarray(mask)
    if array.ndim != 3:
        raise ValueError(f"{name}: expected a 3D mask, got shape {array.shape}")
    if array.dtype != bool:
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name}: not a binary mask (values other than 0 and 1)")
        array = array.astype(bool)
    spacing_arr = np.ones(3) if spacing is None else np.asarray(spacing, dtype=float).reshape(3)
    if np.any(spacing_arr <= 0) or not np.all(np.isfinite(spacing_arr)):
        raise ValueError(f"{name}: spacing must be positive and finite (mm), got {spacing_arr}")
    origin_arr = np.zeros(3) if origin is None else np.asarray(origin, dtype=float).reshape(3)
    direction_arr = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    return array, spacing_arr, origin_arr, direction_arr


def auto_downsample(mask: np.ndarray, max_grid: int = 160) -> int:
    """Integer block size so that the mask's bounding box is at most ``max_grid`` blocks along each axis.

    Used for pictures of full-resolution scans (512³): a 0.45 mm skull rendered from 1.35 mm blocks looks the
    same and meshes ten times faster. Exports always use the full grid.
    """
    if not mask.any():
        return 1
    index = np.nonzero(mask)
    extent = max(int(ax.max() - ax.min() + 1) for ax in index)
    return max(1, math.ceil(extent / max_grid))


def signed_volume(mesh: pv.PolyData) -> float:
    """Signed volume enclosed by a closed triangle mesh (mm³); positive when the faces' normals point outward."""
    faces = mesh.faces.reshape(-1, 4)[:, 1:] if mesh.n_cells else np.zeros((0, 3), dtype=int)
    p = np.asarray(mesh.points, dtype=float)
    a, b, c = p[faces[:, 0]], p[faces[:, 1]], p[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def is_watertight(mesh: pv.PolyData) -> bool:
    """True when every edge is shared by exactly two triangles (no holes, no non-manifold edges)."""
    if mesh.n_cells == 0:
        return False
    bad = mesh.extract_feature_edges(
        boundary_edges=True, non_manifold_edges=True, feature_edges=False, manifold_edges=False
    )
    return bad.n_cells == 0


def mask_to_mesh(
    mask: MaskLike,
    spacing: Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    direction: np.ndarray | None = None,
    smooth_iterations: int = 30,
    pass_band: float = 0.03,
    downsample: int = 1,
    upsample: int = 1,
    name: str = "mask",
) -> pv.PolyData:
    """Closed triangle surface of a binary mask in LPS world coordinates (mm), outward-facing.

    ``mask``: a 3D bool array (with ``spacing``/``origin``/``direction``; defaults 1 mm, 0, identity) or a
    :class:`~cranialkit.volume.Volume` (its geometry, unless overridden). ``smooth_iterations``: windowed-sinc
    (Taubin) smoothing steps, 0 for the raw marching-cubes staircase; ``pass_band`` (0–2): lower smooths more.
    ``downsample``: block size (voxels) to mesh a coarser "any voxel set" grid, for fast pictures.
    ``upsample``: split each voxel into ``upsample³`` sub-voxels first (same object), so that marching cubes
    cuts smaller corners — thin masks on coarse grids (a 2-voxel plate) then keep their volume.
    Raises ``ValueError`` naming ``name`` for a non-binary or empty mask.
    """
    array, spacing_arr, origin_arr, direction_arr = _mask_and_geometry(mask, spacing, origin, direction, name)
    if not array.any():
        raise ValueError(f"{name}: empty mask (no voxel set), there is no surface to mesh")
    downsample, upsample = int(downsample), int(upsample)
    if downsample < 1 or upsample < 1:
        raise ValueError(f"downsample and upsample must be positive integers, got {downsample} and {upsample}")
    if downsample > 1 and upsample > 1:
        raise ValueError("give downsample or upsample, not both")
    # Crop to the bounding box (fast on 512³ scans), remember the offset in voxels.
    index = np.nonzero(array)
    low = np.array([ax.min() for ax in index])
    high = np.array([ax.max() + 1 for ax in index])
    cropped = array[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    if downsample > 1:
        cropped = block_reduce(cropped, (downsample,) * 3, np.max)
    if upsample > 1:
        for axis in range(3):
            cropped = np.repeat(cropped, upsample, axis=axis)
    padded = np.pad(cropped, 1).astype(np.float32)  # closes surfaces at the crop's edge
    verts, faces, _, _ = marching_cubes(padded, level=0.5, method="lorensen")
    grid = verts - 1.0  # indices in the (down- or up-sampled) cropped grid
    if downsample > 1:  # block b covers voxels b*d .. b*d + d - 1: its centre is b*d + (d - 1) / 2
        grid = grid * downsample + (downsample - 1) / 2.0
    if upsample > 1:  # sub-voxel q of size 1/u is centred at (q + 0.5) / u - 0.5 in voxel units
        grid = (grid + 0.5) / upsample - 0.5
    index_coords = grid + low  # voxel indices (i, j, k) in the original grid
    world = origin_arr + (index_coords * spacing_arr) @ direction_arr.T
    mesh = pv.PolyData.from_regular_faces(world, faces.astype(np.int64))
    if smooth_iterations > 0:
        mesh = mesh.smooth_taubin(n_iter=int(smooth_iterations), pass_band=pass_band, normalize_coordinates=True)
    if signed_volume(mesh) < 0:  # orientation depends on the winding and on a mirrored direction matrix
        mesh = pv.PolyData.from_regular_faces(np.asarray(mesh.points), mesh.regular_faces[:, ::-1].copy())
    return mesh


# --------------------------------------------------------------------------------------------------------------
# scene building
# --------------------------------------------------------------------------------------------------------------


def _to_volume(mask: MaskLike, spacing: Sequence[float] | None, name: str, like: Volume | None = None) -> Volume:
    """A bool Volume: a Volume keeps its geometry; an array takes ``spacing`` (mm) and ``like``'s origin/direction."""
    if isinstance(mask, Volume):
        array, spacing_arr, origin_arr, direction_arr = _mask_and_geometry(mask, None, None, None, name)
    else:
        if spacing is None and like is not None:
            spacing = like.spacing
        origin = None if like is None else like.origin
        direction = None if like is None else like.direction
        array, spacing_arr, origin_arr, direction_arr = _mask_and_geometry(mask, spacing, origin, direction, name)
    return Volume(array, spacing_arr, origin_arr, direction_arr)


def _first_volume(*masks: MaskLike | None) -> Volume | None:
    return next((m for m in masks if isinstance(m, Volume)), None)


def _mesh_for_render(volume: Volume | None, smooth_iterations: int, max_grid: int, name: str) -> pv.PolyData | None:
    """A (possibly block-downsampled) surface for a picture, or None for a missing or empty mask."""
    if volume is None or not volume.array.any():
        return None
    return mask_to_mesh(
        volume, smooth_iterations=smooth_iterations, downsample=auto_downsample(volume.array, max_grid), name=name
    )


def _check_same_shape(named: dict[str, MaskLike | None]) -> None:
    """Arrays share the grid of the first Volume (or of each other); Volumes may differ, they live in world mm."""
    given = {k: v for k, v in named.items() if v is not None}
    arrays = {k: v for k, v in given.items() if not isinstance(v, Volume)}
    if not arrays:
        return
    volume_name = next((k for k, v in given.items() if isinstance(v, Volume)), None)
    if volume_name is not None:
        arrays = {volume_name: given[volume_name], **arrays}
    shapes = {k: _shape(v) for k, v in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k} {s}" for k, s in shapes.items())
        raise ValueError(f"masks given as arrays must share one grid, got shapes: {listed}")


def _shape(mask: MaskLike) -> tuple[int, ...]:
    return tuple(np.shape(mask.array if isinstance(mask, Volume) else mask))


def _camera_direction(
    camera: str | Sequence[float],
    skull: pv.PolyData | None,
    implant: pv.PolyData | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vector from the focal point towards the camera, and the view-up vector."""
    if isinstance(camera, str):
        name = camera
        if name == "auto":
            name = "implant" if implant is not None and skull is not None else "iso"
        if name == "implant":
            if implant is None or skull is None:
                raise ValueError("camera='implant' needs a defective skull and an implant to look at")
            view = np.asarray(implant.center) - np.asarray(skull.center)
            view = view / np.linalg.norm(view) if np.linalg.norm(view) > 1e-6 else np.array(CAMERAS["iso"][0])
            view = view + np.array([0.0, -0.35, 0.35])  # a little from the front and above: keeps the face readable
        elif name in CAMERAS:
            view = np.array(CAMERAS[name][0])
        else:
            options = ", ".join(["auto", "implant", *CAMERAS])
            raise ValueError(f"unknown camera {camera!r}; use one of {options} or a direction (x, y, z)")
    else:
        view = np.asarray(camera, dtype=float).reshape(3)
    norm = np.linalg.norm(view)
    if norm < 1e-9:
        raise ValueError(f"camera direction must be non-zero, got {camera}")
    view = view / norm
    up = np.array([0.0, 0.0, 1.0])
    if abs(view @ up) > 0.95:  # looking straight down or up: let the face point up in the picture
        up = np.array([0.0, -1.0, 0.0])
    return view, up


def _place_camera(plotter: pv.Plotter, view: np.ndarray, up: np.ndarray, zoom: float) -> None:
    bounds = np.asarray(plotter.bounds, dtype=float).reshape(3, 2)
    centre = bounds.mean(axis=1)
    radius = max(float(np.linalg.norm(bounds[:, 1] - bounds[:, 0]) / 2.0), 1.0)
    plotter.camera_position = [tuple(centre + view * radius * 4.0), tuple(centre), tuple(up)]
    plotter.reset_camera()
    plotter.camera.zoom(zoom)


def _new_plotter(window_size: Sequence[int], interactive: bool, background: str) -> pv.Plotter:
    width, height = (int(s) for s in window_size)
    if width < 16 or height < 16:
        raise ValueError(f"window_size must be at least 16×16 pixels, got {window_size}")
    plotter = pv.Plotter(off_screen=not interactive or pv.OFF_SCREEN, window_size=(width, height))
    plotter.set_background(background)
    return plotter


def _font_size(plotter: pv.Plotter, size_at_600: int) -> int:
    """A text size that keeps its proportion to the picture (VTK sizes text in points, not in % of the window)."""
    return max(6, round(size_at_600 * min(plotter.window_size) / 600))


def _add_colour_key(plotter: pv.Plotter, labels: Sequence[tuple[str, str]]) -> None:
    """Coloured labels in the lower-left corner, one per line (pyvista's legend box clips its text)."""
    font_size = _font_size(plotter, 10)
    line_height = round(font_size * 2.2)
    for row, (label, colour) in enumerate(reversed(labels)):
        plotter.add_text(label, position=(10, 8 + row * line_height), font_size=font_size, color=colour)


def _colour_bar_layout(plotter: pv.Plotter) -> dict:
    """Scalar-bar settings that stay legible at every window size: VTK fits the label and title fonts to the bar,
    so the bar keeps its proportions; three labels below 360 pixels of width instead of five (five collide there),
    a short title below 300 pixels, and the bar sits high enough for the title under the labels to stay inside the
    picture."""
    width = plotter.window_size[0]
    return {
        "title": ERROR_BAR_TITLE if width >= 300 else ERROR_BAR_SHORT_TITLE,
        "color": TEXT_COLOR,
        "fmt": "%.1f",
        "n_labels": 5 if width >= 360 else 3,
        "vertical": False,
        "position_x": 0.15,
        "position_y": 0.04 if plotter.window_size[1] >= 240 else 0.08,
        "width": 0.7,
        "height": 0.15,
    }


def _add_title(plotter: pv.Plotter, text: str) -> None:
    """Text in the upper-left corner at a fixed size (a corner annotation would shrink long or multi-line text)."""
    font_size = _font_size(plotter, 11)
    lines = text.count("\n") + 1
    top = plotter.window_size[1] - 8 - round(font_size * 2.3) * lines
    plotter.add_text(text, position=(10, top), font_size=font_size, color=TEXT_COLOR)


def _finish(plotter: pv.Plotter, interactive: bool) -> np.ndarray | pv.Plotter:
    if interactive:
        return plotter
    image = plotter.screenshot(return_img=True)
    plotter.close()
    return np.asarray(image)[..., :3].copy()


def reconstruction_plotter(
    defective: MaskLike | None,
    predicted_implant: MaskLike | None = None,
    true_implant: MaskLike | None = None,
    spacing: Sequence[float] | None = None,
    camera: str | Sequence[float] = "auto",
    window_size: Sequence[int] = (600, 600),
    truth_style: str = "wireframe",
    title: str | None = None,
    legend: bool = True,
    smooth_iterations: int = 30,
    max_grid: int = 160,
    zoom: float = 1.3,
    background: str = BACKGROUND,
    interactive: bool = False,
) -> pv.Plotter:
    """A pyvista ``Plotter`` holding the scene of :func:`render_reconstruction` (arguments are the same)."""
    if truth_style not in ("wireframe", "translucent"):
        raise ValueError(f"truth_style must be 'wireframe' or 'translucent', got {truth_style!r}")
    named = {"defective": defective, "predicted_implant": predicted_implant, "true_implant": true_implant}
    if all(v is None for v in named.values()):
        raise ValueError("nothing to render: give a defective skull and/or an implant")
    _check_same_shape(named)
    like = _first_volume(defective, predicted_implant, true_implant)
    volumes = {k: None if v is None else _to_volume(v, spacing, k, like) for k, v in named.items()}
    skull = _mesh_for_render(volumes["defective"], smooth_iterations, max_grid, "defective")
    predicted = _mesh_for_render(volumes["predicted_implant"], smooth_iterations, max_grid, "predicted_implant")
    truth = _mesh_for_render(volumes["true_implant"], smooth_iterations, max_grid, "true_implant")
    if skull is None and predicted is None and truth is None:
        raise ValueError("nothing to render: every mask given is empty")

    plotter = _new_plotter(window_size, interactive, background)
    labels = []
    if skull is not None:
        plotter.add_mesh(skull, color=SKULL_COLOR, smooth_shading=True, specular=0.2)
        labels.append(("defective skull", SKULL_COLOR))
    if predicted is not None:
        plotter.add_mesh(predicted, color=PREDICTED_COLOR, smooth_shading=True, specular=0.3)
        labels.append(("predicted implant", PREDICTED_COLOR))
    if truth is not None:
        if truth_style == "wireframe":
            if truth.n_cells > WIREFRAME_MAX_FACES:  # a full-resolution mesh would be a solid tangle of lines
                truth = truth.decimate(1.0 - WIREFRAME_MAX_FACES / truth.n_cells)
            plotter.add_mesh(truth, color=TRUTH_COLOR, style="wireframe", line_width=1.0, opacity=0.6)
        else:
            plotter.add_mesh(truth, color=TRUTH_COLOR, opacity=0.35, smooth_shading=True)
        labels.append(("true implant", TRUTH_COLOR))
    notes = []
    if predicted_implant is not None and predicted is None:
        notes.append("predicted implant is empty")
    if true_implant is not None and truth is None:
        notes.append("true implant is empty")
    if legend and len(labels) > 1:
        _add_colour_key(plotter, labels)
    if title or notes:
        text = "\n".join([t for t in [title, *notes] if t])
        _add_title(plotter, text)
    # Aim at the true implant when there is one: every method shown on one case then gets the same view.
    view, up = _camera_direction(camera, skull, truth if truth is not None else predicted)
    _place_camera(plotter, view, up, zoom)
    return plotter


def render_reconstruction(
    defective: MaskLike | None,
    predicted_implant: MaskLike | None = None,
    true_implant: MaskLike | None = None,
    spacing: Sequence[float] | None = None,
    camera: str | Sequence[float] = "auto",
    window_size: Sequence[int] = (600, 600),
    truth_style: str = "wireframe",
    title: str | None = None,
    legend: bool = True,
    smooth_iterations: int = 30,
    max_grid: int = 160,
    zoom: float = 1.3,
    background: str = BACKGROUND,
    interactive: bool = False,
) -> np.ndarray | pv.Plotter:
    """Render a defective skull (ivory) with a predicted implant (orange-red) and the true implant (teal).

    Masks are bool arrays on one grid (give ``spacing`` in mm, default 1 mm) or ``Volume``s (their geometry).
    Any of them may be ``None``; an empty implant is noted in the picture. ``camera``: ``"auto"`` (looks at the
    implant when there is one, else ``"iso"``), ``"implant"``, ``"iso"``, ``"top"``, ``"bottom"``, ``"front"``,
    ``"back"``, ``"left"``, ``"right"`` or a direction ``(x, y, z)`` in LPS from the skull towards the camera.
    ``truth_style``: ``"wireframe"`` or ``"translucent"``. Large grids are meshed from blocks so that the
    bounding box is at most ``max_grid`` blocks per axis. Returns an RGB image ``(height, width, 3)`` uint8, or
    with ``interactive=True`` the ``Plotter`` (show it with ``plotter.show(jupyter_backend="trame")``).
    """
    plotter = reconstruction_plotter(
        defective,
        predicted_implant,
        true_implant,
        spacing=spacing,
        camera=camera,
        window_size=window_size,
        truth_style=truth_style,
        title=title,
        legend=legend,
        smooth_iterations=smooth_iterations,
        max_grid=max_grid,
        zoom=zoom,
        background=background,
        interactive=interactive,
    )
    return _finish(plotter, interactive)


# --------------------------------------------------------------------------------------------------------------
# error map
# --------------------------------------------------------------------------------------------------------------


def implant_distance_mesh(
    predicted_implant: MaskLike,
    true_implant: MaskLike,
    spacing: Sequence[float] | None = None,
    smooth_iterations: int = 30,
) -> pv.PolyData:
    """The predicted implant's surface with point data ``"distance_mm"``: distance to the true implant's surface.

    Both surfaces are meshed the same way (marching cubes + smoothing, in mm), and each predicted vertex gets
    its unsigned distance to the true surface (``vtkImplicitPolyDataDistance``): 0 where the prediction is
    exact, large where it misses. Arrays need ``spacing`` (mm); ``Volume``s carry it.
    """
    like = _first_volume(predicted_implant, true_implant)
    if like is None and spacing is None:
        raise ValueError("spacing (mm per voxel) is required when the implants are numpy arrays")
    _check_same_shape({"predicted_implant": predicted_implant, "true_implant": true_implant})
    predicted_volume = _to_volume(predicted_implant, spacing, "predicted_implant", like)
    true_volume = _to_volume(true_implant, spacing, "true_implant", like)
    predicted = mask_to_mesh(predicted_volume, smooth_iterations=smooth_iterations, name="predicted_implant")
    truth = mask_to_mesh(true_volume, smooth_iterations=smooth_iterations, name="true_implant")
    with_distance = predicted.compute_implicit_distance(truth)
    predicted.point_data["distance_mm"] = np.abs(np.asarray(with_distance.point_data["implicit_distance"]))
    return predicted


def render_error_map(
    predicted_implant: MaskLike,
    true_implant: MaskLike,
    spacing: Sequence[float] | None = None,
    defective: MaskLike | None = None,
    max_distance_mm: float | None = None,
    camera: str | Sequence[float] = "auto",
    window_size: Sequence[int] = (600, 600),
    cmap: str = "magma",
    title: str | None = None,
    smooth_iterations: int = 30,
    max_grid: int = 160,
    zoom: float = 1.3,
    background: str = BACKGROUND,
    interactive: bool = False,
) -> np.ndarray | pv.Plotter:
    """Heat map of the surface distance (mm) from the predicted implant to the true one, drawn on the prediction.

    The colour bar, titled "distance to true implant (mm)", runs from 0 to ``max_distance_mm`` (default: the
    99th percentile of the distances, at least 2 mm, so that an exact prediction is uniformly dark). The
    defective skull, when given, is drawn in grey for context. Returns an RGB image, or the ``Plotter`` with
    ``interactive=True``.
    """
    surface = implant_distance_mesh(predicted_implant, true_implant, spacing, smooth_iterations)
    distances = np.asarray(surface.point_data["distance_mm"])
    if max_distance_mm is None:
        max_distance_mm = max(float(np.percentile(distances, 99)), 2.0)
    if max_distance_mm <= 0:
        raise ValueError(f"max_distance_mm must be positive, got {max_distance_mm}")
    skull = None
    if defective is not None:
        _check_same_shape(
            {"predicted_implant": predicted_implant, "true_implant": true_implant, "defective": defective}
        )
        like = _first_volume(predicted_implant, true_implant, defective)
        skull = _mesh_for_render(
            _to_volume(defective, spacing, "defective", like), smooth_iterations, max_grid, "defective"
        )
    plotter = _new_plotter(window_size, interactive, background)
    if skull is not None:
        # opaque grey: the colour map's bright end is ivory-like, and translucent geometry makes VTK draw the
        # colour bar's labels over the bar
        plotter.add_mesh(skull, color=CONTEXT_SKULL_COLOR, smooth_shading=True)
    plotter.add_mesh(
        surface,
        scalars="distance_mm",
        cmap=cmap,
        clim=(0.0, max_distance_mm),
        smooth_shading=True,
        scalar_bar_args=(bar := _colour_bar_layout(plotter)),
    )
    # labels and title below the bar: above it VTK draws them on top of each other
    plotter.scalar_bars[bar["title"]].SetTextPositionToPrecedeScalarBar()
    summary = f"mean {distances.mean():.2f} mm, max {distances.max():.2f} mm"
    text = f"{title}\n{summary}" if title else summary
    _add_title(plotter, text)
    view, up = _camera_direction(camera, skull, surface)
    _place_camera(plotter, view, up, zoom)
    return _finish(plotter, interactive)


# --------------------------------------------------------------------------------------------------------------
# compositions: side by side, turntable, matplotlib display
# --------------------------------------------------------------------------------------------------------------


def render_side_by_side(
    panels: Sequence[tuple[str, dict[str, Any]]],
    window_size: Sequence[int] = (400, 400),
) -> np.ndarray:
    """Render several cases or methods next to each other into one RGB image.

    ``panels``: ``(title, kwargs)`` pairs; kwargs go to :func:`render_reconstruction`, or to
    :func:`render_error_map` when they contain ``"kind": "error"``. Each panel is ``window_size`` pixels.
    """
    if not panels:
        raise ValueError("render_side_by_side needs at least one (title, kwargs) panel")
    images = []
    for position, panel in enumerate(panels):
        if not (isinstance(panel, tuple | list) and len(panel) == 2 and isinstance(panel[1], dict)):
            raise ValueError(f"panel {position} must be a (title, kwargs) pair, got {type(panel).__name__}")
        title, kwargs = panel
        kwargs = dict(kwargs)
        kind = kwargs.pop("kind", "reconstruction")
        kwargs.setdefault("window_size", window_size)
        kwargs["title"] = title
        kwargs["interactive"] = False
        if kind == "error":
            images.append(render_error_map(**kwargs))
        elif kind == "reconstruction":
            images.append(render_reconstruction(**kwargs))
        else:
            raise ValueError(f"panel {position} ({title!r}): kind must be 'reconstruction' or 'error', got {kind!r}")
    height = max(im.shape[0] for im in images)
    padded = [np.pad(im, ((0, height - im.shape[0]), (0, 0), (0, 0)), mode="edge") for im in images]
    gap = np.full((height, 4, 3), 255, dtype=np.uint8)
    row = [padded[0]]
    for im in padded[1:]:
        row += [gap, im]
    return np.concatenate(row, axis=1)


def turntable(
    path: str | os.PathLike,
    defective: MaskLike | None,
    predicted_implant: MaskLike | None = None,
    true_implant: MaskLike | None = None,
    n_frames: int = 36,
    fps: int = 12,
    **scene: Any,
) -> Path:
    """Write a turntable animation (a full turn around the vertical axis) of a reconstruction for slides.

    ``path`` ends in ``.gif`` (imageio + Pillow) or ``.mp4`` (needs the ``imageio-ffmpeg`` package). ``scene``
    takes the keyword arguments of :func:`render_reconstruction` (camera, window_size, truth_style, ...).
    Written atomically; returns the path.
    """
    import imageio.v3 as iio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"{path}: turntable writes .gif or .mp4, not {suffix or 'no extension'}")
    if suffix == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise RuntimeError(
            f"{path}: writing MP4 needs the imageio-ffmpeg package (pip install imageio-ffmpeg); or write a .gif"
        )
    if n_frames < 2:
        raise ValueError(f"n_frames must be at least 2, got {n_frames}")
    scene = {k: v for k, v in scene.items() if k != "interactive"}
    scene.setdefault("window_size", (400, 400))
    plotter = reconstruction_plotter(defective, predicted_implant, true_implant, interactive=False, **scene)
    frames = []
    try:
        for _ in range(n_frames):
            frames.append(np.asarray(plotter.screenshot(return_img=True))[..., :3].copy())
            plotter.camera.Azimuth(360.0 / n_frames)
            plotter.render()  # screenshot() does not re-render after a camera move
    finally:
        plotter.close()
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            iio.imwrite(tmp, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
        else:
            iio.imwrite(tmp, np.stack(frames), extension=".mp4", fps=fps, plugin="FFMPEG")
        tmp.chmod(0o644)  # atomic_path's temporary file is private (0600); a GIF for slides is not
    return path


def show_image(image: np.ndarray, title: str | None = None, width_inches: float = 6.0) -> Figure:
    """A matplotlib Figure showing an RGB image (a render) without axes, so notebooks display renders headless.

    Like every figure of :mod:`cranialkit.viz` it is left open in pyplot: the notebook's inline backend shows it
    once when the cell ends.
    """
    import matplotlib.pyplot as plt

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"show_image expects an RGB(A) image (height, width, 3|4), got shape {image.shape}")
    height, width = image.shape[:2]
    title_inches = 0.4 if title else 0.0
    fig = plt.figure(figsize=(width_inches, width_inches * height / width + title_inches))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - title_inches / fig.get_figheight()))
    ax.imshow(image)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, y=0.99)
    return fig
