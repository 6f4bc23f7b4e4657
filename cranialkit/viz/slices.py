"""Slice figures: orthogonal slices with coloured overlays, side-by-side case grids and shaded projections.

Taught in notebook 01_data_and_preprocessing (and used by every later notebook).

All functions are pure: they take arrays or :class:`~cranialkit.volume.Volume` s and return a matplotlib
``Figure``; nothing is shown or saved. Orientation assumes the project's convention (LPS; axis 0 = right→left,
axis 1 = anterior→posterior, axis 2 = inferior→superior) and draws every view with the top of the head up:

- axial (axis 2 fixed): radiological — patient's right on the left, anterior at the top;
- coronal (axis 1 fixed): patient's right on the left, superior at the top;
- sagittal (axis 0 fixed): anterior (face) on the left, superior at the top.

Axes are in mm (``spacing``), so anisotropic voxels keep true proportions. Letters at the panel edges (R, L, A, P,
S, I) name the patient directions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy import ndimage

from cranialkit.volume import Volume

VIEWS = ("axial", "coronal", "sagittal")
_FIXED_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
# (horizontal array axis, vertical array axis, flip vertical so that index 0 is at the top)
_LAYOUT = {"axial": (0, 1, True), "coronal": (0, 2, False), "sagittal": (1, 2, False)}
_EDGE_LETTERS = {  # (left, right, bottom, top)
    "axial": ("R", "L", "P", "A"),
    "coronal": ("R", "L", "I", "S"),
    "sagittal": ("A", "P", "I", "S"),
}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#e377c2", "#bcbd22")
"""Overlay colours, in the order overlays are given, for labels without a colour of their own."""
NAMED_COLOURS = {"defective": "#1f77b4", "implant": "#d62728", "prediction": "#2ca02c", "predicted": "#2ca02c",
                 "complete": "#9467bd", "error": "#ff7f0e"}
"""Fixed colours for labels that start with these words, so a figure's implant is always red, etc."""


