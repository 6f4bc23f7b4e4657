"""The sample checks of notebooks 04–07 (cranialkit.generative.report): consistent with the measures they gather."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shell_pairs

from cranialkit.generative import get_generator
from cranialkit.generative.report import check_samples, defect_places
from cranialkit.generative.sampling import valid_fraction, vault_gap_fraction, volume_diversity


def _vae(output: str = "skull_and_cap"):
    return get_generator("vae")(resolution=16, latent_dim=8, base_channels=4, max_channels=16, output=output)


def test_training_pairs_checked_against_themselves_are_copies():
    training = shell_pairs(n=6)
    report = check_samples(_vae(), training, training, n_draws=1, device="cpu")
    np.testing.assert_allclose(report.nearest_dice, 1.0)
    assert report.valid == valid_fraction(training) and report.valid_by_seed == [] and report.seeds == [0]
    assert report.diversity == pytest.approx(report.training_diversity)
    assert report.vault_gap == pytest.approx(report.training_vault_gap)
    assert sum(report.rejections.values()) == len(training)


def test_report_of_samples_gathers_every_draw():
    model, training = _vae(), shell_pairs(n=6)
    samples = model.sample(6, seed=3, device="cpu")
    report = check_samples(model, samples, training, seed=3, n_draws=3, device="cpu")
    assert report.seeds == [3, 4, 5] and len(report.valid_by_seed) == 2
    assert report.valid_mean == pytest.approx(np.mean([report.valid, *report.valid_by_seed]))
    assert report.nearest_dice.shape == (6,) and np.all((report.nearest_dice >= 0) & (report.nearest_dice <= 1))
    assert report.diversity == pytest.approx(volume_diversity(samples)["pair"])
    assert report.vault_gap == pytest.approx(vault_gap_fraction(samples).mean())
    text = str(report)
    assert "valid over 3 draws" in text and "seeds 3–5" in text and "training pairs" in text
    assert set(report.summary()) == {"valid (mean of draws)", "nearest-training Dice", "diversity",
                                     "vault gap fraction"}
    with pytest.raises(ValueError, match="at least 2 samples"):
        check_samples(model, samples[:1], training)


def test_defect_places_read_the_cones_of_the_same_latent_points():
    training = shell_pairs(n=6)
    places = defect_places(_vae(), training, n=10, seed=1)
    assert places.axes.shape == (10, 3) and places.half_angles_deg.shape == (10,)
    np.testing.assert_allclose(np.linalg.norm(places.axes, axis=1), 1.0, atol=1e-5)
    assert 0.0 <= places.recall <= 1.0 and places.training_directions.shape == (6, 3)
    assert "within 15°" in str(places)
    # The shells' implants are top caps and an untrained cone's axis starts pointing up (CapRegion): within 45°
    # every training defect has a sampled axis.
    assert defect_places(_vae(), training, n=10, seed=1, within_deg=45.0).recall == 1.0
    assert defect_places(_vae(output="pair"), training, n=4) is None
