"""Training curves of the reconstruction network: loss, learning rate and validation metrics per step.

Taught in notebook 10_unet_training.

``history`` is the dict the trainer keeps (``TrainResult.history``, ``history.json`` in the run folder):
``{"train": [{"step", "loss", "lr", "seconds"}, ...], "val": [{"step", "dsc", "bdsc", "hd95"}, ...]}``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what is there so far)."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (cumulative[1:] - cumulative[np.maximum(np.arange(1, len(values) + 1) - window, 0)]) / counts


def _check(history: dict) -> None:
    if not isinstance(history, dict) or "train" not in history:
        raise ValueError("history must be a dict with a 'train' list (and optionally 'val'), as the trainer writes")
    if not history["train"]:
        raise ValueError("history has no training steps to plot")


def plot_history(history: dict, title: str = "Training", smooth: int | None = None) -> Figure:
    """Two panels: soft Dice loss per step (raw and smoothed, with the learning rate) and validation DSC, bDSC
    and HD95 (mm, right axis) at the validation steps."""
    _check(history)
    steps = np.array([r["step"] for r in history["train"]])
    loss = np.array([r["loss"] for r in history["train"]])
    lr = np.array([r["lr"] for r in history["train"]])
    window = smooth or max(1, len(steps) // 25)
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    ax_loss.plot(steps, loss, color="tab:blue", alpha=0.25, lw=0.8, label="loss (per step)")
    ax_loss.plot(steps, moving_average(loss, window), color="tab:blue", lw=2, label=f"loss (mean of {window})")
    ax_loss.set(xlabel="step", ylabel="soft Dice loss", ylim=(0, 1.02), title="training loss")
    ax_lr = ax_loss.twinx()
    ax_lr.plot(steps, lr, color="tab:gray", ls="--", lw=1, label="learning rate")
    ax_lr.set_ylabel("learning rate", color="tab:gray")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    handles = ax_loss.get_legend_handles_labels()[0] + ax_lr.get_legend_handles_labels()[0]
    ax_loss.legend(handles=handles, loc="upper right", fontsize=8)

    val = history.get("val") or []
    if val:
        vsteps = [r["step"] for r in val]
        ax_val.plot(vsteps, [r["dsc"] for r in val], "o-", color="tab:green", label="DSC")
        ax_val.plot(vsteps, [r["bdsc"] for r in val], "s-", color="tab:olive", label="boundary DSC")
        ax_val.set(xlabel="step", ylabel="Dice", ylim=(0, 1.02), title="validation (implant)")
        ax_hd = ax_val.twinx()
        hd = [r["hd95"] if math.isfinite(r["hd95"]) else np.nan for r in val]
        ax_hd.plot(vsteps, hd, "^--", color="tab:red", label="HD95 (mm)")
        ax_hd.set_ylabel("HD95 (mm)", color="tab:red")
        handles = ax_val.get_legend_handles_labels()[0] + ax_hd.get_legend_handles_labels()[0]
        ax_val.legend(handles=handles, loc="center right", fontsize=8)
    else:
        ax_val.text(0.5, 0.5, "no validation steps", ha="center", va="center", transform=ax_val.transAxes)
        ax_val.set_axis_off()
    fig.suptitle(title)
    return fig


def plot_histories(histories: dict[str, dict], metric: str = "dsc", title: str = "Comparison") -> Figure:
    """Several runs side by side: smoothed training loss and a validation metric, one colour per run."""
    if not histories:
        raise ValueError("plot_histories: give at least one named history")
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, history in histories.items():
        _check(history)
        steps = np.array([r["step"] for r in history["train"]])
        loss = np.array([r["loss"] for r in history["train"]])
        (line,) = ax_loss.plot(steps, moving_average(loss, max(1, len(steps) // 25)), lw=2, label=name)
        val = history.get("val") or []
        if val:
            ax_val.plot([r["step"] for r in val], [r[metric] for r in val], "o-", color=line.get_color(), label=name)
    ax_loss.set(xlabel="step", ylabel="soft Dice loss (smoothed)", ylim=(0, 1.02), title="training loss")
    ax_val.set(xlabel="step", ylabel=metric, title=f"validation {metric}")
    if metric != "hd95":
        ax_val.set_ylim(0, 1.02)
    ax_loss.legend(fontsize=8)
    ax_val.legend(fontsize=8)
    fig.suptitle(title)
    return fig