def _array(data: Volume | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(data.array if isinstance(data, Volume) else data)
    if array.ndim != 3:
        raise ValueError(f"{name}: expected a 3D volume, got shape {array.shape}")
    return array


def _spacing(data: Volume | np.ndarray, spacing: Sequence[float] | None) -> np.ndarray:
    if spacing is not None:
        values = np.asarray(spacing, dtype=float).reshape(-1)
        if values.size != 3 or np.any(values <= 0):
            raise ValueError(f"spacing must be three positive numbers (mm per voxel), got {spacing}")
        return values
    if isinstance(data, Volume):
        return data.spacing.astype(float)
    return np.ones(3)


def _overlay_arrays(overlays: Mapping[str, Volume | np.ndarray] | None, shape: tuple[int, ...]) -> dict:
    result = {}
    for label, mask in (overlays or {}).items():
        array = _array(mask, f"overlay {label!r}").astype(bool)
        if array.shape != shape:
            raise ValueError(f"overlay {label!r} has shape {array.shape}, the volume {shape}")
        result[str(label)] = array
    return result


def _views(axes: str | int | Sequence) -> list[str]:
    if isinstance(axes, str) and axes == "all":
        return list(VIEWS)
    items = [axes] if isinstance(axes, (str, int, np.integer)) else list(axes)
    views = []
    for item in items:
        if isinstance(item, (int, np.integer)) and 0 <= int(item) <= 2:
            views.append({2: "axial", 1: "coronal", 0: "sagittal"}[int(item)])
        elif item in VIEWS:
            views.append(item)
        else:
            raise ValueError(f"axes: expected 'all', one of {VIEWS} or an array axis 0/1/2, got {item!r}")
    return views


def _centre_of_mass(mask: np.ndarray) -> np.ndarray:
    """Voxel centre of mass of a mask (the grid centre for an empty mask)."""
    if not mask.any():
        return (np.asarray(mask.shape) - 1) / 2
    return np.array([np.average(np.arange(n), weights=mask.sum(axis=tuple(a for a in range(3) if a != axis)))
                     for axis, n in enumerate(mask.shape)])


def _slice_indices(index, focus_mask: np.ndarray, views: list[str]) -> dict[str, int]:
    shape = focus_mask.shape
    if index is None:
        centre = np.rint(_centre_of_mass(focus_mask)).astype(int)
        return {view: int(centre[_FIXED_AXIS[view]]) for view in views}
    if isinstance(index, (int, np.integer)):
        if len(views) != 1:
            raise ValueError("index: one integer needs one view; give a 3-tuple (i, j, k) for several views")
        chosen = {views[0]: int(index)}
    else:
        values = list(index)
        if len(values) != 3:
            raise ValueError(f"index: expected an int or a 3-tuple (i, j, k), got {index!r}")
        chosen = {view: int(values[_FIXED_AXIS[view]]) for view in views}
    for view, value in chosen.items():
        size = shape[_FIXED_AXIS[view]]
        if not 0 <= value < size:
            raise ValueError(f"index: {view} slice {value} outside 0..{size - 1}")
    return chosen


def _take(array: np.ndarray, view: str, position: int) -> np.ndarray:
    """2D image of a view, rows = vertical axis, columns = horizontal axis, top row first."""
    plane = np.take(array, position, axis=_FIXED_AXIS[view])  # remaining axes in increasing order
    horizontal, vertical, top_is_index0 = _LAYOUT[view]
    image = plane.T if horizontal < vertical else plane  # rows = vertical axis
    return image if top_is_index0 else image[::-1]


def _extent(view: str, shape: tuple[int, ...], spacing: np.ndarray) -> list[float]:
    horizontal, vertical, _ = _LAYOUT[view]
    return [0.0, shape[horizontal] * spacing[horizontal], 0.0, shape[vertical] * spacing[vertical]]


def _grey(image: np.ndarray) -> np.ndarray:
    """A base image scaled to [0, 1]: masks as light grey bone, intensities by their 1st–99th percentiles."""
    if image.dtype == bool:
        return image * 0.75
    image = image.astype(float)
    low, high = np.percentile(image, (1, 99)) if image.size else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    return np.clip((image - low) / (high - low), 0, 1)


def _compose(base: np.ndarray, layers: list[tuple[np.ndarray, str]], alpha: float, lift: float = 0.0) -> np.ndarray:
    """RGB image: grey base with each (mask, colour) blended on top, later layers over earlier ones.

    Under an overlay the grey is raised to at least ``lift``, so a mask drawn where the base is black (an implant
    over a defective skull) keeps its full colour.
    """
    rgb = np.repeat(base[..., None], 3, axis=-1).astype(float)
    for mask, colour in layers:
        rgb[mask] = (1 - alpha) * np.maximum(rgb[mask], lift) + alpha * np.asarray(to_rgb(colour))
    return rgb


def _letters(ax, view: str) -> None:
    left, right, bottom, top = _EDGE_LETTERS[view]
    style = dict(transform=ax.transAxes, color="#ffd700", fontsize=9, fontweight="bold", ha="center", va="center")
    ax.text(0.04, 0.5, left, **style)
    ax.text(0.96, 0.5, right, **style)
    ax.text(0.5, 0.04, bottom, **style)
    ax.text(0.5, 0.96, top, **style)


def _draw(ax, base: np.ndarray, overlays: dict, colours: dict, view: str, position: int, spacing: np.ndarray,
          alpha: float, label: str | None = None) -> None:
    layers = [(_take(mask, view, position), colours[name]) for name, mask in overlays.items()]
    image = _compose(_grey(_take(base, view, position)), layers, alpha, lift=0.75 if base.dtype == bool else 0.0)
    ax.imshow(image, extent=_extent(view, base.shape, spacing), origin="upper", interpolation="nearest")
    ax.set_facecolor("black")
    axis_name = "ijk"[_FIXED_AXIS[view]]
    ax.set_title(label or f"{view} ({axis_name} = {position})", fontsize=10)
    ax.set_xlabel("mm", fontsize=8)
    ax.tick_params(labelsize=7)
    _letters(ax, view)


def _legend(fig: Figure, colours: dict) -> None:
    if colours:
        handles = [Patch(facecolor=c, edgecolor="none", label=name) for name, c in colours.items()]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False, fontsize=9)


