"""Random and uniform deterministic sampling (UDS) of latent points, and the measures that compare them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import ndtr

from cranialkit.generative.sampling import (
    latent_coverage,
    latent_points,
    nearest_training_dice,
    r_sequence,
    unit_cube_points,
    valid_fraction,
    valid_fraction_by_seed,
    volume_diversity,
)


def test_uds_is_deterministic_and_prefix_consistent():
    a = latent_points(64, (16,), "uds")
    b = latent_points(64, (16,), "uds", seed=123)  # the seed does not matter for UDS
    c = latent_points(20, 16, "uds")
    assert a.shape == (64, 16) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert torch.equal(a[:20], c)
    assert torch.isfinite(a).all()
    assert torch.allclose(a[0], torch.zeros(16))  # the second Sobol point (½, …, ½) is the prior mean


def test_random_is_seeded_and_scaled():
    a = latent_points(500, (8,), "random", seed=1)
    assert torch.equal(a, latent_points(500, (8,), "random", seed=1))
    assert not torch.equal(a, latent_points(500, (8,), "random", seed=2))
    assert abs(float(a.std()) - 1.0) < 0.05
    assert abs(float(latent_points(500, (8,), "random", seed=1, scale=0.5).std()) - 0.5) < 0.03


def test_uds_grid_latent_shape_and_scale():
    z = latent_points(10, (2, 4, 4, 4), "uds", scale=0.5)
    assert z.shape == (10, 2, 4, 4, 4)
    flat = latent_points(10, (128,), "uds")
    assert torch.allclose(z.reshape(10, -1), 0.5 * flat)


def test_uds_marginals_are_stratified():
    """With the skipped origin, each coordinate of Φ(z) takes every value k/64 exactly once (Sobol's 1-D property)."""
    u = ndtr(latent_points(63, (5,), "uds").double().numpy())
    for column in u.T:
        counts = np.bincount(np.rint(np.concatenate([[0.0], column]) * 64).astype(int), minlength=64)
        assert counts.max() == 1 and counts.sum() == 64


def test_high_dimensions_fall_back_to_r_sequence():
    u = unit_cube_points(3, 30000)
    assert u.shape == (3, 30000)
    np.testing.assert_allclose(u, r_sequence(3, 30000))
    assert 0 <= u.min() and u.max() < 1
    # R_1 with the golden ratio: frac(0.5 + i / φ)
    np.testing.assert_allclose(r_sequence(2, 1)[:, 0], np.mod(0.5 + np.arange(1, 3) / 1.6180339887, 1.0), atol=1e-9)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown sampler"):
        latent_points(4, 8, "sobol")
    with pytest.raises(ValueError, match="scale"):
        latent_points(4, 8, "uds", scale=0)
    with pytest.raises(ValueError, match="at least 2"):
        latent_coverage(np.zeros((1, 4)))


@pytest.mark.parametrize("d", [2, 32])
def test_uds_covers_better_than_random(d):
    uds = latent_coverage(latent_points(100, d, "uds"))
    for seed in range(3):
        rnd = latent_coverage(latent_points(100, d, "random", seed=seed))
        assert uds["covering_distance"] < rnd["covering_distance"]
        assert uds["projection_discrepancy"] < rnd["projection_discrepancy"]
    assert set(uds) >= {"mean_nn_distance", "min_nn_distance", "mean_radius", "n", "d"}


def _shell(size: int, radius: float, centre=(0.5, 0.5, 0.5)) -> np.ndarray:
    g = (np.mgrid[:size, :size, :size] + 0.5) / size - np.asarray(centre)[:, None, None, None]
    r = np.sqrt((g**2).sum(0))
    return (r < radius) & (r > radius - 0.08)


def _pair(size=24, radius=0.4, hole=0.12) -> np.ndarray:
    skull = _shell(size, radius)
    g = (np.mgrid[:size, :size, :size] + 0.5) / size
    cap = np.sqrt(((g - np.array([0.5, 0.5, 0.5 + radius])[:, None, None, None]) ** 2).sum(0)) < hole
    return np.stack([skull & ~cap, skull & cap]).astype(np.float32)


def test_volume_diversity_and_nearest_dice():
    a, b = _pair(radius=0.4), _pair(radius=0.3)
    same = np.stack([a, a, a])
    assert volume_diversity(same) == pytest.approx({"skull": 0.0, "implant": 0.0, "pair": 0.0})
    mixed = volume_diversity(np.stack([a, b]))
    assert mixed["pair"] == pytest.approx(1.0)  # concentric shells of different radius do not overlap
    nearest = nearest_training_dice(np.stack([a, b]), np.stack([a]))
    assert nearest[0] == pytest.approx(1.0) and nearest[1] == pytest.approx(0.0)


def test_valid_fraction_counts_accepted_samples():
    good = _pair()
    empty = np.zeros_like(good)
    assert valid_fraction(np.stack([good, empty, good, empty])) == pytest.approx(0.5)


def test_valid_fraction_by_seed_draws_once_per_seed():
    """One draw of ``n`` random samples per seed, each scored by valid_fraction: here seed k gives k valid of 4."""
    good, empty = _pair(), np.zeros_like(_pair())

    class Drawer:
        calls: list[tuple] = []

        def sample(self, n, sampler, seed, device):
            self.calls.append((n, sampler, seed))
            return np.stack([good] * seed + [empty] * (n - seed))

    model = Drawer()
    assert valid_fraction_by_seed(model, 4, seeds=[0, 1, 3]) == pytest.approx([0.0, 0.25, 0.75])
    assert model.calls == [(4, "random", 0), (4, "random", 1), (4, "random", 3)]
    with pytest.raises(ValueError, match="at least one seed"):
        valid_fraction_by_seed(model, 4, seeds=[])


def _spherical_shell_pair(size: int, hole_half_angle_deg: float = 0.0) -> np.ndarray:
    """A spherical shell (2 voxels thick) centred in the grid as a pair, with an open cap around axis 2."""
    g = np.indices((size,) * 3) - (size - 1) / 2.0
    r = np.sqrt((g**2).sum(0))
    shell = (r > 0.35 * size) & (r < 0.35 * size + 2.0)
    if hole_half_angle_deg > 0:
        angle = np.degrees(np.arccos(np.clip(g[2] / np.maximum(r, 1e-9), -1, 1)))
        shell &= angle > hole_half_angle_deg
    pair = np.zeros((2, size, size, size), np.float32)
    pair[0] = shell
    return pair


def test_vault_gap_fraction_is_zero_for_a_closed_shell_and_the_cap_area_for_an_open_one():
    """A closed shell leaks no ray; a shell with a cap of half-angle θ removed around the top leaks the cap's
    share of the upper directions, (1 − cos θ) / (1 − sin 10°); the implant channel counts as bone."""
    from cranialkit.generative.sampling import vault_gap_fraction

    closed, opened = _spherical_shell_pair(48), _spherical_shell_pair(48, 30.0)
    filled = opened.copy()
    filled[1] = closed[0] * (1 - opened[0])  # the cap painted as implant closes the shell again
    gaps = vault_gap_fraction(np.stack([closed, opened, filled]))
    expected = (1 - np.cos(np.radians(30))) / (1 - np.sin(np.radians(10)))
    assert gaps.shape == (3,)
    assert gaps[0] == 0.0 and gaps[2] == 0.0
    assert abs(gaps[1] - expected) < 0.02
    assert vault_gap_fraction(opened).shape == (1,)
    with pytest.raises(ValueError, match="pairs"):
        vault_gap_fraction(np.zeros((3, 1, 8, 8, 8)))


def test_defect_direction_recall_counts_training_implants_near_a_sampled_axis():
    from cranialkit.generative.sampling import defect_direction_recall

    up, side, front = [0.0, 0.0, 3.0], [1.0, 0.0, 0.0], [0.0, -2.0, 0.3]
    training = np.array([up, side, front, [np.nan] * 3])
    tilted = [np.sin(np.radians(10)), 0.0, np.cos(np.radians(10))]  # 10° from up
    assert defect_direction_recall(training, np.array([tilted])) == pytest.approx(1 / 3)
    assert defect_direction_recall(training, np.array([tilted]), max_angle_deg=5.0) == 0.0
    assert defect_direction_recall(training, np.array([up, side, front])) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        defect_direction_recall(np.full((2, 3), np.nan), np.array([up]))
