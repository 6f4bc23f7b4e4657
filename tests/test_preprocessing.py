"""Tests for cranialkit.preprocessing: grid geometry, exact inverse, post-processing, stacking and its cache."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from test_datasets import tiny_triplet, write_skullbreak

from cranialkit import preprocessing
from cranialkit.config import data_dir
from cranialkit.data.datasets import load_dataset
from cranialkit.preprocessing import (
    GridTransform,
    bounding_box,
    implant_from,
    postprocess_implant,
    preprocess_case,
    stack_cases,
    to_grid,
)
from cranialkit.volume import Volume


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def shell_volume(shape=(70, 60, 50), spacing=(0.9, 0.8, 1.2), oblique=True, seed=0) -> Volume:
    """A thick ellipsoidal shell (a crude skull) off-centre in an anisotropic, optionally oblique grid."""
    idx = np.indices(shape).astype(float)
    centre = np.array(shape) * [0.45, 0.55, 0.5]
    radii = np.array([22.0, 18.0, 15.0]) / np.asarray(spacing) * np.asarray(spacing).mean()
    r = np.sqrt(sum(((idx[a] - centre[a]) / radii[a]) ** 2 for a in range(3)))
    mask = (r < 1.0) & (r > 0.75)
    rng = np.random.default_rng(seed)
    mask &= rng.random(shape) > 0.02  # some salt so that nothing is accidentally symmetric
    direction = Rotation.from_euler("x", 9, degrees=True).as_matrix() if oblique else np.eye(3)
    return Volume(mask, spacing, origin=(-30.0, 12.5, -7.0), direction=direction)


def test_bounding_box_and_implant_from():
    mask = np.zeros((5, 6, 7), bool)
    mask[1, 2, 3] = mask[3, 4, 6] = True
    lo, hi = bounding_box(mask)
    assert lo.tolist() == [1, 2, 3] and hi.tolist() == [3, 4, 6]
    with pytest.raises(ValueError, match="empty"):
        bounding_box(np.zeros((2, 2, 2)))
    full, defective, implant = tiny_triplet(0)
    assert np.array_equal(implant_from(full.array, defective.array), implant.array)
    assert np.array_equal(implant_from(full, defective).array, implant.array)
    with pytest.raises(ValueError, match="shapes differ"):
        implant_from(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))


@pytest.mark.parametrize("oblique", [False, True])
def test_crop_and_pad_round_trip_is_exact(oblique):
    vol = shell_volume(oblique=oblique)
    small, transform = to_grid(vol, shape=None, spacing_mm=vol.spacing, margin_mm=5.0)
    assert transform.is_exactly_invertible
    np.testing.assert_allclose(transform.step, 1.0)
    assert small.array.sum() == vol.array.sum()  # nothing cut off
    back = transform.to_original(small.array)
    assert back.same_grid(vol) and back.array.dtype == bool
    assert np.array_equal(back.array, vol.array)


def test_finer_grid_round_trip_is_exact_and_coarser_is_close():
    vol = shell_volume()
    small, transform = to_grid(vol, shape=(96, 96, 96), margin_mm=3.0)  # spacing < original on every axis
    assert np.all(transform.step < 1.0) and transform.is_exactly_invertible
    assert np.array_equal(transform.to_original(small.array).array, vol.array)
    coarse, transform = to_grid(vol, shape=(32, 32, 32))
    assert not transform.is_exactly_invertible
    back = transform.to_original(coarse.array).array
    assert dice(back, vol.array) > 0.85
    assert back.shape == vol.shape


def test_grid_geometry_in_world_space():
    """Every grid voxel sits in world space exactly where the original voxel it samples is (up to rounding)."""
    vol = shell_volume()
    small, transform = to_grid(vol, shape=(40, 40, 40), margin_mm=4.0)
    np.testing.assert_allclose(small.spacing, small.spacing[0])  # isotropic
    np.testing.assert_allclose(small.direction, vol.direction)  # oblique stays oblique
    t = np.array([[0, 0, 0], [39, 0, 5], [17, 23, 31]])
    continuous = vol.world_to_index(small.index_to_world(t))
    np.testing.assert_allclose(continuous, transform.start + t * transform.step, atol=1e-9)
    # The box is a cube in mm that holds the skull's bounding box plus margins, centred on it.
    lo, hi = bounding_box(vol.array)
    extent = (hi - lo + 1) * vol.spacing
    assert np.isclose(small.spacing[0] * 40, (extent + vol.spacing).max() + 8.0)  # + 1 voxel for rounding
    grid_centre = small.index_to_world(np.array([19.5, 19.5, 19.5]))
    box_centre = vol.index_to_world((lo + hi) / 2)
    assert np.all(np.abs(vol.world_to_index(grid_centre) - vol.world_to_index(box_centre)) <= 0.5 + 1e-9)
    assert small.array.sum() > 0.5 * vol.array.sum() * np.prod(vol.spacing) / np.prod(small.spacing)


def test_fixed_spacing_and_shape_warns_when_cut():
    vol = shell_volume(oblique=False)
    small, transform = to_grid(vol, shape=(64, 64, 64), spacing_mm=1.0)
    np.testing.assert_allclose(small.spacing, 1.0)
    assert small.shape == (64, 64, 64)
    with pytest.warns(UserWarning, match="does not fit"):
        to_grid(vol, shape=(16, 16, 16), spacing_mm=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_grid(vol, shape=(64, 64, 64), spacing_mm=1.0)


def test_float_images_are_interpolated_linearly():
    vol = Volume(np.full((30, 30, 30), 7.0, np.float32), spacing=(1.0, 1.0, 2.0))
    reference = np.zeros((30, 30, 30), bool)
    reference[5:25, 5:25, 5:25] = True
    small, transform = to_grid(vol, shape=(16, 16, 16), reference=reference, margin_mm=0.0)
    assert small.array.dtype == np.float32
    # Inside the original array the constant stays constant; outside it (padding) reads 0.
    positions = [transform.start[a] + np.arange(16) * transform.step[a] for a in range(3)]
    inside = [(p >= 0) & (p <= 29) for p in positions]
    assert all(m.sum() > 8 for m in inside)
    np.testing.assert_allclose(small.array[np.ix_(*inside)], 7.0, rtol=1e-5)
    assert small.array[~inside[0]].max() < 7.0
    ramp = Volume(np.indices((30, 30, 30))[0].astype(np.float32))
    small, transform = to_grid(ramp, shape=(10, 10, 10), reference=reference, margin_mm=0.0)
    expected = transform.start[0] + np.arange(10) * transform.step[0]
    np.testing.assert_allclose(small.array[:, 5, 5], expected, atol=1e-4)


def test_bad_arguments_raise_clear_errors():
    vol = shell_volume()
    with pytest.raises(ValueError, match="reference mask is empty"):
        to_grid(vol, reference=np.zeros(vol.shape, bool))
    with pytest.raises(ValueError, match="reference shape"):
        to_grid(vol, reference=np.ones((3, 3, 3), bool))
    with pytest.raises(ValueError, match="give a target shape"):
        to_grid(vol, shape=None)
    with pytest.raises(ValueError, match="margin_mm"):
        to_grid(vol, margin_mm=-1)
    _, transform = to_grid(vol, shape=(8, 8, 8))
    with pytest.raises(ValueError, match="differs from the grid shape"):
        transform.to_original(np.zeros((9, 8, 8)))
    with pytest.raises(ValueError, match="not on this transform's original grid"):
        transform.apply(Volume(vol.array, spacing=(1, 1, 1)))


def test_transform_serialises_to_plain_values():
    vol = shell_volume()
    small, transform = to_grid(vol, shape=(20, 20, 20))
    again = GridTransform.from_dict(transform.to_dict())
    assert np.array_equal(again.to_original(small.array).array, transform.to_original(small.array).array)
    assert again.grid_volume(small.array).same_grid(small)


def cap_defect(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A spherical shell 4 voxels thick with its top cap removed: (defective, implant)."""
    r = np.sqrt(sum((g - n / 2) ** 2 for g in np.indices((n, n, n))))
    shell = (r >= 13) & (r < 17)
    implant = shell & (np.indices((n, n, n))[2] > n / 2 + 10)
    return shell & ~implant, implant