def _colours(labels, colors: Mapping[str, str] | None) -> dict[str, str]:
    """Colour per label: ``colors`` if given, else a fixed colour for known names, else the next palette colour."""
    colors = dict(colors or {})
    named_colours = set(NAMED_COLOURS.values())
    result, spare = {}, iter([c for c in PALETTE if c not in named_colours] * 8 + list(PALETTE) * 8)
    for label in labels:
        named = [c for word, c in NAMED_COLOURS.items() if label.lower().startswith(word)]
        result[label] = colors.get(label) or (named[0] if named else next(spare))
    return result


def show_slices(volume: Volume | np.ndarray, overlays: Mapping[str, Volume | np.ndarray] | None = None,
                axes: str | int | Sequence = "all", index: int | Sequence[int] | None = None,
                spacing: Sequence[float] | None = None, title: str | None = None, focus: str | None = None,
                colors: Mapping[str, str] | None = None, alpha: float = 0.55) -> Figure:
    """Orthogonal slices of ``volume`` (grey) with semi-transparent coloured ``overlays`` and a legend.

    ``axes``: "all" (axial, coronal, sagittal), a view name or an array axis (0 sagittal, 1 coronal, 2 axial).
    ``index``: slice position — None = through the centre of mass of ``overlays[focus]`` (or of the volume when
    ``focus`` is None), an int for one view, or an (i, j, k) tuple. ``spacing`` (mm per voxel) defaults to the
    Volume's, so the panels have true proportions.
    """
    base = _array(volume, "volume")
    spacing = _spacing(volume, spacing)
    masks = _overlay_arrays(overlays, base.shape)
    if focus is not None and focus not in masks:
        raise ValueError(f"focus: {focus!r} is not one of the overlays {list(masks)}")
    views = _views(axes)
    focus_mask = masks[focus] if focus is not None else (base > 0 if base.dtype != bool else base)
    positions = _slice_indices(index, focus_mask, views)
    colours = _colours(masks, colors)
    fig, axs = plt.subplots(1, len(views), figsize=(4.2 * len(views), 4.6 if masks else 4.2), squeeze=False)
    for ax, view in zip(axs[0], views):
        _draw(ax, base, masks, colours, view, positions[view], spacing, alpha)
    if title:
        fig.suptitle(title)
    _legend(fig, colours)
    fig.tight_layout(rect=(0, 0.6 / fig.get_figheight() if masks else 0, 1, 0.94 if title else 1))
    return fig


