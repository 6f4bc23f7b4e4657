"""Figures of geometric augmentation: a case before and after a transform, what noise changed, sample grids.

Taught in notebook 02_geometric_augmentation.

Samples are the dicts the transforms of ``cranialkit.augment.geometric`` take and return (``"defective"``,
``"implant"`` as bool arrays ``(D, H, W)``). The slices come from ``cranialkit.viz.slices.compare_grid`` (defective
skull blue, implant red).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from cranialkit.viz.slices import compare_grid

_KEYS = ("defective", "implant")


def _masks(sample: Mapping) -> dict[str, np.ndarray]:
    missing = [k for k in _KEYS if k not in sample]
    if missing:
        raise ValueError(f"sample has no {missing} mask (keys: {sorted(sample)})")
    return {k: np.asarray(sample[k], bool) for k in _KEYS}


def plot_transform(before: Mapping, after: Mapping, title: str | None = None, axes: str = "all",
                   spacing: Sequence[float] | None = None) -> Figure:
    """One case before and after a transform: two rows of slices through the implant."""
    return compare_grid({"before": _masks(before), "after": _masks(after)}, axes=axes, spacing=spacing, title=title,
                        focus="implant")


def plot_changes(before: Mapping, after: Mapping, key: str = "defective", title: str | None = None,
                 axes: str = "all", spacing: Sequence[float] | None = None) -> Figure:
    """What a transform changed in one mask (e.g. binary noise): kept, added and removed voxels."""
    if key not in before or key not in after:
        raise ValueError(f"plot_changes: both samples need a {key!r} mask")
    old, new = np.asarray(before[key], bool), np.asarray(after[key], bool)
    if old.shape != new.shape:
        raise ValueError(f"plot_changes: shapes differ {old.shape} vs {new.shape}")
    masks = {f"{key} (kept)": old & new, "added voxels": new & ~old, "removed voxels": old & ~new}
    colours = {f"{key} (kept)": "#1f77b4", "added voxels": "#2ca02c", "removed voxels": "#d62728"}
    # slices through the centre of the larger change (compare_grid centres on the `focus` mask)
    focus = "added voxels" if masks["added voxels"].sum() >= masks["removed voxels"].sum() else "removed voxels"
    return compare_grid({"change": masks}, axes=axes, spacing=spacing, title=title, colors=colours, focus=focus)


def plot_samples(samples: Sequence[Mapping], labels: Sequence[str] | None = None, axes: str = "coronal",
                 ncols: int = 4, title: str | None = None, spacing: Sequence[float] | None = None) -> Figure:
    """A grid of (augmented) samples, one panel each (one view), slices through each implant."""
    if not samples:
        raise ValueError("plot_samples: no samples")
    labels = list(labels) if labels is not None else [f"sample {i}" for i in range(len(samples))]
    if len(labels) != len(samples):
        raise ValueError(f"plot_samples: {len(labels)} labels for {len(samples)} samples")
    rows = {label: _masks(sample) for label, sample in zip(labels, samples)}
    return compare_grid(rows, axes=axes, ncols=ncols, spacing=spacing, title=title, focus="implant")
