"""Figures for the generative notebooks: training curves, sample grids (slices and 3D), latent projections and
sampler comparisons. Every function is pure and returns a matplotlib Figure.

Taught in notebooks 04_vae, 05_wgan_gp, 06_introvae, 07_soft_introvae and 09_uds_vs_random.

Samples are 2-channel arrays ``(n, 2, S, S, S)`` (channel 0 = defective skull, 1 = implant), probabilities or
binary. Orientation follows the phantoms: axis 0 = right→left, axis 1 = anterior→posterior (face at low index),
axis 2 = inferior→superior. Sagittal views put the face on the left and the vault on top.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection
from scipy.ndimage import gaussian_filter
from skimage.measure import marching_cubes

SKULL_RGB = np.array([0.85, 0.85, 0.80])
IMPLANT_RGB = np.array([0.95, 0.25, 0.20])
VIEWS = ("sagittal", "coronal", "axial")


def _check_samples(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 4:
        x = x[None]
    if x.ndim != 5 or x.shape[1] != 2:
        raise ValueError(f"samples must have shape (n, 2, S, S, S) (skull, implant), got {np.shape(samples)}")
    if len(x) == 0:
        raise ValueError("no samples to show")
    return x


def _view(volume: np.ndarray, view: str, mode: str) -> np.ndarray:
    """A 2D image of one channel ``(S, S, S)``: the central slice or the maximum projection, display-oriented."""
    axis = VIEWS.index(view)
    if mode == "slice":
        image = np.take(volume, volume.shape[axis] // 2, axis=axis)
    elif mode == "mip":
        image = volume.max(axis=axis)
    else:
        raise ValueError(f"mode must be 'slice' or 'mip', got {mode!r}")
    # sagittal (j, k) and coronal (i, k): superior up; axial (i, j): anterior up.
    return image.T[::-1] if view in ("sagittal", "coronal") else image.T


def pair_image(sample: np.ndarray, view: str = "sagittal", mode: str = "slice") -> np.ndarray:
    """RGB image ``(S, S, 3)`` of one sample: skull in bone colour, implant in red (probabilities blended)."""
    skull, implant = _view(sample[0], view, mode), _view(sample[1], view, mode)
    rgb = skull[..., None] * SKULL_RGB + implant[..., None] * IMPLANT_RGB
    return np.clip(rgb, 0.0, 1.0)


def sample_grid(samples: np.ndarray, n: int = 8, views: Sequence[str] = VIEWS, mode: str = "slice",
                title: str = "Generated samples", labels: Sequence[str] | None = None) -> Figure:
    """Grid of ``n`` samples (columns) × ``views`` (rows): central slices (``mode="slice"``) or maximum
    projections (``mode="mip"``, a quick 3D impression) with skull grey and implant red."""
    x = _check_samples(samples)[:n]
    fig, axes = plt.subplots(len(views), len(x), figsize=(1.6 * len(x) + 0.6, 1.7 * len(views) + 0.5), squeeze=False)
    for col, sample in enumerate(x):
        for row, view in enumerate(views):
            ax = axes[row, col]
            ax.imshow(pair_image(sample, view, mode), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(view, fontsize=9)
            if row == 0:
                ax.set_title(labels[col] if labels is not None else f"#{col}", fontsize=9)
    fig.suptitle(f"{title} ({'central slices' if mode == 'slice' else 'maximum projections'}; "
                 "grey = defective skull, red = implant)", fontsize=10)
    fig.tight_layout()
    return fig


def render_samples_3d(samples: np.ndarray, n: int = 4, threshold: float = 0.5, title: str = "Generated samples in 3D",
                      elevation: float = 20.0, azimuth: float = -60.0, smooth_sigma: float = 0.6) -> Figure:
    """Marching-cubes surfaces of ``n`` samples (skull grey, implant red), viewed from the front-left and above.

    Each channel is blurred with a Gaussian of ``smooth_sigma`` voxels before meshing so that binary volumes do
    not look like stacked cubes (0 turns it off)."""
    x = _check_samples(samples)[:n]
    fig = plt.figure(figsize=(3.4 * len(x), 3.6))
    for col, sample in enumerate(x):
        ax = fig.add_subplot(1, len(x), col + 1, projection="3d")
        size = sample.shape[-1]
        for channel, colour in ((0, SKULL_RGB), (1, IMPLANT_RGB)):
            volume = np.pad(sample[channel], 1)
            if smooth_sigma > 0:
                volume = gaussian_filter(volume, smooth_sigma)
            if volume.max() <= threshold or volume.min() >= threshold:
                continue
            verts, faces, _, _ = marching_cubes(volume, level=threshold)
            mesh = Poly3DCollection(verts[faces] - 1, facecolors=colour, edgecolor="none", shade=True)
            ax.add_collection3d(mesh)
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)  # anterior (low axis-1 index) towards the viewer's left
        ax.set_zlim(0, size)
        ax.set_box_aspect((1, 1, 1), zoom=1.35)
        ax.view_init(elev=elevation, azim=azimuth)
        ax.set_axis_off()
        ax.set_title(f"#{col}", fontsize=9)
    fig.suptitle(f"{title} (grey = defective skull, red = implant)", fontsize=10)
    fig.tight_layout()
    return fig


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def training_curves(history: Mapping[str, Sequence[float]], title: str = "Training curves",
                    keys: Sequence[str] | None = None, smooth: int | None = None,
                    phase_start: int | None = None) -> Figure:
    """One panel per loss term against the training step: raw values (faint) and a moving average.

    ``phase_start``: the step at which a second training phase begins (e.g. the adversarial phase after a VAE
    warm-up). Each panel marks it with a dashed line, and a term that is exactly 0 at every step before it (not
    computed in the first phase) is left blank there instead of drawn as a flat line at 0.
    """
    keys = list(keys) if keys is not None else [k for k, v in history.items() if len(v)]
    if not keys:
        raise ValueError("history has no loss terms to plot")
    ncols = min(3, len(keys))
    nrows = -(-len(keys) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols, 2.8 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        values = np.asarray(history[key], dtype=float)
        steps = np.arange(1, len(values) + 1)
        window = smooth or max(1, len(values) // 20)
        if phase_start is not None and 0 < phase_start < len(values) and np.all(values[:phase_start] == 0):
            values, steps = values[phase_start:], steps[phase_start:]
            window = min(window, max(1, len(values) // 5))
        ax.plot(steps, values, color="tab:blue", alpha=0.3, lw=0.8)
        averaged = _smooth(values, window)
        ax.plot(steps[window - 1:] if window > 1 and len(values) >= window else steps, averaged, color="tab:blue",
                lw=1.8, label=f"moving average ({window})")
        if phase_start is not None and 0 < phase_start < len(history[key]):
            ax.axvline(phase_start + 0.5, color="grey", ls="--", lw=1)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.set_xlim(0, len(history[key]) + 1)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle(title if phase_start is None else f"{title} (dashed: step {phase_start}, the second phase starts)")
    fig.tight_layout()
    return fig


def pca_2d(points: np.ndarray, basis_from: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Project ``(n, d)`` points on the first two principal axes of ``basis_from`` (default: the points)."""
    p = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    ref = p if basis_from is None else np.asarray(basis_from, dtype=np.float64).reshape(len(basis_from), -1)
    mean = ref.mean(axis=0)
    _, singular, vt = np.linalg.svd(ref - mean, full_matrices=False)
    explained = singular[:2] ** 2 / max(float((singular**2).sum()), 1e-12)
    return (p - mean) @ vt[:2].T, explained


