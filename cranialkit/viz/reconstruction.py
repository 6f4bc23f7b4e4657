"""Figures of reconstruction results: evaluation tables per defect class, and best/worst cases as slices.

Taught in notebook 10_unet_training.

``rows`` and ``summary`` are what ``cranialkit.reconstruction.evaluation`` returns (per-case dicts with ``dsc``,
``bdsc``, ``hd95``; per-class means from ``summarize_by_class``). Case figures colour the result of a prediction
against the truth: correct implant voxels green, missed implant voxels red, extra (wrong) voxels orange, the
defective skull blue.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cranialkit.viz.slices import compare_grid
from cranialkit.volume import Volume

_SUMMARY_ROWS = ("mean of classes", "all cases")


def _fmt(value: float, digits: int = 3) -> str:
    return "inf" if math.isinf(value) else ("–" if math.isnan(value) else f"{value:.{digits}f}")


def plot_class_table(summary: Sequence[Mapping], title: str = "Test results per defect class") -> Figure:
    """The per-class summary as a table (n, DSC, bDSC, HD95 mm) next to a bar chart of DSC and bDSC per class."""
    if not summary:
        raise ValueError("plot_class_table: the summary is empty")
    classes = [s for s in summary if s["defect_class"] not in _SUMMARY_ROWS]
    fig, (ax_table, ax_bar) = plt.subplots(
        1, 2, figsize=(12, 0.45 * len(summary) + 2.2), gridspec_kw={"width_ratios": [1.1, 1]}
    )
    ax_table.set_axis_off()
    cells = [[s["defect_class"], str(s["n"]), _fmt(s["dsc"]), _fmt(s["bdsc"]), _fmt(s["hd95"], 2)] for s in summary]
    table = ax_table.table(cellText=cells, colLabels=["defect class", "n", "DSC", "bDSC", "HD95 (mm)"],
                           loc="center", cellLoc="center", colWidths=[0.36, 0.09, 0.16, 0.16, 0.23])
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1, 1.4)
    for (row, _), cell in table.get_celld().items():
        if row == 0 or (row > 0 and summary[row - 1]["defect_class"] in _SUMMARY_ROWS):
            cell.set_text_props(weight="bold")
    y = np.arange(len(classes))
    ax_bar.barh(y - 0.2, [s["dsc"] for s in classes], height=0.4, color="tab:green", label="DSC")
    ax_bar.barh(y + 0.2, [s["bdsc"] for s in classes], height=0.4, color="tab:olive", label="boundary DSC")
    ax_bar.set_yticks(y, [s["defect_class"] for s in classes])
    ax_bar.invert_yaxis()
    ax_bar.set(xlim=(0, 1), xlabel="Dice (implant)")
    ax_bar.axvline(0.85, color="grey", ls=":", lw=1)
    ax_bar.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_case_scores(rows: Sequence[Mapping], metric: str = "dsc", title: str | None = None) -> Figure:
    """Every test case's score (dots) per defect class, with the class mean (bar): where the spread lies."""
    if not rows:
        raise ValueError("plot_case_scores: no rows")
    classes = sorted({r["defect_class"] for r in rows})
    fig, ax = plt.subplots(figsize=(1.3 * len(classes) + 2.5, 3.8))
    for i, name in enumerate(classes):
        values = [r[metric] for r in rows if r["defect_class"] == name and math.isfinite(r[metric])]
        ax.bar(i, np.mean(values) if values else 0, color="tab:green" if metric != "hd95" else "tab:red", alpha=0.35)
        jitter = np.linspace(-0.2, 0.2, len(values)) if len(values) > 1 else np.zeros(len(values))
        ax.scatter(i + jitter, values, color="black", s=14, zorder=3)
    ax.set_xticks(range(len(classes)), classes, rotation=20)
    ax.set_ylabel({"dsc": "DSC", "bdsc": "boundary DSC", "hd95": "HD95 (mm)"}.get(metric, metric))
    if metric != "hd95":
        ax.set_ylim(0, 1)
    ax.set_title(title or f"{metric.upper()} per test case")
    fig.tight_layout()
    return fig


def outcome_masks(defective: np.ndarray, truth: np.ndarray, prediction: np.ndarray) -> dict[str, np.ndarray]:
    """Masks to draw for one prediction: defective skull, correct, missed and extra implant voxels."""
    defective, truth, prediction = (np.asarray(a, bool) for a in (defective, truth, prediction))
    if not (defective.shape == truth.shape == prediction.shape):
        raise ValueError(f"outcome_masks: shapes differ {defective.shape}, {truth.shape}, {prediction.shape}")
    return {
        "defective skull": defective,
        "prediction correct": truth & prediction,
        "implant missed": truth & ~prediction,
        "error (extra voxels)": prediction & ~truth,
    }


def plot_cases(
    examples: Mapping[str, tuple[Volume | np.ndarray, Volume | np.ndarray, Volume | np.ndarray]],
    axes: str = "all",
    title: str | None = None,
) -> Figure:
    """Slices through the implant of each example: ``label → (defective, true implant, predicted implant)``.

    Green = correct, red = missed, orange = extra voxels, blue = defective skull. The four masks are disjoint, so
    their drawing order does not matter; the largest implant mask goes last because ``compare_grid`` slices through
    the centre of mass of each case's last mask.
    """
    if not examples:
        raise ValueError("plot_cases: no examples")
    rows = {}
    spacing = None
    for label, (defective, truth, prediction) in examples.items():
        if isinstance(defective, Volume):
            spacing = defective.spacing
        masks = outcome_masks(*(a.array if isinstance(a, Volume) else a for a in (defective, truth, prediction)))
        implant_parts = sorted(list(masks)[1:], key=lambda k: int(masks[k].sum()))
        rows[label] = {k: masks[k] for k in ["defective skull", *implant_parts]}
    colours = {"defective skull": "#1f77b4", "prediction correct": "#2ca02c", "implant missed": "#d62728",
               "error (extra voxels)": "#ff7f0e"}
    return compare_grid(rows, axes=axes, spacing=spacing, title=title, colors=colours, alpha=0.65)
