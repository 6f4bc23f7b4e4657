"""Figures of notebooks 04–09 (cranialkit.viz.generative) that other tests do not draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from cranialkit.viz.generative import sampler_comparison  # noqa: E402

RESULTS = {
    generator: {"random": {"valid": 0.9, "diversity": 0.5}, "uds": {"valid": 0.95, "diversity": 0.55}}
    for generator in ("vae", "wgan_gp", "introvae", "soft_introvae")
}


def test_sampler_comparison_draws_one_bar_per_generator_and_sampler_and_the_legend_covers_none():
    fig = sampler_comparison(RESULTS, measures=[("valid", "valid fraction"), ("diversity", "diversity")])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert len(fig.legends) == 1, "one legend for the whole figure"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["random", "uds"]
    legend_box = fig.legends[0].get_window_extent(renderer)
    for ax, key in zip(fig.axes, ("valid", "diversity")):
        bars = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert len(bars) == 4 * 2
        heights = sorted(round(b.get_height(), 6) for b in bars)
        expected = sorted(RESULTS[g][s][key] for g in RESULTS for s in ("random", "uds"))
        assert heights == pytest.approx(expected)
        for bar in bars:
            assert not legend_box.overlaps(bar.get_window_extent(renderer)), "the legend hides a bar"
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
    assert pixels.std() > 10