def test_postprocess_implant_closes_gaps_and_drops_speckles():
    defective, implant = cap_defect()
    pred = implant.copy()
    pred[20, :, :] = False  # a one-voxel slit through the predicted plate
    speckle = np.zeros_like(pred)
    speckle[20, 20, 12] = True  # far from the defect, inside the skull cavity
    cleaned = postprocess_implant(pred | speckle, defective, closing_radius=2)
    assert not (cleaned & defective).any()
    assert not cleaned[20, 20, 12]
    assert dice(cleaned, implant) > dice(pred, implant) + 0.01
    slit = implant.copy()
    slit[:20], slit[21:] = False, False
    # Closing refills the slit inside the plate (not at its curved outer surface, where the ball does not fit).
    assert cleaned[slit].mean() > 0.65
    # Closing adds nothing far from the prediction (e.g. at the bottom of the shell).
    assert not cleaned[:, :, :25].any()
    assert not postprocess_implant(np.zeros_like(pred), defective).any()
    kept = postprocess_implant(pred | speckle, defective, closing_radius=0, keep_largest=False)
    assert kept[20, 20, 12] and np.array_equal(kept, pred | speckle)
    with pytest.raises(ValueError, match="3D masks of one shape"):
        postprocess_implant(pred[0], defective)


def test_preprocess_case_shares_one_transform(tmp_path):
    ds = load_dataset(write_skullbreak(tmp_path / "sb", ids=("000", "001")))
    prepared = preprocess_case(ds[1], shape=(24, 24, 24), margin_mm=1.0)
    assert prepared.key == "bilateral/001"
    for arr in (prepared.defective, prepared.implant, prepared.complete):
        assert arr.shape == (24, 24, 24) and arr.dtype == bool
    assert np.array_equal(prepared.defective | prepared.implant, prepared.complete)
    assert not (prepared.defective & prepared.implant).any() and prepared.implant.any()
    np.testing.assert_allclose(prepared.spacing_mm, prepared.transform.spacing_mm)
    back = prepared.transform.to_original(prepared.implant)
    assert np.array_equal(back.array, ds[1].implant.array)  # grid finer than 0.5 mm here: exact


