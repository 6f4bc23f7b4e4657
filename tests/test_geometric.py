"""Geometric augmentation: identical transforms for all masks, probabilities, presets, CPU arrays and batches."""

import numpy as np
import pytest
import torch

from cranialkit.augment.geometric import (
    PRESETS,
    Compose,
    RandomAffine,
    RandomBinaryNoise,
    RandomCrop,
    RandomFlip,
    augment_batch,
    preset,
)


def ball(shape=(32, 32, 32), centre=None, radius=8.0) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    centre = np.asarray(centre if centre is not None else [(s - 1) / 2 for s in shape], dtype=float)
    return ((grid - centre[:, None, None, None]) ** 2).sum(0) <= radius**2


def shell_pair(shape=(32, 32, 32)):
    """A hollow ball split into a 'defective skull' and an 'implant' (a cap), disjoint, union = shell."""
    shell = ball(shape, radius=12) & ~ball(shape, radius=9)
    implant = shell & (np.indices(shape)[2] > shape[2] * 0.7)
    return shell & ~implant, implant, shell


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "transform",
    [RandomFlip(0.0), RandomCrop(0.0), RandomAffine(0.0, rotation_deg=40), RandomBinaryNoise(0.0), preset("none")],
)
def test_probability_zero_is_identity(transform):
    defective, implant, _ = shell_pair()
    out = transform({"defective": defective, "implant": implant}, gen(0))
    assert np.array_equal(out["defective"], defective)
    assert np.array_equal(out["implant"], implant)


def test_flip_matches_numpy_and_moves_both_masks():
    defective, implant, _ = shell_pair()
    out = RandomFlip(1.0, axes=(2,))({"defective": defective, "implant": implant, "case_id": "007"}, gen(0))
    assert np.array_equal(out["defective"], defective[:, :, ::-1])
    assert np.array_equal(out["implant"], implant[:, :, ::-1])
    assert out["case_id"] == "007"  # other keys pass through


