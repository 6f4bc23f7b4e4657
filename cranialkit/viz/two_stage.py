"""Figures of two-stage reconstruction: the coarse grid's staircase at the rim, the fine crop and its two input
channels, and coarse vs coarse + fine per defect class.

Taught in notebook 11_two_stage_reconstruction. Pure functions: arrays or Volumes in, a matplotlib ``Figure`` out.
Slices follow :mod:`cranialkit.viz.slices` (head up, mm axes, R/L/A/P/S/I letters).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from scipy import ndimage

from cranialkit.preprocessing import GridTransform
from cranialkit.viz.slices import _FIXED_AXIS, _LAYOUT, _letters, _slice_indices, _take
from cranialkit.volume import Volume

_BONE, _TRUTH, _PREDICTED = "#9a9a9a", "#d62728", "#2ca02c"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2 * int((a & b).sum()) / total


def _window(mask2d: np.ndarray, bone2d: np.ndarray, spacing_2d: np.ndarray, zoom_mm: float) -> tuple[slice, slice]:
    """Rows and columns of a ``zoom_mm``-wide window centred where the implant's slice meets the bone (its leftmost
    such pixel), or on the implant's left edge when it touches no bone in this slice."""
    rows, cols = np.nonzero(mask2d)
    if len(rows) == 0:
        return slice(0, mask2d.shape[0]), slice(0, mask2d.shape[1])
    rim_rows, rim_cols = np.nonzero(mask2d & ndimage.binary_dilation(bone2d, iterations=2))
    if len(rim_rows):
        pick = int(np.argmin(rim_cols))
        centre_row, centre_col = int(rim_rows[pick]), int(rim_cols[pick])
    else:
        centre_row, centre_col = int(np.median(rows)), int(cols.min())
    half_rows = int(math.ceil(zoom_mm / 2 / spacing_2d[0]))
    half_cols = int(math.ceil(zoom_mm / 2 / spacing_2d[1]))
    r0 = int(np.clip(centre_row - half_rows, 0, max(mask2d.shape[0] - 2 * half_rows, 0)))
    c0 = int(np.clip(centre_col - half_cols, 0, max(mask2d.shape[1] - 2 * half_cols, 0)))
    return slice(r0, r0 + 2 * half_rows), slice(c0, c0 + 2 * half_cols)