def test_stack_cases_caches_and_notices_changed_files(tmp_path, monkeypatch):
    monkeypatch.setenv("CRANIALKIT_DATA_DIR", str(tmp_path / "data"))  # a cache of its own: other tests stack too
    ds = load_dataset(write_skullbreak(tmp_path / "sb", ids=("000", "001", "002")))
    arrays = stack_cases(ds, shape=(16, 16, 16))
    assert arrays.defective.shape == (6, 16, 16, 16) and arrays.implant.dtype == bool
    assert arrays.keys == [c.key for c in ds] and arrays.spacing_mm.shape == (6, 3)
    assert np.array_equal(arrays.defective | arrays.implant, arrays.complete)
    cached = sorted((data_dir() / "cache").glob("stack_skullbreak_16x16x16_*.npz"))
    assert len(cached) == 1
    assert not [p for p in (data_dir() / "cache").rglob(".*")], "temporary cache files left behind"

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(preprocessing, "preprocess_case", fail)
    again = stack_cases(ds, shape=(16, 16, 16))
    assert np.array_equal(again.implant, arrays.implant) and again.keys == arrays.keys
    assert np.array_equal(again.transforms[3].to_original(again.implant[3]).array,
                          arrays.transforms[3].to_original(arrays.implant[3]).array)
    # A changed file invalidates the stack and that case only (the others come from the per-case cache).
    path = ds[0].defective_path
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="cache should have been used"):
        stack_cases(ds, shape=(16, 16, 16))
    monkeypatch.undo()
    assert len(stack_cases(ds, shape=(16, 16, 16))) == 6
    assert len(arrays.select([0, 2])) == 2 and arrays.select([0, 2]).case_ids == ["000", "002"]


def test_stack_cases_needs_ground_truth_and_a_shape(tmp_path):
    ds = load_dataset(write_skullbreak(tmp_path / "sb", implants=False, complete=False))
    with pytest.raises(ValueError, match="no implant or complete skull"):
        stack_cases(ds, shape=(8, 8, 8))
    with pytest.raises(ValueError, match="give shape"):
        stack_cases(ds, shape=None)


# ------------------------------------------------------------------------------------------------ real data


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("case_id", ["000", "001", "002", "003", "004"])
def test_real_skullfix_case_partition_and_round_trip(shared_data, case_id):
    """Must show, per real SkullFix triplet: defective OR implant == complete (disjoint), the crop+pad grid gives the
    original voxels back exactly (oblique case 000 included), and a 64³ grid comes back with Dice > 0.9."""
    ds = load_dataset(shared_data / "skullfix_sample")
    case = next(c for c in ds if c.case_id == case_id)
    defective, implant, complete = case.defective, case.implant, case.complete
    assert np.array_equal(defective.array | implant.array, complete.array)
    assert not (defective.array & implant.array).any()
    assert defective.same_grid(implant) and defective.same_grid(complete)
    # Crop + pad only (grid spacing = original spacing), transform taken from the defective skull.
    _, exact = to_grid(defective, shape=None, spacing_mm=defective.spacing)
    assert exact.is_exactly_invertible
    for vol in (defective, implant):
        back = exact.to_original(exact.apply(vol).array)
        assert back.same_grid(vol) and np.array_equal(back.array, vol.array)
    # Down-sampled network grids: partition kept on the grid; the nearest-neighbour way back stays close.
    for n, min_dice in ((64, 0.75), (128, 0.9)):
        small_def, transform = to_grid(defective, shape=(n, n, n))
        small_imp, small_full = transform.apply(implant).array, transform.apply(complete).array
        assert np.array_equal(small_def.array | small_imp, small_full)
        for small, vol in ((small_imp, implant), (small_full, complete)):
            assert dice(transform.to_original(small).array, vol.array) > min_dice, (n, case_id)