@pytest.mark.parametrize("name", ["mild", "extreme"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masks_get_the_same_spatial_change(name, seed):
    """Nearest-neighbour resampling commutes with union: transform(defective) ∪ transform(implant) must equal
    transform(complete) drawn with the same random state, and the pair must stay disjoint."""
    defective, implant, complete = shell_pair()
    transform = Compose([t for t in preset(name).transforms if not isinstance(t, RandomBinaryNoise)])
    pair = transform({"defective": defective, "implant": implant}, gen(seed))
    alone = transform({"defective": complete}, gen(seed))
    assert np.array_equal(pair["defective"] | pair["implant"], alone["defective"])
    assert not (pair["defective"] & pair["implant"]).any()


def test_affine_scaling_changes_volume_by_cube_of_factor():
    solid = ball((48, 48, 48), radius=12)
    out = RandomAffine(1.0, rotation_deg=0, scale=(0.5, 0.5), translation=0)({"defective": solid}, gen(0))
    assert out["defective"].sum() / solid.sum() == pytest.approx(0.125, rel=0.1)
    big = RandomAffine(1.0, rotation_deg=0, scale=(1.25, 1.25), translation=0)({"defective": solid}, gen(0))
    assert big["defective"].sum() / solid.sum() == pytest.approx(1.25**3, rel=0.1)


def test_affine_translation_moves_centroid_by_drawn_shift():
    solid = ball((40, 40, 40), radius=6)
    transform = RandomAffine(1.0, rotation_deg=0, scale=(1, 1), translation=0.2)
    params = transform.draw(1, _after_activation_draw(1, 0))
    out = transform({"defective": solid}, gen(0))["defective"]
    moved = np.argwhere(out).mean(0) - np.argwhere(solid).mean(0)
    np.testing.assert_allclose(moved, params["shift"][0].numpy() * 40, atol=0.6)


def _after_activation_draw(n: int, seed: int) -> torch.Generator:
    """A generator in the state a transform is in after drawing its n activation numbers."""
    g = gen(seed)
    torch.rand(n, generator=g)
    return g


def test_rotation_preserves_volume_and_moves_voxels():
    defective, implant, complete = shell_pair((40, 40, 40))
    out = RandomAffine(1.0, rotation_deg=45, scale=(1, 1), translation=0)({"defective": complete}, gen(3))["defective"]
    assert out.sum() / complete.sum() == pytest.approx(1.0, rel=0.08)
    assert not np.array_equal(out, complete)


def test_crop_enlarges_the_object_and_keeps_the_shape():
    solid = ball((32, 32, 32), radius=6)
    out = RandomCrop(1.0, min_fraction=0.5)({"defective": solid}, gen(0))["defective"]
    assert out.shape == solid.shape and out.dtype == bool
    assert out.sum() > solid.sum() * 1.2


def test_binary_noise_erodes_or_dilates_and_keeps_pair_disjoint():
    defective, implant, _ = shell_pair()
    changes = set()
    for seed in range(8):
        noise = RandomBinaryNoise(1.0, max_radius=1, coverage=1.0)
        out = noise({"defective": defective, "implant": implant}, gen(seed))
        assert not (out["defective"] & out["implant"]).any()
        changes.add(np.sign(int(out["defective"].sum()) - int(defective.sum())))
    assert changes == {-1, 1}  # both erosion and dilation happen


def test_batch_on_tensors_gets_per_case_parameters_and_keeps_type():
    defective, implant, _ = shell_pair()
    batch = torch.from_numpy(np.stack([defective, defective]))[:, None].float()
    target = torch.from_numpy(np.stack([implant, implant]))[:, None].float()
    out_d, out_t = augment_batch(batch, target, RandomAffine(1.0, rotation_deg=30), gen(0))
    assert out_d.shape == batch.shape and out_d.dtype == torch.float32
    assert set(torch.unique(out_d).tolist()) <= {0.0, 1.0}
    assert not torch.equal(out_d[0], out_d[1])  # each case has its own parameters


def test_numpy_and_tensor_inputs_give_the_same_result():
    defective, implant, _ = shell_pair()
    transform = preset("extreme")
    from_numpy = transform({"defective": defective, "implant": implant}, gen(5))
    as_tensor = {"defective": torch.from_numpy(defective)[None, None], "implant": torch.from_numpy(implant)[None, None]}
    from_tensor = transform(as_tensor, gen(5))
    assert from_tensor["defective"].dtype == torch.bool
    assert np.array_equal(from_tensor["defective"][0, 0].numpy(), from_numpy["defective"])
    assert np.array_equal(from_tensor["implant"][0, 0].numpy(), from_numpy["implant"])


def test_same_generator_state_repeats():
    defective, implant, _ = shell_pair()
    a = preset("extreme")({"defective": defective, "implant": implant}, gen(11))
    b = preset("extreme")({"defective": defective, "implant": implant}, gen(11))
    assert np.array_equal(a["defective"], b["defective"]) and np.array_equal(a["implant"], b["implant"])


def test_presets_and_bad_arguments():
    assert set(PRESETS) == {"none", "mild", "extreme"}
    assert len(preset("none")) == 0 and len(preset("extreme")) == 4
    extreme_affine = [t for t in preset("extreme").transforms if isinstance(t, RandomAffine)][0]
    assert extreme_affine.rotation_deg == (45.0, 45.0, 45.0) and extreme_affine.scale == (0.4, 1.3)
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        preset("heavy")
    with pytest.raises(ValueError, match="prob"):
        RandomFlip(1.5)
    with pytest.raises(ValueError, match="scale"):
        RandomAffine(scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="3D array"):
        RandomFlip(1.0)({"defective": np.zeros((4, 4), bool)})
    with pytest.raises(KeyError, match="none of the keys"):
        RandomFlip(1.0)({"image": np.zeros((4, 4, 4), bool)})
    with pytest.raises(ValueError, match="differ"):
        RandomAffine(1.0)({"defective": np.zeros((4, 4, 4), bool), "implant": np.zeros((4, 4, 6), bool)})