def compare_grid(rows: Mapping[str, Mapping[str, Volume | np.ndarray]], axes: str | int | Sequence = "all",
                 spacing: Sequence[float] | None = None, title: str | None = None, focus: str | None = None,
                 colors: Mapping[str, str] | None = None, alpha: float = 0.55, ncols: int = 3) -> Figure:
    """Several cases side by side: each entry of ``rows`` is a case label → its masks (label → mask).

    Each case shows the union of its masks in grey with every mask coloured on top; slices go through the centre
    of mass of the case's ``focus`` mask (default: its last mask, e.g. the implant). With ``axes="all"`` each case
    is a row of three views; with one view the cases fill a grid of ``ncols`` columns.
    """
    if not rows:
        raise ValueError("rows: need at least one case")
    views = _views(axes)
    cases = []
    for case_label, masks in rows.items():
        if not masks:
            raise ValueError(f"rows[{case_label!r}]: no masks")
        first = next(iter(masks.values()))
        shape = _array(first, f"rows[{case_label!r}]").shape
        arrays = _overlay_arrays(masks, shape)
        key = focus if focus is not None else list(arrays)[-1]
        if key not in arrays:
            raise ValueError(f"focus: {key!r} is not a mask of case {case_label!r} ({list(arrays)})")
        cases.append((case_label, arrays, _spacing(first, spacing), key))
    labels = list(dict.fromkeys(name for _, arrays, _, _ in cases for name in arrays))
    colours = _colours(labels, colors)
    if len(views) > 1:
        n_rows, n_cols = len(cases), len(views)
    else:
        n_cols = max(1, min(ncols, len(cases)))
        n_rows = -(-len(cases) // n_cols)
    fig, axs = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 3.5 * n_rows + 0.6), squeeze=False)
    for ax in axs.flat:
        ax.set_axis_off()
    for number, (case_label, arrays, case_spacing, key) in enumerate(cases):
        base = np.logical_or.reduce(list(arrays.values()))
        positions = _slice_indices(None, arrays[key], views)
        for column, view in enumerate(views):
            ax = axs[number, column] if len(views) > 1 else axs[number // n_cols, number % n_cols]
            ax.set_axis_on()
            text = f"{case_label} — {view}" if len(views) > 1 else f"{case_label} ({view})"
            _draw(ax, base, arrays, colours, view, positions[view], case_spacing, alpha, label=text)
    if title:
        fig.suptitle(title)
    _legend(fig, colours)
    height = 3.5 * n_rows + 0.6
    fig.tight_layout(rect=(0, 0.65 / height, 1, 1 - (0.45 / height if title else 0)), h_pad=1.8)
    return fig


# ----------------------------------------------------------------------------------------------------------------------
# Projections
# ----------------------------------------------------------------------------------------------------------------------
# Looking from: (projected axis, viewer at its high end?, horizontal axis, vertical axis, high vertical index at
# the top?, high horizontal index on the left?, edge letters (left, right, bottom, top)). The top view is seen
# from above (anterior up), so the patient's left is on the viewer's left.
_PROJECTIONS = {
    "front": (1, False, 0, 2, True, False, ("R", "L", "I", "S")),
    "left side": (0, True, 1, 2, True, False, ("A", "P", "I", "S")),
    "top": (2, True, 0, 1, False, True, ("L", "R", "P", "A")),
}


def _first_hit(mask: np.ndarray, axis: int, from_high: bool) -> tuple[np.ndarray, np.ndarray]:
    """For each ray along ``axis``: whether it hits the mask, and the depth (voxels) of the first hit."""
    ordered = np.flip(mask, axis=axis) if from_high else mask
    hit = ordered.any(axis=axis)
    depth = np.argmax(ordered, axis=axis).astype(float)
    return hit, depth


def _shade(depth: np.ndarray, hit: np.ndarray, spacing_2d: tuple[float, float], depth_mm: float) -> np.ndarray:
    """Lambert shading of a depth map (voxels × ``depth_mm``): a quick 'surface render' of a binary volume."""
    weight = ndimage.gaussian_filter(hit.astype(float), 1.0)  # smooth inside the silhouette only: hides the
    d = ndimage.gaussian_filter(np.where(hit, depth * depth_mm, 0.0), 1.0) / np.maximum(weight, 1e-6)  # staircase
    with np.errstate(invalid="ignore"):
        d_rows, d_cols = np.gradient(np.where(hit, d, np.nan), *spacing_2d)
    d_rows, d_cols = np.nan_to_num(d_rows), np.nan_to_num(d_cols)
    normal = np.stack([-d_cols, -d_rows, np.ones_like(d)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    light = np.array([-0.4, -0.5, 1.0])
    light /= np.linalg.norm(light)
    lambert = np.clip(normal @ light, 0, 1) ** 1.5
    fade = 1 - 0.35 * (d - d[hit].min()) / max(np.ptp(d[hit]), 1e-6) if hit.any() else np.ones_like(d)
    return np.where(hit, (0.25 + 0.75 * lambert) * fade, 0.0)


def show_mip(volume: Volume | np.ndarray, overlays: Mapping[str, Volume | np.ndarray] | None = None,
             spacing: Sequence[float] | None = None, title: str | None = None, mode: str = "auto",
             colors: Mapping[str, str] | None = None) -> Figure:
    """Whole-volume projections from the front, the left side and the top — a phantom at a glance.

    ``mode="max"``: maximum-intensity projection (with overlays shown where they project). ``mode="surface"``
    (the default for binary volumes): the first surface each ray meets, shaded by its orientation and depth, and
    coloured by the overlay it belongs to (so an implant is seen in place in the skull).
    """
    base = _array(volume, "volume")
    spacing = _spacing(volume, spacing)
    masks = _overlay_arrays(overlays, base.shape)
    if mode == "auto":
        mode = "surface" if base.dtype == bool or np.isin(np.unique(base[::4, ::4, ::4]), (0, 1)).all() else "max"
    if mode not in ("surface", "max"):
        raise ValueError(f"mode: expected 'auto', 'surface' or 'max', got {mode!r}")
    colours = _colours(masks, colors)
    fig, axs = plt.subplots(1, 3, figsize=(13, 4.8 if masks else 4.4), squeeze=False)
    solid = base.astype(bool) | np.logical_or.reduce(list(masks.values())) if masks else base.astype(bool)
    for ax, (name, projection) in zip(axs[0], _PROJECTIONS.items()):
        axis, from_high, horizontal, vertical, up_high, left_high, letters = projection
        remaining = [a for a in range(3) if a != axis]
        if mode == "surface":
            hit, depth = _first_hit(solid, axis, from_high)
            image2d = _shade(depth, hit, tuple(spacing[remaining]), spacing[axis])
            layers = []
            for label, mask in masks.items():
                ordered = np.flip(mask, axis=axis) if from_high else mask
                index = np.expand_dims(depth.astype(int), axis)
                seen = np.take_along_axis(ordered, index, axis=axis).squeeze(axis) & hit
                layers.append((seen, colours[label]))
        else:
            image2d = _grey(base.max(axis=axis))
            layers = [(mask.any(axis=axis), colours[label]) for label, mask in masks.items()]
        # 2D arrays have the remaining axes in increasing order: put the vertical axis on rows, top row first.
        def arrange(a, transpose=horizontal < vertical, up_high=up_high, left_high=left_high):
            a = a.T if transpose else a
            return a[::-1 if up_high else 1, ::-1 if left_high else 1]

        rgb = _compose(arrange(image2d), [(arrange(m), c) for m, c in layers], alpha=0.6 if mode == "surface" else 0.5)
        if mode == "surface":  # keep the shading visible under the colours
            rgb *= np.clip(arrange(image2d)[..., None] / 0.75, 0.35, 1.3)
        ax.imshow(np.clip(rgb, 0, 1), extent=[0, base.shape[horizontal] * spacing[horizontal], 0,
                                               base.shape[vertical] * spacing[vertical]], interpolation="nearest")
        ax.set_title(f"{name} ({'surface' if mode == 'surface' else 'max'} projection)", fontsize=10)
        ax.set_xlabel("mm", fontsize=8)
        ax.tick_params(labelsize=7)
        left, right, bottom, top = letters
        style = dict(transform=ax.transAxes, color="#ffd700", fontsize=9, fontweight="bold", ha="center")
        for x, y, letter in ((0.04, 0.5, left), (0.96, 0.5, right), (0.5, 0.04, bottom), (0.5, 0.94, top)):
            ax.text(x, y, letter, va="center", **style)
    if title:
        fig.suptitle(title)
    _legend(fig, colours)
    fig.tight_layout(rect=(0, 0.6 / fig.get_figheight() if masks else 0, 1, 0.94 if title else 1))
    return fig