def latent_projection(groups: Mapping[str, np.ndarray | None], title: str = "Latent space (PCA)") -> Figure:
    """Scatter of several point sets ``{label: (n, d) latents}`` in one 2D PCA frame fitted on all of them.

    ``None`` groups are skipped (e.g. training latents of a GAN, which has no encoder)."""
    groups = {k: np.asarray(v).reshape(len(v), -1) for k, v in groups.items() if v is not None and len(v)}
    if not groups:
        raise ValueError("no latent points to plot")
    allpoints = np.concatenate(list(groups.values()))
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    markers = ["o", "x", "^", "s", "+", "d"]
    explained = np.zeros(2)
    for (label, pts), marker in zip(groups.items(), markers * 3):
        xy, explained = pca_2d(pts, allpoints)
        ax.scatter(xy[:, 0], xy[:, 1], s=28 if marker != "x" else 22, marker=marker, label=f"{label} ({len(pts)})",
                   alpha=0.75)
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def latent_scatter(groups: Mapping[str, np.ndarray], dims: tuple[int, int] = (0, 1),
                   title: str = "Latent points (two coordinates)") -> Figure:
    """Side-by-side scatter of two latent coordinates for each point set (e.g. random vs UDS), equal axes."""
    fig, axes = plt.subplots(1, len(groups), figsize=(3.8 * len(groups), 3.8), squeeze=False)
    limit = max(float(np.abs(np.asarray(v).reshape(len(v), -1)[:, list(dims)]).max()) for v in groups.values()) * 1.05
    for ax, (label, pts) in zip(axes[0], groups.items()):
        flat = np.asarray(pts).reshape(len(pts), -1)
        ax.scatter(flat[:, dims[0]], flat[:, dims[1]], s=14)
        circle = plt.Circle((0, 0), 2.0, fill=False, ls="--", color="grey", lw=0.8)
        ax.add_patch(circle)
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.set_xlabel(f"z[{dims[0]}]")
        ax.set_ylabel(f"z[{dims[1]}]")
        ax.set_title(f"{label} (n={len(flat)})", fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}; dashed circle: radius 2", fontsize=10)
    fig.tight_layout()
    return fig


