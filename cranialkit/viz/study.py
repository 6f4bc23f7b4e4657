"""Figures of the augmentation study (notebook 12_augmentation_study): bar charts per configuration, and the
learning curves of the scarce-data study on real skulls."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator

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


_CURVE_LABELS = {"dsc": "DSC (higher is better)", "bdsc": "boundary DSC (higher is better)",
                 "hd95": "HD95 in mm (lower is better)"}


def _spans_factor_four(curve, metric: str) -> bool:
    """True when the metric's values (positive) span a factor of 4 or more: a log axis reads them better."""
    values = curve[[metric, f"{metric} min", f"{metric} max"]].to_numpy(dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    return values.size > 0 and values.max() >= 4 * values.min()


def plot_learning_curves(curve, metrics: tuple[str, ...] = ("dsc", "hd95"),
                         title: str = "How many real skulls is each augmentation worth?") -> Figure:
    """The learning curves of the scarce-data study: each metric against the number of real training skulls (log
    scale), one line per configuration through the means over seeds, with the range over seeds as a band. HD95 is drawn
    on a log axis when its values span a factor of 4, so that one poor configuration does not flatten the others.

    ``curve``: the DataFrame of :func:`cranialkit.study.learning_curve_table`.
    """
    names = list(dict.fromkeys(curve["configuration"]))
    sizes = sorted({int(n) for n in curve["cases"]})
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.2 * len(metrics), 4.6), squeeze=False)
    colours = plt.cm.tab10(np.arange(max(len(names), 1)) % 10)
    markers = "osD^vP*X"
    for ax, metric in zip(axes[0], metrics):
        for index, name in enumerate(names):
            part = curve[curve["configuration"] == name].sort_values("cases")
            part = part[np.isfinite(part[metric].to_numpy(dtype=float))]
            if part.empty:
                continue
            x = part["cases"].to_numpy(dtype=float)
            colour = colours[index]
            ax.plot(x, part[metric].to_numpy(dtype=float), marker=markers[index % len(markers)], color=colour,
                    label=name, linewidth=1.8, markersize=5)
            ax.fill_between(x, part[f"{metric} min"].to_numpy(dtype=float), part[f"{metric} max"].to_numpy(dtype=float),
                            color=colour, alpha=0.15, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(n) for n in sizes])
        if metric == "hd95" and _spans_factor_four(curve, metric):
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.minorticks_off()
        ax.set_xlabel("real training skulls")
        ax.set_title(_CURVE_LABELS.get(metric, metric), fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=9, frameon=False)
    most, fewest = (int(curve["seeds"].max()), int(curve["seeds"].min())) if len(curve) else (0, 0)
    if most <= 1:
        spread = "one seed: no spread shown"
    elif fewest == most:
        spread = f"line: mean over {most} seeds; band: their range"
    else:
        spread = f"line: mean over the seeds run ({fewest} to {most}); band: their range"
    fig.suptitle(f"{title}\n{spread}")
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // 3), 1, 1))
    return fig
