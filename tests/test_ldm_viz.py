"""Figures of notebook 08 (cranialkit.viz.diffusion): drawn, not blank, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from test_vqvae import shell_pairs

from cranialkit.generative.vqvae import codebook_usage
from cranialkit.viz import diffusion as vd


def _pixels(fig: Figure) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)


def _assert_drawn(fig: Figure) -> None:
    assert isinstance(fig, Figure)
    pixels = _pixels(fig)
    assert pixels.std() > 10  # not a blank canvas
    # the skull blue and implant red of the overlays, or coloured curves, are present
    assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 60).mean() > 1e-4


@pytest.fixture(scope="module")
def pairs() -> np.ndarray:
    return shell_pairs(4)


def test_sample_grid_and_reconstructions(pairs):
    _assert_drawn(vd.sample_grid(pairs, title="toy", n=4, ncols=2))
    side = pairs.shape[-1]
    in_voxels = vd.sample_grid(pairs, n=1, ncols=1).axes[0].get_xlim()
    in_mm = vd.sample_grid(pairs, n=1, ncols=1, spacing_mm=6.5).axes[0].get_xlim()
    assert abs(in_voxels[1] - in_voxels[0]) == pytest.approx(side, rel=0.1)
    assert abs(in_mm[1] - in_mm[0]) == pytest.approx(6.5 * side, rel=0.1)  # axes in mm, not voxels
    fig = vd.autoencoder_reconstructions(pairs, {"A": pairs * 0.9, "B": pairs}, n=2)
    _assert_drawn(fig)
    assert len([ax for ax in fig.axes if ax.axison]) == 2 * 3
    with pytest.raises(ValueError, match="2-channel"):
        vd.sample_grid(pairs[:, :1])
    with pytest.raises(ValueError, match="reconstructions"):
        vd.autoencoder_reconstructions(pairs, {"A": pairs[:, :, :8]})


def test_codebook_usage_plot():
    usage = codebook_usage(np.array([0, 0, 1, 2, 2, 2]), num_embeddings=6)
    fig = vd.codebook_usage_plot(usage)
    _assert_drawn(fig)
    assert "3 dead codes" in fig.axes[0].get_title()
    heights = sorted((p.get_height() for p in fig.axes[0].patches), reverse=True)
    np.testing.assert_allclose(heights[:3], [50.0, 100 / 3, 100 / 6])


def test_noising_figure(pairs):
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(3, 2, 4, 4, 4))
    fig = vd.noising_figure(latents, pairs[:3], [0, 500, 999], alphas_cumprod=[1.0, 0.1, 0.0])
    _assert_drawn(fig)
    assert "t = 500" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="timesteps"):
        vd.noising_figure(latents, pairs[:3], [0, 1])


def test_loss_curves_and_sampler_tradeoff():
    history = {"mse": list(np.linspace(1.0, 0.1, 50))}
    _assert_drawn(vd.loss_curves({"a": history, "b": {"mse": [0.5] * 10}}))
    with pytest.raises(ValueError, match="no 'mse'"):
        vd.loss_curves({"a": {"loss": [1.0]}})
    rows = [{"label": "ddim", "steps": s, "valid": 0.9, "diversity": 0.2, "seconds_per_sample": s / 100}
            for s in (10, 50)] + [{"label": "ddpm", "steps": 1000, "valid": 0.95, "diversity": 0.21,
                                   "seconds_per_sample": 10.0}]
    fig = vd.sampler_tradeoff(rows)
    _assert_drawn(fig)
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [2, 1]
    with pytest.raises(ValueError, match="at least one"):
        vd.sampler_tradeoff([])
