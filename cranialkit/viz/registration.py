"""Registration figures: overlays before/after, the deformed grid, the Jacobian map, the alpha sweep, loss curves.

Taught in notebook 03_registration_augmentation.

Pure functions: arrays in (numpy or torch), a matplotlib ``Figure`` out. Views follow the project's orientation
(axis 0 = right→left, axis 1 = anterior→posterior, axis 2 = inferior→superior) as in :mod:`cranialkit.viz.slices`:
axial (axis 2 fixed, anterior at the top), coronal (axis 1 fixed) and sagittal (axis 0 fixed, face on the left),
superior at the top. Panels are in voxels of the registration grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

VIEWS = ("axial", "coronal", "sagittal")
_FIXED_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
_PLANE_AXES = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}  # (horizontal, vertical) array axes
_TOP_IS_LOW_INDEX = {"axial": True, "coronal": False, "sagittal": False}

TARGET_COLOUR = np.array([0.85, 0.2, 0.75])  # magenta
SOURCE_COLOUR = np.array([0.2, 0.8, 0.3])  # green
OVERLAP_COLOUR = np.array([1.0, 1.0, 1.0])  # white
FOLD_COLOUR = "black"


def _numpy(data, name: str, ndim: int) -> np.ndarray:
    array = data.detach().cpu().numpy() if hasattr(data, "detach") else np.asarray(data)
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}D array, got shape {array.shape}")
    return array


def _index(view: str, shape: Sequence[int], focus: np.ndarray | None, index: int | None) -> int:
    axis = _FIXED_AXIS[view]
    if index is None:
        if focus is not None and focus.any():
            index = int(round(np.argwhere(focus)[:, axis].mean()))
        else:
            index = shape[axis] // 2
    if not 0 <= index < shape[axis]:
        raise ValueError(f"index: {view} slice {index} outside 0..{shape[axis] - 1}")
    return index


def _plane(array: np.ndarray, view: str, index: int) -> np.ndarray:
    """The slice as an image with rows = vertical axis (ascending), columns = horizontal axis."""
    if view not in _FIXED_AXIS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    return np.take(array, index, axis=_FIXED_AXIS[view]).T  # remaining axes (h, v) -> rows v, columns h


def _show(ax, image: np.ndarray, view: str, **kwargs):
    """imshow with voxel coordinates and the head's top up (axial: anterior up)."""
    handle = ax.imshow(image, origin="lower", interpolation="nearest", **kwargs)
    if _TOP_IS_LOW_INDEX[view]:
        ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    return handle


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def overlay_figure(target, stages: Mapping[str, np.ndarray], views: Sequence[str] = VIEWS,
                   index: Sequence[int] | None = None, title: str | None = None) -> Figure:
    """Rows = stages (e.g. "before", "affine", "deformable": the source mask after each), columns = views.

    Target in magenta, warped source in green, overlap in white; each row names its Dice with the target.
    Slices go through the target's centre of mass unless ``index`` = (i, j, k) is given.
    """
    target = _numpy(target, "target", 3).astype(bool)
    if not stages:
        raise ValueError("stages: need at least one warped source mask")
    views = list(views)
    fig, axs = plt.subplots(len(stages), len(views), figsize=(3.3 * len(views), 3.2 * len(stages) + 0.5),
                            squeeze=False)
    for row, (name, mask) in enumerate(stages.items()):
        mask = _numpy(mask, f"stages[{name!r}]", 3).astype(bool)
        if mask.shape != target.shape:
            raise ValueError(f"stages[{name!r}]: shape {mask.shape} differs from the target's {target.shape}")
        for col, view in enumerate(views):
            position = _index(view, target.shape, target, None if index is None else index[_FIXED_AXIS[view]])
            t, s = _plane(target, view, position), _plane(mask, view, position)
            rgb = np.zeros(t.shape + (3,))
            rgb[t & ~s], rgb[s & ~t], rgb[s & t] = TARGET_COLOUR, SOURCE_COLOUR, OVERLAP_COLOUR
            _show(axs[row, col], rgb, view)
            axs[row, col].set_title(f"{view} {position}", fontsize=9)
        axs[row, 0].set_ylabel(f"{name}\nDice {_dice(mask, target):.3f}", fontsize=10)
    handles = [Patch(color=TARGET_COLOUR, label="target only"), Patch(color=SOURCE_COLOUR, label="warped source only"),
               Patch(facecolor=OVERLAP_COLOUR, edgecolor="grey", label="both")]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95 if title else 1))
    return fig