def sampler_comparison(results: Mapping[str, Mapping[str, Mapping[str, float]]],
                       measures: Sequence[tuple[str, str]] | None = None,
                       title: str = "Random vs uniform deterministic sampling") -> Figure:
    """Grouped bars: for each measure, one group per generator with one bar per sampler.

    ``results[generator][sampler][measure]`` is a number; ``measures`` = ``[(key, label), ...]`` where the label
    says which direction is better."""
    generators = list(results)
    samplers = sorted({s for r in results.values() for s in r})
    if measures is None:
        measures = [(k, k) for k in next(iter(next(iter(results.values())).values()))]
    fig, axes = plt.subplots(1, len(measures), figsize=(3.6 * len(measures), 3.6), squeeze=False)
    width = 0.8 / max(1, len(samplers))
    for ax, (key, label) in zip(axes[0], measures):
        for k, sampler in enumerate(samplers):
            values = [results[g].get(sampler, {}).get(key, np.nan) for g in generators]
            ax.bar(np.arange(len(generators)) + (k - (len(samplers) - 1) / 2) * width, values, width, label=sampler)
        ax.set_xticks(np.arange(len(generators)))
        ax.set_xticklabels(generators, rotation=30, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()  # one legend above the panels: none covers a bar
    fig.legend(handles, labels, loc="upper right", ncol=len(samplers), fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def nearest_dice_histogram(values: Mapping[str, np.ndarray], title: str = "Nearest-training-case Dice") -> Figure:
    """Histogram of each sample's Dice with its most similar training case (1 = a copy of a training case)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    bins = np.linspace(0, 1, 41)
    for label, v in values.items():
        ax.hist(np.asarray(v), bins=bins, alpha=0.55, label=f"{label} (mean {np.mean(v):.2f})")
    ax.axvline(1.0, color="k", ls="--", lw=0.8)
    ax.set_xlabel("Dice with the nearest training case")
    ax.set_ylabel("samples")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _azimuth_elevation(directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Degrees: azimuth in the plane of array axes 0 and 1, elevation towards axis 2 (superior)."""
    d = np.asarray(directions, dtype=np.float64)
    d = d / np.linalg.norm(d, axis=1, keepdims=True).clip(min=1e-12)
    return np.degrees(np.arctan2(d[:, 1], d[:, 0])), np.degrees(np.arcsin(np.clip(d[:, 2], -1.0, 1.0)))


def defect_directions(training_directions: np.ndarray, cone_axes: np.ndarray, half_angles_deg: np.ndarray,
                      title: str = "Where the defects are") -> Figure:
    """Azimuth/elevation map (degrees, array axes; elevation 90° = the top of the head) of the training implants'
    directions (grey) and a generator's sampled cone axes, coloured by the cone's half-angle.

    If the generator covers the data, its points spread over the same places as the grey ones instead of sitting
    in one spot (mode collapse). Inputs: ``(n, 3)`` direction vectors (any length) and ``(m,)`` half-angles.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(*_azimuth_elevation(training_directions), c="grey", s=25, label="training implants (centre of mass)")
    points = ax.scatter(*_azimuth_elevation(cone_axes), c=np.asarray(half_angles_deg), cmap="plasma", s=20,
                        edgecolor="k", linewidth=0.3, label="sampled cone axes")
    fig.colorbar(points, ax=ax, label="half-angle θ (degrees)")
    ax.set(xlabel="azimuth (degrees)", ylabel="elevation (degrees)", xlim=(-180, 180), ylim=(-90, 90), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig
