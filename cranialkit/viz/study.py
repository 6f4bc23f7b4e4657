"""Figures of the augmentation study (notebook 12_augmentation_study): bar charts per configuration."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

_LABELS = {"dsc": "DSC (higher is better)", "bdsc": "boundary DSC (higher is better)",
           "hd95": "HD95 in mm (lower is better)"}


def plot_study(table, title: str = "Augmentation study") -> Figure:
    """Horizontal bars of mean DSC, bDSC and HD95 per configuration, with the std over seeds as error bars.

    ``table``: the DataFrame of :func:`cranialkit.study.results_table`.
    """
    names = list(table.index)
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.45 * len(names) + 1.8), sharey=True)
    y = np.arange(len(names))
    colours = plt.cm.tab20(np.linspace(0, 1, max(len(names), 2)))
    for ax, metric in zip(axes, ("dsc", "bdsc", "hd95")):
        values = table[metric].to_numpy(dtype=float)
        errors = np.nan_to_num(table[f"{metric} std"].to_numpy(dtype=float))
        ax.barh(y, np.nan_to_num(values), xerr=errors, color=colours[: len(names)], capsize=3)
        for yi, value in zip(y, values):
            if np.isfinite(value):
                ax.text(value, yi, f" {value:.2f}", va="center", fontsize=8)
        ax.set_title(_LABELS[metric], fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        if metric != "hd95":
            ax.set_xlim(0, 1.05)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_class_heatmap(table, title: str = "Mean test DSC per defect class") -> Figure:
    """A heat map of the per-class DSC columns (``DSC <class>``) of the study table."""
    columns = [c for c in table.columns if c.startswith("DSC ")]
    values = table[columns].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 4, 0.45 * len(table) + 1.5))
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(columns)), [c[4:] for c in columns], rotation=30, ha="right")
    ax.set_yticks(range(len(table)), list(table.index))
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if value < 0.6 else "black")
    fig.colorbar(image, ax=ax, label="DSC")
    ax.set_title(title)
    fig.tight_layout()
    return fig
