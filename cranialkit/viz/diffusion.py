"""Figures of the latent diffusion notebook: autoencoder reconstructions, codebook usage, the forward noising
process on a latent, denoiser training curves, DDPM-vs-DDIM trade-offs and sample grids.

Taught in notebook 08_latent_diffusion. Every function is pure: arrays in, a matplotlib ``Figure`` out. Volumes
are 2-channel arrays ``(2, S, S, S)`` (defective skull, implant) as probabilities or masks; slices follow
:mod:`cranialkit.viz.slices` (coronal view: patient's right on the left, superior at the top).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cranialkit.viz.slices import compare_grid
from cranialkit.viz.training import moving_average

SKULL_LABEL = "defective skull"
IMPLANT_LABEL = "implant"
_COLOURS = {SKULL_LABEL: "#1f77b4", IMPLANT_LABEL: "#d62728"}


def _pair(volume: np.ndarray, name: str, threshold: float = 0.5) -> dict[str, np.ndarray]:
    x = np.asarray(volume)
    if x.ndim != 4 or x.shape[0] != 2:
        raise ValueError(f"{name}: expected a 2-channel volume (2, S, S, S), got shape {x.shape}")
    skull = x[0] > threshold
    return {SKULL_LABEL: skull, IMPLANT_LABEL: (x[1] > threshold) & ~skull}


def sample_grid(samples: np.ndarray, title: str = "Samples", n: int = 8, ncols: int = 4,
                view: str = "coronal", spacing_mm: float | None = None) -> Figure:
    """The first ``n`` samples ``(N, 2, S, S, S)`` (thresholded at 0.5) as one slice each through the implant;
    axes in mm when ``spacing_mm`` (the generator grid's voxel size) is given, else in voxels."""
    samples = np.asarray(samples)
    if samples.ndim != 5 or len(samples) == 0:
        raise ValueError(f"samples must have shape (N, 2, S, S, S) with N >= 1, got {samples.shape}")
    rows = {f"#{i}": _pair(samples[i], f"samples[{i}]") for i in range(min(n, len(samples)))}
    spacing = None if spacing_mm is None else (float(spacing_mm),) * 3
    return compare_grid(rows, axes=view, spacing=spacing, title=title, focus=IMPLANT_LABEL, colors=_COLOURS,
                        ncols=ncols)


def autoencoder_reconstructions(volumes: np.ndarray, reconstructions: Mapping[str, np.ndarray], n: int = 3,
                                view: str = "coronal") -> Figure:
    """Rows = cases; columns = the input and each autoencoder's reconstruction (thresholded at 0.5)."""
    volumes = np.asarray(volumes)
    if not reconstructions:
        raise ValueError("reconstructions: give at least one named set of reconstructions")
    n = min(n, len(volumes))
    rows: dict[str, dict[str, np.ndarray]] = {}
    for i in range(n):
        rows[f"case {i}: input"] = _pair(volumes[i], f"volumes[{i}]")
        for name, recon in reconstructions.items():
            if np.shape(recon)[1:] != volumes.shape[1:]:
                raise ValueError(f"reconstructions[{name!r}] has shape {np.shape(recon)}, volumes {volumes.shape}")
            rows[f"case {i}: {name}"] = _pair(recon[i], f"reconstructions[{name!r}][{i}]")
    return compare_grid(rows, axes=view, title="Autoencoder reconstructions", focus=IMPLANT_LABEL, colors=_COLOURS,
                        ncols=1 + len(reconstructions))


def codebook_usage_plot(usage: Mapping, title: str = "VQ-VAE codebook usage") -> Figure:
    """Bar chart of how often each code is chosen (sorted), with perplexity and dead codes in the title.

    ``usage`` as returned by :func:`cranialkit.generative.vqvae.codebook_usage` (``counts``, ``perplexity``,
    ``dead``, ``num_embeddings``).
    """
    counts = np.asarray(usage["counts"], dtype=float)
    if counts.ndim != 1 or counts.sum() <= 0:
        raise ValueError("usage['counts'] must be a non-empty 1-D histogram with at least one count")
    share = np.sort(counts / counts.sum())[::-1]
    fig, ax = plt.subplots(figsize=(8, 3.2), constrained_layout=True)
    ax.bar(np.arange(len(share)), share * 100, color=np.where(share > 0, "tab:blue", "tab:gray"), width=0.9)
    ax.axhline(100 / len(share), color="tab:orange", ls="--", lw=1, label="uniform use")
    ax.set(xlabel="code (sorted by use)", ylabel="share of latent positions (%)",
           title=f"{title}: perplexity {usage['perplexity']:.1f} of {len(share)}, "
                 f"{usage['dead']} dead code{'s' if usage['dead'] != 1 else ''}")
    ax.legend(fontsize=8)
    return fig


def noising_figure(latents: np.ndarray, decoded: np.ndarray, timesteps: Sequence[int], channel: int = 0,
                   alphas_cumprod: Sequence[float] | None = None) -> Figure:
    """The forward process as pictures: top row one channel of the noised latent ``z_t`` (middle slice),
    bottom row what the decoder makes of it (coronal slice, skull blue, implant red). ``latents``
    ``(T, C, s, s, s)``, ``decoded`` ``(T, 2, S, S, S)``; optional ``alphas_cumprod`` (ᾱ_t) for the titles."""
    latents, decoded = np.asarray(latents), np.asarray(decoded)
    if latents.ndim != 5 or decoded.ndim != 5 or not len(latents) == len(decoded) == len(timesteps):
        raise ValueError(f"need latents (T, C, s, s, s), decoded (T, 2, S, S, S) and T timesteps; got "
                         f"{latents.shape}, {decoded.shape}, {len(timesteps)}")
    n = len(timesteps)
    fig, axs = plt.subplots(2, n, figsize=(2.1 * n, 4.6), squeeze=False, constrained_layout=True)
    limit = float(np.abs(latents[:, channel]).max()) or 1.0
    for k, t in enumerate(timesteps):
        side = latents.shape[-1]
        image = latents[k, channel, :, side // 2, :].T  # coronal: axis 0 horizontal, axis 2 vertical (up)
        im = axs[0, k].imshow(image, origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit)
        label = f"t = {t}" + (f"\nᾱ = {alphas_cumprod[k]:.3f}" if alphas_cumprod is not None else "")
        axs[0, k].set_title(label, fontsize=9)
        masks = _pair(decoded[k], f"decoded[{k}]")
        size = decoded.shape[-1]
        rgb = np.ones((size, size, 3))
        rgb[masks[SKULL_LABEL][:, size // 2, :].T] = (0.12, 0.47, 0.71)
        rgb[masks[IMPLANT_LABEL][:, size // 2, :].T] = (0.84, 0.15, 0.16)
        axs[1, k].imshow(rgb, origin="lower")
        for ax in axs[:, k]:
            ax.set_xticks([])
            ax.set_yticks([])
    axs[0, 0].set_ylabel(f"latent z_t\n(channel {channel})")
    axs[1, 0].set_ylabel("decoded D(z_t / f)")
    fig.colorbar(im, ax=axs[0, :].tolist(), shrink=0.8, label="latent value")
    fig.suptitle("Forward diffusion: z_t = √ᾱ_t·z₀ + √(1−ᾱ_t)·ε")
    return fig


def loss_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], key: str = "mse",
                title: str = "Denoiser training", log: bool = True) -> Figure:
    """Loss ``key`` per step for each named history (raw, faint, and a moving average), log scale by default."""
    if not histories:
        raise ValueError("histories: give at least one named history")
    fig, ax = plt.subplots(figsize=(7, 3.6), constrained_layout=True)
    for name, history in histories.items():
        if key not in history or len(history[key]) == 0:
            raise ValueError(f"histories[{name!r}] has no {key!r} values (keys: {sorted(history)})")
        values = np.asarray(history[key], dtype=float)
        steps = np.arange(1, len(values) + 1)
        window = max(1, len(values) // 20)
        (line,) = ax.plot(steps, moving_average(values, window), lw=2, label=f"{name} (mean of {window})")
        ax.plot(steps, values, color=line.get_color(), alpha=0.2, lw=0.8)
    ax.set(xlabel="step", ylabel=key, title=title)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def sampler_tradeoff(results: Sequence[Mapping]) -> Figure:
    """Steps vs quality vs time: validity, diversity and seconds per sample against the number of denoising steps.

    ``results``: dicts with ``label`` (e.g. "ddim" / "ddpm"), ``steps``, ``valid`` (fraction), ``diversity``
    (mean pairwise 1 − Dice) and ``seconds_per_sample``; one line per label.
    """
    if not results:
        raise ValueError("results: need at least one measured sampler setting")
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    labels = list(dict.fromkeys(r["label"] for r in results))
    for label in labels:
        rows = sorted((r for r in results if r["label"] == label), key=lambda r: r["steps"])
        steps = [r["steps"] for r in rows]
        for ax, key in zip(axs, ("valid", "diversity", "seconds_per_sample")):
            ax.plot(steps, [r[key] for r in rows], "o-", label=label)
    for ax, ylabel in zip(axs, ("valid fraction", "diversity (1 − Dice)", "seconds per sample")):
        ax.set(xscale="log", xlabel="denoising steps", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axs[0].set_ylim(0, 1.02)
    axs[1].set_ylim(0, 1.02)
    axs[2].set_yscale("log")
    fig.suptitle("Sampling: number of steps vs quality vs time")
    return fig
