"""Figures of notebooks 04–09 (cranialkit.viz.generative) that other tests do not draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from cranialkit.viz.generative import sampler_comparison, training_curves  # noqa: E402

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


def test_training_curves_leave_terms_not_computed_in_the_first_phase_blank():
    """With ``phase_start`` a term that is 0 throughout the warm-up starts at the phase start (no flat line at 0);
    terms computed from the start keep every step, and every panel marks the phase start."""
    steps, start = 100, 60
    history = {"kl_real": list(np.linspace(5, 1, steps)), "kl_fake": [0.0] * start + list(np.linspace(30, 20, 40))}
    fig = training_curves(history, phase_start=start)
    real_axis, fake_axis = fig.axes[:2]
    raw_real, raw_fake = real_axis.lines[0].get_xdata(), fake_axis.lines[0].get_xdata()
    assert raw_real[0] == 1 and len(raw_real) == steps
    assert raw_fake[0] == start + 1 and len(raw_fake) == steps - start
    assert np.min(fake_axis.lines[0].get_ydata()) >= 20  # the zeros of the warm-up are not drawn
    for ax in (real_axis, fake_axis):
        assert [line.get_xdata()[0] for line in ax.lines[2:]] == [start + 0.5]  # the dashed marker
    plt.close(fig)


def test_defect_directions_places_points_at_their_azimuth_and_elevation():
    """A direction straight up is drawn at elevation 90°, one along array axis 1 at azimuth 90°, elevation 0°; the
    sampled cones are coloured by their half-angle; the figure is not blank."""
    from cranialkit.viz.generative import defect_directions

    training = np.array([[0.0, 0.0, 2.0], [0.0, 3.0, 0.0], [np.nan, np.nan, np.nan]])
    axes = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 1.0]])
    fig = defect_directions(training, axes, np.array([20.0, 60.0]), title="test")
    ax = fig.axes[0]
    grey, cones = ax.collections[:2]
    np.testing.assert_allclose(grey.get_offsets()[:2], [[0.0, 90.0], [90.0, 0.0]], atol=1e-9)
    np.testing.assert_allclose(cones.get_offsets(), [[0.0, 0.0], [180.0, 45.0]], atol=1e-9)
    np.testing.assert_allclose(cones.get_array(), [20.0, 60.0])
    fig.canvas.draw()
    assert np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float).std() > 10
    plt.close(fig)
