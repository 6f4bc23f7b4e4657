"""Registration core: transforms, warping, losses, Jacobian/folding, and the optimization loop on synthetic shells."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cranialkit.registration import (
    RegistrationConfig,
    affine_to_ddf,
    dice_per_pair,
    folding_percent,
    jacobian_determinant,
    register,
    std_log_jacobian,
    summarize,
    warp,
)
from cranialkit.registration.losses import regularization_loss, similarity_loss
from cranialkit.registration.transforms import identity_affine, pyramid_shapes, resize_ddf

torch.set_num_threads(2)

FAST = {"levels": 3, "affine_iterations": 30, "iterations": (40, 30, 20)}


def shell(n: int = 32, radii=(0.7, 0.6, 0.62), thickness: float = 0.16, centre=(0.0, 0.0, 0.0), bump: float = 0.0):
    """An ellipsoidal shell (bool, n³) cut flat at the bottom, with an optional smooth bump of the outer radius."""
    axis = np.linspace(-1, 1, n)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    x, y, z = x - centre[0], y - centre[1], z - centre[2]
    r = np.sqrt((x / radii[0]) ** 2 + (y / radii[1]) ** 2 + (z / radii[2]) ** 2)
    r = r * (1 + bump * np.cos(3 * np.arctan2(y, x)))
    return (r < 1) & (r > 1 - thickness) & (z > -0.3)


# ------------------------------------------------------------------------------------------------ transforms


def test_identity_affine_gives_zero_displacement():
    ddf = affine_to_ddf(identity_affine(2), (5, 6, 7))
    assert ddf.shape == (2, 3, 5, 6, 7)
    assert torch.allclose(ddf, torch.zeros_like(ddf), atol=1e-6)


def test_affine_translation_in_voxels():
    theta = identity_affine(1)
    theta[0, :, 3] = torch.tensor([0.5, -0.25, 0.0])  # normalized units: half extent (S - 1) / 2 voxels per unit
    ddf = affine_to_ddf(theta, (9, 17, 5))
    assert torch.allclose(ddf[0, 0], torch.full((9, 17, 5), 0.5 * 4.0), atol=1e-5)
    assert torch.allclose(ddf[0, 1], torch.full((9, 17, 5), -0.25 * 8.0), atol=1e-5)
    assert torch.allclose(ddf[0, 2], torch.zeros(9, 17, 5), atol=1e-5)


def test_warp_integer_shift_pulls_from_source():
    image = torch.zeros(1, 1, 10, 10, 10)
    image[0, 0, 5, 4, 3] = 1.0
    ddf = torch.zeros(1, 3, 10, 10, 10)
    ddf[:, 0] = 2.0  # warped(x) = image(x + 2 along axis 0): the bright voxel appears at i = 3
    out = warp(image, ddf)
    assert out[0, 0, 3, 4, 3] == pytest.approx(1.0)
    assert out.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="disagree"):
        warp(image, torch.zeros(1, 3, 9, 10, 10))


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_warp_matches_monai_warp(mode):
    """Our grid_sample warp (written out for speed) gives MONAI's Warp result on a random image and field."""
    import warnings

    from monai.networks.blocks import Warp

    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 2, 9, 11, 7, generator=generator)
    ddf = 3.0 * torch.randn(2, 3, 9, 11, 7, generator=generator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = Warp(mode=mode, padding_mode="zeros")(image, ddf)
    assert torch.allclose(warp(image, ddf, mode=mode), expected, atol=1e-5)


def test_resize_ddf_keeps_the_transform():
    theta = identity_affine(1)
    theta[0] = torch.tensor([[1.1, 0.05, 0.0, 0.1], [0.0, 0.9, 0.0, -0.2], [0.02, 0.0, 1.0, 0.05]])
    coarse, fine = affine_to_ddf(theta, (9, 9, 9)), affine_to_ddf(theta, (17, 17, 17))
    assert torch.allclose(resize_ddf(coarse, (17, 17, 17)), fine, atol=1e-4)


def test_pyramid_shapes():
    assert pyramid_shapes((64, 64, 64), 4) == [(8, 8, 8), (16, 16, 16), (32, 32, 32), (64, 64, 64)]
    assert pyramid_shapes((20, 20, 20), 4, min_size=8) == [(8, 8, 8), (8, 8, 8), (10, 10, 10), (20, 20, 20)]
    with pytest.raises(ValueError, match="levels"):
        pyramid_shapes((64, 64, 64), 0)


# ------------------------------------------------------------------------------------------------ jacobian


def test_jacobian_of_affine_is_its_determinant():
    theta = identity_affine(1)
    theta[0, :, :3] = torch.diag(torch.tensor([1.1, 0.9, 1.2]))
    det = jacobian_determinant(affine_to_ddf(theta, (12, 12, 12)))
    assert torch.allclose(det, torch.full_like(det, 1.1 * 0.9 * 1.2), atol=1e-4)
    assert folding_percent(det).item() == 0.0
    assert std_log_jacobian(det).item() == pytest.approx(0.0, abs=1e-4)


def test_folding_is_counted():
    ddf = torch.zeros(1, 3, 10, 10, 10)
    # u_0 = -2 * i on the slab 3 <= i <= 6: d u_0 / d i = -2 inside, so det = 1 - 2 = -1 (folded)
    i = torch.arange(10, dtype=torch.float32)
    ddf[0, 0] = torch.where((i >= 3) & (i <= 6), -2.0 * i, torch.zeros_like(i)).view(10, 1, 1)
    det = jacobian_determinant(ddf)
    assert det[0, 4, 5, 5].item() == pytest.approx(-1.0)
    assert det[0, 0, 5, 5].item() == pytest.approx(1.0)
    expected = (det <= 0).float().mean().item() * 100
    assert folding_percent(det).item() == pytest.approx(expected)
    assert 20.0 <= folding_percent(det).item() <= 60.0
    assert std_log_jacobian(det).item() > 1.0
    with pytest.raises(ValueError, match="ddf must have shape"):
        jacobian_determinant(torch.zeros(1, 2, 4, 4, 4))


# ------------------------------------------------------------------------------------------------ losses


def test_losses_per_pair():
    a = torch.from_numpy(shell(16)).float()[None, None]
    b = torch.from_numpy(shell(16, centre=(0.2, 0, 0))).float()[None, None]
    pair = torch.cat([a, a]), torch.cat([a, b])
    for kind in ("mse", "dice", "mse+dice"):
        loss = similarity_loss(*pair, kind)
        assert loss.shape == (2,)
        assert loss[0].item() == pytest.approx(0.0, abs=1e-4)
        assert loss[1].item() > 0.01
    smooth_field = torch.ones(2, 3, 8, 8, 8)
    rough_field = torch.randn(2, 3, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    for kind in ("diffusion", "bending"):
        assert torch.allclose(regularization_loss(smooth_field, kind), torch.zeros(2), atol=1e-7)
        assert (regularization_loss(rough_field, kind) > 0.1).all()
    with pytest.raises(ValueError, match="similarity"):
        similarity_loss(a, a, "ncc2")
    with pytest.raises(ValueError, match="regularizer"):
        regularization_loss(smooth_field, "elastic")


def test_dice_per_pair():
    a = torch.zeros(2, 4, 4, 4, dtype=torch.bool)
    b = a.clone()
    a[0, :2], b[0, 1:3] = True, True
    assert dice_per_pair(a, b).tolist() == pytest.approx([0.5, 1.0])


# ------------------------------------------------------------------------------------------------ optimization


def test_config_validation_and_defaults():
    config = RegistrationConfig()
    assert config.iterations == (80, 60, 40, 25) and config.sigma == (1.0, 1.0, 1.0, 0.0)
    assert RegistrationConfig(levels=6).iterations == (100, 100, 80, 60, 40, 25)
    for bad in ({"alpha": -1}, {"iterations": (1, 2)}, {"similarity": "ncc2"}, {"regularizer": "x"},
                {"affine_levels": 5}, {"lr": 0}, {"levels": 0}):
        with pytest.raises(ValueError):
            RegistrationConfig(**bad)


def test_register_recovers_translation():
    target = shell(32)
    source = shell(32, centre=(0.15, -0.1, 0.05))  # the same shell moved by (2.3, -1.6, 0.8) voxels
    result = register(source, target, RegistrationConfig(**FAST), deformable=False)
    row = summarize(result, source, target)[0]
    assert row["dice_before"] < 0.5
    assert row["dice_affine"] > 0.8  # not 1: trilinear resampling of a 2-voxel shell by a sub-voxel shift loses some
    assert result.theta[0, :, 3].tolist() == pytest.approx([0.15, -0.1, 0.05], abs=0.03)


def test_deformable_beats_affine_and_batch_equals_single():
    sources = np.stack([shell(32, radii=(0.72, 0.56, 0.6), bump=0.06), shell(32, radii=(0.66, 0.62, 0.66))])
    targets = np.stack([shell(32), shell(32, bump=-0.05)])
    config = RegistrationConfig(**FAST)
    batched = register(sources, targets, config)
    rows = summarize(batched, sources, targets)
    for row in rows:
        assert row["dice"] >= 0.9
        assert row["dice"] > row["dice_affine"] + 0.05
    single = register(sources[1], targets[1], config)
    assert torch.allclose(single.ddf[0], batched.ddf[1], atol=1e-3)
    assert single.ddf.shape == (1, 3, 32, 32, 32)


def test_weaker_regularization_folds_more():
    source, target = shell(20, radii=(0.72, 0.56, 0.6), bump=0.08), shell(20)
    folding = []
    for alpha in (10.0, 0.001):
        result = register(source, target, RegistrationConfig(alpha=alpha, levels=2, iterations=(30, 30)))
        folding.append(summarize(result, source, target)[0]["folding_percent"])
    assert folding[0] < 0.05
    assert folding[1] > folding[0] + 0.1


def test_register_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        register(shell(16), shell(20))
    with pytest.raises(ValueError, match="expected masks"):
        register(np.zeros((2, 2, 8, 8, 8)), np.zeros((2, 2, 8, 8, 8)))


@pytest.mark.realdata
@pytest.mark.slow
def test_register_two_real_skullfix_skulls(shared_data):
    from cranialkit.io import read_mask
    from cranialkit.preprocessing import to_grid

    files = [shared_data / "skullfix_sample" / "training_set" / "complete_skull" / f"00{i}.nrrd" for i in (1, 2)]
    source, target = (to_grid(read_mask(f), (64, 64, 64))[0].array.astype(bool) for f in files)
    row = summarize(register(source, target, RegistrationConfig()), source, target)[0]
    assert row["dice"] > 0.85
    assert row["dice"] > row["dice_affine"] + 0.05
    assert row["folding_percent"] < 1.0
