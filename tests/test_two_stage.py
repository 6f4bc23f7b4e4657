"""Two-stage reconstruction: partial-volume resampling, the fine crop and its way back, fine training and resume,
two-stage inference at the original geometry, and stages that do not fit together."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from test_preprocessing import shell_volume

from cranialkit.data.datasets import load_dataset, phantom_dataset
from cranialkit.preprocessing import bounding_box, box_grid_transform, implant_beside_bone, make_grid_transform
from cranialkit.reconstruction.fine import (
    FineBatches,
    FineConfig,
    FineSource,
    FineStage,
    check_stages_fit,
    fine_augmentation,
    fine_cases,
    fine_inputs,
    round_trips,
    simulate_coarse,
)
from cranialkit.reconstruction.inference import Reconstructor
from cranialkit.reconstruction.network import ModelConfig
from cranialkit.reconstruction.trainer import TrainConfig, train
from cranialkit.volume import Volume

FINE = FineConfig(spacing_mm=3.0, margin_mm=6.0, patch=(16, 16, 16), coarse_shape=(32, 32, 32))
COARSE = ModelConfig("tiny", "implant", (32, 32, 32))
FINE_MODEL = ModelConfig("tiny", "implant", FINE.patch, in_channels=2)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def phantoms():
    return phantom_dataset(n_subjects=2, resolution=64, seed=3, classes=("frontoorbital", "skullfix"))


# --------------------------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("spacing_mm", [0.7, 1.3, 2.9])
def test_partial_volume_keeps_the_mask_volume_and_stays_in_0_1(spacing_mm):
    vol = shell_volume()
    transform = make_grid_transform(vol, None, margin_mm=5.0, spacing_mm=spacing_mm)
    fraction = transform.fraction(vol).array
    assert fraction.dtype == np.float32 and fraction.min() >= 0.0 and fraction.max() <= 1.0
    grid_ml = fraction.sum() * np.prod(transform.spacing_mm)
    original_ml = vol.array.sum() * np.prod(vol.spacing)
    assert grid_ml == pytest.approx(original_ml, rel=1e-4)


def test_partial_volume_of_a_plane_between_voxels():
    """A grid voxel gets the share of its extent that the mask covers: the mask spans original indices
    -0.5 … 20.5 (voxels 0–20, nothing before the array), each grid voxel covers its centre ± 1.5."""
    array = np.zeros((40, 8, 8), bool)
    array[:21] = True  # original voxels 0..20: the edge lies at index 20.5
    vol = Volume(array, (1.0, 1.0, 1.0))
    transform = box_grid_transform(vol, (0, 0, 0), (39, 7, 7), shape=None, margin_mm=0.0, spacing_mm=(3.0, 1.0, 1.0))
    fraction = transform.fraction(vol).array[:, 4, 4]
    centres = transform.start[0] + np.arange(transform.shape[0]) * transform.step[0]
    overlap = np.minimum(centres + 1.5, 20.5) - np.maximum(centres - 1.5, -0.5)
    expected = np.clip(overlap / 3.0, 0, 1)
    np.testing.assert_allclose(fraction, expected, atol=1e-6)


def test_resample_between_grids_reproduces_a_linear_field():
    vol = shell_volume()
    coarse = make_grid_transform(vol, (24, 24, 24))
    fine = box_grid_transform(vol, (20, 20, 15), (40, 35, 30), None, 2.0, 0.8)
    t = np.indices(coarse.shape).astype(np.float32)
    field = (coarse.start[:, None, None, None] + t * coarse.step[:, None, None, None])[0]  # original index along 0
    out = fine.resample_from(field, coarse)
    expected = fine.start[0] + np.arange(fine.shape[0]) * fine.step[0]
    np.testing.assert_allclose(out[:, 3, 3], expected, atol=1e-3)


@pytest.mark.parametrize("oblique", [False, True])
def test_fine_crop_round_trip_is_exact_at_or_below_the_original_spacing(oblique):
    """Crop around the implant at the finest original spacing: back on the original grid, voxel for voxel."""
    vol = shell_volume(oblique=oblique)
    lo, hi = bounding_box(vol.array[:, :, 30:]) + np.array([0, 0, 30])
    fine = box_grid_transform(vol, lo, hi, None, 4.0, float(vol.spacing.min()))
    assert fine.is_exactly_invertible
    back = fine.to_original(fine.apply(vol).array).array
    box = fine.original_box()
    assert np.array_equal(back[box], vol.array[box])
    assert not back[~np.pad(np.ones([b.stop - b.start for b in box], bool), [(b.start, s - b.stop)
                                                                         for b, s in zip(box, vol.shape)])].any()
    # the fine voxel t sits in world space where the original voxel start + t·step sits (oblique included)
    t = np.array([3, 5, 2])
    np.testing.assert_allclose(fine.grid_volume(np.zeros(fine.shape)).index_to_world(t),
                               vol.index_to_world(fine.start + t * fine.step), atol=1e-9)


def test_partial_volume_and_trilinear_way_back_keep_the_shape():
    """Down to a 2 mm grid as partial volumes and back by trilinear interpolation keeps far more of a thin shell
    than nearest neighbour does (the reason both stages work with probabilities, not masks)."""
    vol = shell_volume(shape=(90, 80, 70), spacing=(0.5, 0.5, 0.6), oblique=True)
    grid = make_grid_transform(vol, (24, 24, 24))  # about 2 mm per voxel; the shell is about 4 mm thick
    nearest = grid.to_original(grid.apply(vol).array).array
    smooth = grid.to_original(grid.fraction(vol).array).array > 0.5
    assert dice(smooth, vol.array) > 0.9 > dice(nearest, vol.array) + 0.05


def test_implant_and_bone_shares_thresholded_together_close_the_rim(phantoms):
    """The true implant's and bone's shares on a grid 1.6 times coarser, interpolated back: thresholding the
    implant's share alone leaves original voxels at the rim that neither share claims; thresholding their sum fills
    them and adds nothing away from the implant."""
    case = phantoms.cases[0]
    defective, implant = case.defective, case.implant
    transform = make_grid_transform(defective, (40, 40, 40))
    implant_share = transform.to_original(transform.fraction(implant).array).array
    bone_share = transform.to_original(transform.fraction(defective).array).array
    alone = (implant_share > 0.5) & ~defective.array
    together = implant_beside_bone(implant_share, bone_share) & ~defective.array
    assert together.sum() > alone.sum() and not (alone & ~together).any()
    rim = implant.array & ndimage.binary_dilation(defective.array)  # true implant voxels touching the skull
    assert (rim & together).sum() > (rim & alone).sum()
    assert dice(together, implant.array) > dice(alone, implant.array) + 0.03 > 0.9
    near_implant = ndimage.binary_dilation(implant.array, iterations=2)  # a grid voxel spans 1.6 original ones
    assert not (together & ~near_implant).any()
    with pytest.raises(ValueError, match="shapes differ"):
        implant_beside_bone(implant_share, bone_share[:-1])


@pytest.mark.realdata
def test_fine_crop_round_trip_on_a_real_oblique_case(shared_data):
    case = load_dataset(shared_data / "skullfix_sample").cases[0]  # case 000: oblique space directions
    defective, implant = case.defective, case.implant
    assert defective.is_oblique
    lo, hi = bounding_box(implant.array)
    fine = box_grid_transform(defective, lo, hi, None, 10.0, float(defective.spacing.min()))
    back = fine.to_original(fine.apply(implant).array).array
    assert np.array_equal(back, implant.array)
    one_mm = box_grid_transform(defective, lo, hi, None, 10.0, 1.0)
    smooth = (one_mm.to_original(one_mm.fraction(implant).array).array > 0.5) & ~defective.array
    assert dice(smooth, implant.array) > 0.98


# --------------------------------------------------------------------------------------------- training


def test_fine_batches_are_deterministic_and_shaped(phantoms):
    cases = fine_cases(phantoms, FINE, progress=False)
    assert all(c.implant_u8.max() == 255 and c.coarse_voxels > 1 for c in cases)
    batches = FineBatches([FineSource("phantoms", cases, 1.0, fine_augmentation("mild"))], 3, FINE.patch, seed=1)
    x, target, names = batches.batch(7)
    assert x.shape == (3, 2, *FINE.patch) and target.shape == (3, 1, *FINE.patch) and names == ["phantoms"] * 3
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(target.max()) > 0.5
    again, _, _ = batches.batch(7)
    assert torch.equal(x, again)
    assert not torch.equal(x, batches.batch(8)[0])


def test_simulated_coarse_channel_is_a_blurred_version_of_the_implant():
    implant = torch.zeros(1, 1, 24, 24, 24)
    implant[..., 8:16, 6:18, 10:13] = 1.0
    hint = simulate_coarse(implant, 3.0, torch.Generator().manual_seed(0))
    assert hint.shape == implant.shape and 0 <= float(hint.min()) and float(hint.max()) <= 1
    assert float((hint * implant).sum()) > 0.3 * float(implant.sum())  # it points at the implant
    assert float(hint[..., :3, :3, :3].sum()) == 0.0  # and nowhere far from it


def test_fine_training_resumes_exactly(phantoms, tmp_path):
    cases = fine_cases(phantoms, FINE, progress=False)
    batches = FineBatches([FineSource("phantoms", cases, 1.0, fine_augmentation("mild"))], 2, FINE.patch, seed=0)
    config = TrainConfig(steps=4, batch_size=2, val_every=2, loss="dice+bce", progress=False, device="cpu")
    extra = {"fine_config": FINE.to_dict()}
    whole = train(FINE_MODEL, config, batches, None, tmp_path / "whole", extra_state=extra)
    train(FINE_MODEL, config, batches, None, tmp_path / "split", stop_after=2, extra_state=extra)
    resumed = train(FINE_MODEL, config, batches, None, tmp_path / "split", extra_state=extra)
    assert resumed.step == whole.step == 4
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    stage = FineStage.from_checkpoint(tmp_path / "whole" / "best.pt")
    assert stage.config == FINE and stage.model_config == FINE_MODEL


# --------------------------------------------------------------------------------------------- inference


def _confident_coarse() -> torch.nn.Module:
    """A coarse network that predicts the implant everywhere (so that the crop is placed and not empty)."""
    model = COARSE.build()
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    last = [m for m in model.modules() if isinstance(m, torch.nn.ConvTranspose3d)][-1]
    torch.nn.init.constant_(last.bias, 5.0)
    return model


def test_two_stage_inference_at_the_original_geometry(phantoms, tmp_path):
    fine = FineStage(FINE_MODEL.build(), FINE_MODEL, FINE, "cpu")
    reconstructor = Reconstructor(_confident_coarse(), COARSE, "cpu", fine=fine)
    assert reconstructor.stages == "coarse + fine"
    case = phantoms.cases[0]
    defective = case.defective
    coarse = reconstructor.coarse_stage(defective)
    assert coarse.implant.any() and coarse.probability.shape == COARSE.shape
    inputs = fine_inputs(defective, coarse.probability, coarse.transform, coarse.implant, FINE)
    assert inputs.inputs.shape == (2, *inputs.transform.shape)
    np.testing.assert_allclose(inputs.transform.spacing_mm, FINE.spacing_mm)
    implant = reconstructor.reconstruct(defective)
    assert implant.shape == defective.shape and implant.same_grid(defective)
    assert not (implant.array & defective.array).any()
    box = inputs.transform.original_box()
    outside = np.ones(defective.shape, bool)
    outside[box] = False
    assert not implant.array[outside].any()  # the fine stage draws only inside its crop


def test_stages_that_do_not_fit_are_refused(tmp_path):
    with pytest.raises(ValueError, match="coarse stage on a"):
        check_stages_fit(ModelConfig("tiny", "implant", (64, 64, 64)), FINE_MODEL, FINE)
    with pytest.raises(ValueError, match="not 2"):
        check_stages_fit(COARSE, COARSE, FINE)
    fine = FineStage(FINE_MODEL.build(), FINE_MODEL, FINE, "cpu")
    with pytest.raises(ValueError, match="coarse stage on a"):
        Reconstructor(ModelConfig("tiny", "implant", (64, 64, 64)).build(), ModelConfig("tiny", "implant", (64,) * 3),
                      "cpu", fine=fine)


def test_round_trips_rank_the_representations(phantoms):
    """The true implant to a grid and back: partial volumes keep more than nearest neighbour, a fine grid more than a
    coarse one — the ceiling each stage works under."""
    case = [c for c in phantoms.cases if c.defect_class == "skullfix"][0]
    defective, implant = case.defective, case.implant
    config = FineConfig(spacing_mm=1.5, margin_mm=6.0, patch=(16, 16, 16), coarse_shape=(40, 40, 40))
    trips = round_trips(defective, implant, config)
    scores = {name: dice(mask, implant.array) for name, mask in trips.items()}
    assert all(not (mask & defective.array).any() for mask in trips.values())
    assert scores["fine grid, partial volume"] > scores["coarse grid, partial volume"] > scores["coarse grid, nearest"]
    assert scores["fine grid, partial volume"] > 0.95


def test_recipes_override_and_refuse_unknown_settings():
    from cranialkit.reconstruction.recipes import coarse_model_config, fine_configs, recipe

    fine = recipe("cpu", "fine", steps=10, size=None)
    assert fine["steps"] == 10 and fine["size"] == recipe("cpu", "fine")["size"]  # None leaves the recipe's value
    with pytest.raises(ValueError, match="unknown settings"):
        recipe("cpu", "coarse", spacing_mm=1.0)
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe("laptop", "coarse")
    coarse = coarse_model_config(recipe("cpu", "coarse"))
    model, config = fine_configs(recipe("cpu", "fine"), coarse.shape)
    assert coarse.partial_volume and model.in_channels == 2 and config.coarse_shape == coarse.shape