def deformation_grid_figure(ddf, background=None, view: str = "sagittal", index: int | None = None,
                            step: int = 3, title: str | None = None) -> Figure:
    """The deformed voxel grid in one slice: lines every ``step`` voxels moved by the in-plane displacement.

    ``ddf`` ``(3, D, H, W)`` in voxels (pull-back: a target voxel x reads the source at x + u(x)); ``background``
    (a mask, e.g. the target skull) is drawn in grey. Crossing lines show folding.
    """
    ddf = _numpy(ddf, "ddf", 4)
    if ddf.shape[0] != 3:
        raise ValueError(f"ddf: expected shape (3, D, H, W), got {ddf.shape}")
    shape = ddf.shape[1:]
    focus = None if background is None else _numpy(background, "background", 3).astype(bool)
    position = _index(view, shape, focus, index)
    h_axis, v_axis = _PLANE_AXES[view]
    u_h, u_v = _plane(ddf[h_axis], view, position), _plane(ddf[v_axis], view, position)
    rows, cols = np.mgrid[0:u_h.shape[0], 0:u_h.shape[1]].astype(float)
    x, y = cols + u_h, rows + u_v
    magnitude = np.sqrt(u_h**2 + u_v**2)
    fig, ax = plt.subplots(figsize=(6.2, 5.6))
    if focus is not None:
        _show(ax, _plane(focus, view, position), view, cmap="Greys", vmin=0, vmax=2.5)
    else:
        _show(ax, np.zeros_like(u_h), view, cmap="Greys", vmin=0, vmax=1)
    for r in range(0, u_h.shape[0], step):
        ax.plot(x[r], y[r], color="tab:blue", lw=0.7)
    for c in range(0, u_h.shape[1], step):
        ax.plot(x[:, c], y[:, c], color="tab:blue", lw=0.7)
    ax.set_xlim(-0.5, u_h.shape[1] - 0.5)
    ax.set_ylim(-0.5, u_h.shape[0] - 0.5)
    if _TOP_IS_LOW_INDEX[view]:
        ax.invert_yaxis()
    ax.set_title(title or f"deformed grid, {view} slice {position} (in-plane |u| up to {magnitude.max():.1f} voxels)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def jacobian_figure(det, background=None, view: str = "sagittal", index: int | None = None,
                    title: str | None = None) -> Figure:
    """Jacobian determinant in one slice (blue = shrinking, red = growing, white = volume kept) with folded voxels
    (det <= 0) in black and the ``background`` mask outlined, beside a histogram of det over the whole grid."""
    det = _numpy(det, "det", 3)
    focus = None if background is None else _numpy(background, "background", 3).astype(bool)
    position = _index(view, det.shape, focus, index)
    plane = _plane(det, view, position)
    folded = plane <= 0
    spread = max(float(np.percentile(np.abs(det - 1), 99.5)), 0.05)
    norm = TwoSlopeNorm(vmin=1 - min(spread, 1.0), vcenter=1.0, vmax=1 + spread)
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1.15, 1]})
    image = _show(ax, np.clip(plane, norm.vmin, norm.vmax), view, cmap="RdBu_r", norm=norm)
    fig.colorbar(image, ax=ax, fraction=0.046, label="det J (1 = volume kept)")
    overlay = np.zeros(plane.shape + (4,))
    overlay[folded] = (0, 0, 0, 1)
    ax.imshow(overlay, origin="lower", interpolation="nearest")
    if _TOP_IS_LOW_INDEX[view]:
        ax.set_ylim(plane.shape[0] - 0.5, -0.5)
    if focus is not None:
        ax.contour(_plane(focus, view, position).astype(float), levels=[0.5], colors="tab:green", linewidths=0.8)
    percent = 100.0 * float((det <= 0).mean())
    ax.set_title(f"{view} slice {position}: {int(folded.sum())} folded voxels (black)", fontsize=10)
    values = det.ravel()
    low, high = float(np.percentile(values, 0.05)), float(np.percentile(values, 99.95))
    bins = np.linspace(min(low, -0.1), max(high, 2.0), 80)
    hist.hist(np.clip(values, bins[0], bins[-1]), bins=bins, color="tab:grey")
    hist.axvspan(bins[0], 0, color="black", alpha=0.15, label=f"folded (det ≤ 0): {percent:.3f} % of the grid")
    hist.axvline(1.0, color="tab:red", lw=1, ls="--", label="det = 1")
    hist.set_yscale("log")
    hist.set_xlabel("det J")
    hist.set_ylabel("voxels")
    hist.legend(fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def alpha_sweep_figure(rows: Sequence[Mapping[str, float]], title: str | None = None) -> Figure:
    """Dice after registration (and affine-only) and folding % against the regularization weight alpha.

    ``rows``: one dict per (alpha, pair) with keys ``alpha``, ``dice``, ``folding_percent`` and optionally
    ``dice_affine``, ``std_log_jacobian``; pairs with the same alpha are averaged (mean ± min/max bars).
    """
    if not rows:
        raise ValueError("rows: empty alpha sweep")
    alphas = sorted({float(r["alpha"]) for r in rows})

    def stats(key: str):
        groups = [[float(r[key]) for r in rows if float(r["alpha"]) == a and key in r] for a in alphas]
        if not all(groups):
            return None
        mean = np.array([np.mean(g) for g in groups])
        return mean, np.array([mean - [min(g) for g in groups], [max(g) for g in groups] - mean])

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    dice = stats("dice")
    left.errorbar(alphas, dice[0], yerr=dice[1], marker="o", capsize=3, label="deformable")
    affine = stats("dice_affine")
    if affine is not None:
        left.plot(alphas, affine[0], ls="--", color="tab:grey", label="affine only")
    left.set_xscale("log")
    left.set_xlabel("alpha (regularization weight)")
    left.set_ylabel("Dice after registration")
    left.axhline(0.9, color="tab:green", lw=0.8, ls=":", label="0.90")
    left.legend()
    left.grid(alpha=0.3)
    folding = stats("folding_percent")
    right.errorbar(alphas, folding[0], yerr=folding[1], marker="o", color="tab:red", capsize=3, label="folding %")
    right.set_xscale("log")
    right.set_yscale("symlog", linthresh=0.01)
    right.set_ylim(bottom=0)
    right.set_xlabel("alpha (regularization weight)")
    right.set_ylabel("folded voxels (det J ≤ 0), % of grid", color="tab:red")
    right.grid(alpha=0.3)
    roughness = stats("std_log_jacobian")
    if roughness is not None:
        twin = right.twinx()
        twin.plot(alphas, roughness[0], marker="s", ls="--", color="tab:purple")
        twin.set_ylabel("std of log det J (roughness)", color="tab:purple")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curves_figure(history: Sequence[Mapping], title: str | None = None) -> Figure:
    """The loss of every Adam step, level by level, relative to the level's first step (losses of different levels
    and stages have different scales; what matters is how much each level improves)."""
    if not history:
        raise ValueError("history: empty (nothing was optimized)")
    fig, ax = plt.subplots(figsize=(9, 3.6))
    start = 0
    colours = {"affine": "tab:orange", "deformable": "tab:blue"}
    for entry in history:
        losses = np.asarray(entry["loss"], dtype=float)
        if losses.size == 0:
            continue
        steps = np.arange(start, start + losses.size)
        ax.plot(steps, losses / max(abs(losses[0]), 1e-12), color=colours.get(entry["stage"], "tab:grey"))
        ax.axvline(start, color="lightgrey", lw=0.8)
        label = f"{entry['stage'][:3]} {entry['shape'][0]}³\n{losses[0]:.2g}→{losses[-1]:.2g}"
        ax.text(start + 1, 0.98, label, transform=ax.get_xaxis_transform(), fontsize=7, va="top")
        start += losses.size
    ax.set_xlabel("Adam step (all levels in a row)")
    ax.set_ylabel("loss / loss at the level's start")
    ax.set_ylim(0, 1.25)
    ax.set_title(title or "optimization: affine levels (orange), then deformable levels (blue), coarse → fine",
                 fontsize=10)
    fig.tight_layout()
    return fig