def rim_close_up(defective: Volume, truth: np.ndarray, versions: Mapping[str, np.ndarray], view: str = "coronal",
                 zoom_mm: float = 36.0, title: str | None = None) -> Figure:
    """One slice through the implant, zoomed on the rim of the defect, once per version of the implant.

    Grey = defective skull, red outline = true implant, green = the version's implant (bool arrays on the
    defective skull's grid); each panel's title gives the version's DSC over the whole volume.
    """
    if view not in _FIXED_AXIS:
        raise ValueError(f"rim_close_up: view must be one of {tuple(_FIXED_AXIS)}, got {view!r}")
    if not versions:
        raise ValueError("rim_close_up: give at least one version of the implant")
    truth = np.asarray(truth, bool)
    if not truth.any():
        raise ValueError("rim_close_up: the true implant is empty")
    position = _slice_indices(None, truth, [view])[view]
    horizontal, vertical, _ = _LAYOUT[view]
    spacing_2d = np.array([defective.spacing[vertical], defective.spacing[horizontal]])
    bone = _take(defective.array, view, position)
    true_2d = _take(truth, view, position)
    rows, cols = _window(true_2d, bone, spacing_2d, zoom_mm)
    extent = [0, (cols.stop - cols.start) * spacing_2d[1], 0, (rows.stop - rows.start) * spacing_2d[0]]
    fig, axes = plt.subplots(1, len(versions), figsize=(3.4 * len(versions), 3.6), squeeze=False)
    for ax, (label, implant) in zip(axes[0], versions.items()):
        implant = np.asarray(implant, bool)
        if implant.shape != truth.shape:
            raise ValueError(f"rim_close_up: {label!r} has shape {implant.shape}, the truth {truth.shape}")
        image = np.ones(bone.shape + (3,))
        image[bone] = plt.matplotlib.colors.to_rgb(_BONE)
        image[_take(implant, view, position)] = plt.matplotlib.colors.to_rgb(_PREDICTED)
        ax.imshow(image[rows, cols], extent=extent, interpolation="nearest")
        ax.contour(true_2d[rows, cols][::-1].astype(float), levels=[0.5], colors=_TRUTH, linewidths=1.2,
                   extent=extent)
        ax.set_title(f"{label}\nDSC {_dice(implant, truth):.3f}", fontsize=10)
        ax.set_xlabel("mm")
        _letters(ax, view)
    axes[0][0].set_ylabel("mm")
    fig.legend(handles=[Patch(color=_BONE, label="defective skull"), Patch(color=_PREDICTED, label="implant"),
                        Patch(facecolor="none", edgecolor=_TRUTH, label="true implant (outline)")],
               loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(title or f"The rim of the defect, {view} slice {position}")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def fine_crop_figure(defective: Volume, transform: GridTransform, inputs: np.ndarray, view: str = "coronal",
                     title: str | None = None) -> Figure:
    """Where the fine stage looks and what it sees: the whole defective skull with the crop's box, then the crop's
    two input channels on the fine grid (bone partial volume; coarse implant probability), one slice each."""
    inputs = np.asarray(inputs)
    if inputs.ndim != 4 or inputs.shape[0] != 2 or inputs.shape[1:] != tuple(transform.shape):
        raise ValueError(f"fine_crop_figure: inputs must be (2, *{tuple(transform.shape)}), got {inputs.shape}")
    axis = _FIXED_AXIS[view]
    horizontal, vertical, top_first = _LAYOUT[view]
    position = _slice_indices(None, inputs[1] > 0.5, [view])[view]
    box = transform.original_box()
    original_position = int(np.clip(round(transform.start[axis] + position * transform.step[axis]),
                                    0, defective.shape[axis] - 1))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    whole = _take(defective.array, view, original_position)
    sp = defective.spacing
    axes[0].imshow(whole * 0.75, cmap="gray", vmin=0, vmax=1, interpolation="nearest",
                   extent=[0, whole.shape[1] * sp[horizontal], 0, whole.shape[0] * sp[vertical]])
    x0, x1 = box[horizontal].start * sp[horizontal], box[horizontal].stop * sp[horizontal]
    y0, y1 = box[vertical].start * sp[vertical], box[vertical].stop * sp[vertical]
    if top_first:  # rows run from index 0 at the top: flip the box's vertical position
        height = whole.shape[0] * sp[vertical]
        y0, y1 = height - y1, height - y0
    axes[0].add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="#ff7f0e", linewidth=2))
    axes[0].set_title(f"defective skull ({np.round(defective.spacing, 2).tolist()} mm) and the crop")
    fine_sp = transform.spacing_mm
    extent = [0, transform.shape[horizontal] * fine_sp[horizontal], 0, transform.shape[vertical] * fine_sp[vertical]]
    for ax, channel, name, cmap in ((axes[1], 0, "bone share of each fine voxel", "gray"),
                                    (axes[2], 1, "coarse implant probability", "magma")):
        image = ax.imshow(_take(inputs[channel], view, position), cmap=cmap, vmin=0, vmax=1, extent=extent,
                          interpolation="nearest")
        ax.set_title(f"{name}\n({fine_sp[0]:.2g} mm grid, {'×'.join(map(str, transform.shape))} voxels)")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_xlabel("mm")
        _letters(ax, view)
    fig.suptitle(title or "The fine stage's crop and its two input channels")
    fig.tight_layout()
    return fig


def compare_stages(summaries: Mapping[str, Sequence[Mapping]], title: str = "Coarse vs coarse + fine, per class"
                   ) -> Figure:
    """Grouped bars per defect class (and the mean of classes) for each set of results: DSC, boundary DSC and HD95
    (mm). ``summaries`` maps a label ("coarse", "coarse + fine") to ``summarize_by_class`` rows."""
    if not summaries:
        raise ValueError("compare_stages: no results")
    labels = list(summaries)
    classes = [s["defect_class"] for s in next(iter(summaries.values())) if s["defect_class"] != "all cases"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.2 + 0.25 * len(classes)))
    height = 0.8 / len(labels)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric, name in zip(axes, ("dsc", "bdsc", "hd95"), ("DSC", "boundary DSC", "HD95 (mm)")):
        for k, label in enumerate(labels):
            by_class = {s["defect_class"]: s[metric] for s in summaries[label]}
            values = [by_class.get(c, math.nan) for c in classes]
            y = np.arange(len(classes)) + (k - (len(labels) - 1) / 2) * height
            bars = ax.barh(y, np.nan_to_num(values, posinf=0.0), height=height, color=colours[k % len(colours)],
                           label=label)
            ax.bar_label(bars, labels=[f"{v:.2f}" if math.isfinite(v) else "–" for v in values], fontsize=7,
                         padding=2)
        ax.set_yticks(np.arange(len(classes)), classes)
        ax.invert_yaxis()
        ax.set_title(name)
        if metric != "hd95":
            ax.set_xlim(0, 1.12)
        else:
            ax.set_xlim(0, ax.get_xlim()[1] * 1.15)
    handles, names = axes[0].get_legend_handles_labels()  # one legend under the panels: none covers a bar
    fig.legend(handles, names, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
