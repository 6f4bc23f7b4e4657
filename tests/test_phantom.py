"""Tests of cranialkit.data.phantom: skull anatomy and size in mm, orientation, defects, datasets on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cranialkit.data import phantom
from cranialkit.data.phantom import (
    PHANTOM_CLASSES,
    SKULLBREAK_CLASSES,
    make_defect,
    make_phantom_dataset,
    make_skull,
    skull_measurements,
)
from cranialkit.io import read_mask
from cranialkit.volume import Volume

SKULLFIX = Path(__file__).resolve().parents[2] / "shared" / "data" / "skullfix_sample" / "training_set"


@pytest.fixture(scope="module")
def skull96() -> Volume:
    return make_skull(11, (96, 96, 96))


@pytest.fixture(scope="module")
def defects96(skull96) -> dict[str, tuple[Volume, Volume]]:
    return {c: make_defect(skull96, c, 11) for c in PHANTOM_CLASSES}


def _world_centre_of_mass(volume: Volume) -> np.ndarray:
    centre = np.array(ndimage.center_of_mass(volume.array))
    return volume.origin + volume.direction @ (volume.spacing * centre)


# ----------------------------------------------------------------------------------------------------------------------
# The complete skull
# ----------------------------------------------------------------------------------------------------------------------
def test_skull_geometry_and_determinism(skull96):
    assert skull96.array.dtype == bool and skull96.shape == (96, 96, 96)
    np.testing.assert_allclose(skull96.spacing, 2.5)
    np.testing.assert_allclose(skull96.origin, -47.5 * 2.5)  # centred: voxel centres symmetric about 0
    np.testing.assert_allclose(skull96.direction, np.eye(3))
    assert np.array_equal(make_skull(11, (96, 96, 96)).array, skull96.array)
    assert not np.array_equal(make_skull(12, (96, 96, 96)).array, skull96.array)
    anisotropic = make_skull(11, (48, 64, 40), field_of_view_mm=200.0)
    assert anisotropic.shape == (48, 64, 40)
    np.testing.assert_allclose(anisotropic.spacing, 200.0 / 64)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_skull_size_and_thickness_are_realistic(seed):
    measured = skull_measurements(make_skull(seed, (128, 128, 128)))
    params = phantom.skull_parameters(seed)
    assert 165 <= measured["length_mm"] <= 205
    assert 130 <= measured["width_mm"] <= 165
    assert abs(measured["length_mm"] - params.length_mm) < 12  # the parameters mean what they say
    assert abs(measured["width_mm"] - params.width_mm) < 12
    assert 4.5 <= measured["thickness_mean_mm"] <= 9.0
    assert measured["thickness_min_mm"] >= 3.0 and measured["thickness_max_mm"] <= 11.0
    assert measured["thickness_max_mm"] - measured["thickness_min_mm"] > 0.5  # thickness varies over the vault
    assert 250 <= measured["volume_ml"] <= 800


def test_shape_does_not_depend_on_resolution():
    coarse = skull_measurements(make_skull(4, (64, 64, 64)))
    fine = skull_measurements(make_skull(4, (160, 160, 160)))
    for key in ("length_mm", "width_mm", "height_mm"):
        assert abs(coarse[key] - fine[key]) <= 2 * 3.75 + 1e-6  # within two coarse voxels


def test_orientation_face_front_vault_top(skull96):
    bone = skull96.array
    k_present = np.flatnonzero(bone.any(axis=(0, 1)))
    assert k_present[-1] > 0.7 * bone.shape[2]  # the vault top is at high axis-2 index
    # The cranial floor slopes down towards the back (mid-sagittal columns at 35 % and 50 % of the length).
    j_present = np.flatnonzero(bone.any(axis=(0, 2)))
    middle = bone.shape[0] // 2
    lowest = [np.flatnonzero(bone[middle, j_present[0] + int(f * np.ptp(j_present))])[0] for f in (0.35, 0.5)]
    assert lowest[0] > lowest[1]
    # The forehead is narrower than the occiput (axial projection).
    axial = bone.any(axis=2)
    length = j_present[-1] - j_present[0]
    width_at = [np.ptp(np.flatnonzero(axial[:, j_present[0] + int(f * length)])) for f in (0.2, 0.8)]
    assert width_at[0] < width_at[1]


def test_orbits_and_foramen_magnum_are_holes():
    skull = make_skull(3, (128, 128, 128))
    p = phantom.skull_parameters(3)
    bone = skull.array

    def index(point_mm):
        return tuple(np.rint((np.asarray(point_mm) - skull.origin) / skull.spacing).astype(int))

    cx, cy, cz = p.centre_mm
    orbit_z = cz - p.base_drop_mm + p.orbit_height_mm
    for side in (-1, 1):  # a ray from the front through each orbit centre meets no bone in the first 25 mm
        i, _, k = index((cx + side * p.orbit_spacing_mm / 2, 0.0, orbit_z))
        ray = bone[i, :, k]
        first = np.flatnonzero(bone[:, :, k].any(axis=0))[0]
        assert not ray[first: first + int(25 / skull.spacing[1])].any()
    # The cranial floor is bone around the foramen magnum but not at its centre.
    fx, fy = cx, cy + 0.32 * p.length_mm / 2
    column = bone[index((fx, fy, 0))[0], index((fx, fy, 0))[1], :]
    beside = bone[index((fx + 30, fy, 0))[0], index((fx + 30, fy, 0))[1], :]
    assert beside.sum() > column.sum()


def test_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        make_skull(0, (4, 64, 64))
    with pytest.raises(ValueError, match="field_of_view_mm"):
        make_skull(0, (32, 32, 32), field_of_view_mm=-1)
    with pytest.raises(ValueError, match="no skull"):
        make_skull(0, (32, 32, 32), field_of_view_mm=20.0)  # a 20 mm grid inside the skull
    with pytest.raises(ValueError, match="empty"):
        skull_measurements(Volume(np.zeros((8, 8, 8), bool)))


# ----------------------------------------------------------------------------------------------------------------------
# Defects
# ----------------------------------------------------------------------------------------------------------------------
def test_defects_partition_the_skull(skull96, defects96):
    for defect_class, (defective, implant) in defects96.items():
        assert defective.same_grid(skull96) and implant.same_grid(skull96)
        assert defective.array.dtype == bool and implant.array.dtype == bool
        assert np.array_equal(defective.array | implant.array, skull96.array), defect_class
        assert not (defective.array & implant.array).any(), defect_class
        assert implant.array.sum() > 0.01 * skull96.array.sum(), defect_class
        labels, count = ndimage.label(implant.array, ndimage.generate_binary_structure(3, 3))
        largest = np.bincount(labels.ravel())[1:].max()
        assert largest >= 0.8 * implant.array.sum(), f"{defect_class}: implant falls apart into {count} pieces"


def test_defect_locations_match_their_class(skull96, defects96):
    centre = _world_centre_of_mass(skull96)
    where = {c: _world_centre_of_mass(implant) - centre for c, (_, implant) in defects96.items()}
    size = {c: implant.array.sum() for c, (_, implant) in defects96.items()}
    x, y, z = 0, 1, 2  # world LPS: +x left, +y posterior, +z superior
    assert abs(where["bilateral"][x]) < 15 and where["bilateral"][z] > 30  # on top, across the midline
    assert size["bilateral"] == max(size[c] for c in SKULLBREAK_CLASSES)  # the largest SkullBreak class
    assert where["frontoorbital"][y] < -50  # in front
    frontal = defects96["frontoorbital"][1].array
    assert np.flatnonzero(frontal.any(axis=(0, 1)))[0] < np.flatnonzero(skull96.array.any(axis=(0, 1)))[0] + 0.35 * 96
    assert abs(where["parietotemporal"][x]) > 40  # on one side
    assert where["skullfix"][z] > 30  # upper vault
    for c in ("random_1", "random_2"):
        assert where[c][z] > 0  # on the vault, above its centre


def test_skullfix_hole_is_cube_sized():
    skull = make_skull(2, (160, 160, 160))
    for seed in range(3):
        _, implant = make_defect(skull, "skullfix", seed)
        # The hole's largest horizontal extent: between a side (50–80 mm) and its diagonal.
        extent = np.ptp(np.argwhere(implant.array)[:, :2], axis=0).max() * skull.spacing[0]
        assert 45 <= extent <= 80 * np.sqrt(2) + 5


def test_defects_are_deterministic_and_vary_with_seed(skull96):
    a = make_defect(skull96, "random_2", 5)[1].array
    assert np.array_equal(a, make_defect(skull96, "random_2", 5)[1].array)
    assert not np.array_equal(a, make_defect(skull96, "random_2", 6)[1].array)


def test_defect_on_anisotropic_grid_and_bad_input(skull96):
    stretched = Volume(skull96.array, spacing=(2.8, 2.5, 2.2), origin=skull96.origin)
    defective, implant = make_defect(stretched, "parietotemporal", 0)
    assert implant.array.any() and np.array_equal(defective.array | implant.array, stretched.array)
    with pytest.raises(ValueError, match="unknown defect_class"):
        make_defect(skull96, "occipital", 0)
    with pytest.raises(ValueError, match="empty"):
        make_defect(Volume(np.zeros((16, 16, 16), bool)), "skullfix", 0)


@pytest.mark.realdata
@pytest.mark.slow
def test_defect_and_measurements_on_a_real_oblique_skull():
    if not SKULLFIX.is_dir():
        pytest.skip(f"real sample data not found at {SKULLFIX}")
    complete = read_mask(SKULLFIX / "complete_skull" / "000.nrrd")  # oblique direction matrix
    defective, implant = make_defect(complete, "skullfix", 1)
    assert implant.array.any() and not (defective.array & implant.array).any()
    assert np.array_equal(defective.array | implant.array, complete.array)
    measured = skull_measurements(complete)
    assert 150 < measured["length_mm"] < 210 and 110 < measured["width_mm"] < 170
    assert 4 < measured["thickness_mean_mm"] < 10


def test_thickness_measurement_on_a_plate():
    for voxels in (5, 6, 7):
        plate = np.zeros((50, 50, 30), bool)
        plate[4:46, 4:46, 10:10 + voxels] = True
        measured = skull_measurements(Volume(plate, spacing=(0.8, 0.8, 0.8)), vault_fraction=1.0)
        assert abs(measured["thickness_mean_mm"] - voxels * 0.8) <= 0.5 * 0.8 + 1e-6
        assert measured["volume_ml"] == pytest.approx(42 * 42 * voxels * 0.8**3 / 1000)
        assert measured["width_mm"] == pytest.approx(42 * 0.8)


# ----------------------------------------------------------------------------------------------------------------------
# Datasets on disk
# ----------------------------------------------------------------------------------------------------------------------
def test_dataset_layout_geometry_and_resume(tmp_path):
    root = tmp_path / "phantoms"
    classes = ("bilateral", "skullfix")
    make_phantom_dataset(root, n_subjects=2, shape=(40, 40, 40), classes=classes, seed=3)
    params = json.loads((root / "phantom.json").read_text())
    assert params["n_subjects"] == 2 and params["classes"] == list(classes) and params["spacing_mm"] == 6.0
    expected = [root / "complete_skull" / f"{i:03d}.nrrd" for i in range(2)]
    expected += [root / kind / c / f"{i:03d}.nrrd" for kind in ("defective_skull", "implant") for c in classes
                 for i in range(2)]
    assert all(path.is_file() for path in expected)
    complete = read_mask(root / "complete_skull" / "001.nrrd")
    assert complete.same_grid(make_skull(phantom.subject_seed(3, 1), (40, 40, 40)))
    assert np.array_equal(complete.array, make_skull(phantom.subject_seed(3, 1), (40, 40, 40)).array)
    defective = read_mask(root / "defective_skull" / "skullfix" / "001.nrrd")
    implant = read_mask(root / "implant" / "skullfix" / "001.nrrd")
    assert np.array_equal(defective.array | implant.array, complete.array)

    # Interrupted run: subject 001 was never recorded; a rerun redoes only it, and more subjects extend it.
    manifest = root / "manifest.jsonl"
    manifest.write_text(manifest.read_text().splitlines()[0] + "\n")
    (root / "implant" / "skullfix" / "001.nrrd").unlink()
    first_mtime = (root / "complete_skull" / "000.nrrd").stat().st_mtime_ns
    make_phantom_dataset(root, n_subjects=2, shape=(40, 40, 40), classes=classes, seed=3)
    assert (root / "implant" / "skullfix" / "001.nrrd").is_file()
    assert (root / "complete_skull" / "000.nrrd").stat().st_mtime_ns == first_mtime
    assert len(manifest.read_text().splitlines()) == 2

    with pytest.raises(ValueError, match="other parameters.*seed"):
        make_phantom_dataset(root, n_subjects=2, shape=(40, 40, 40), classes=classes, seed=4)
    with pytest.raises(ValueError, match="unknown defect classes"):
        make_phantom_dataset(tmp_path / "other", classes=("bilateral", "nope"))


def test_default_dataset_loads_through_the_dataset_api(tmp_path):
    datasets = pytest.importorskip("cranialkit.data.datasets")
    root = make_phantom_dataset(tmp_path / "p64", n_subjects=10, shape=(64, 64, 64), seed=0)
    dataset = datasets.load_dataset(root)
    assert dataset.layout == "phantom"
    assert len(dataset) == 60 and sorted(dataset.classes()) == sorted(PHANTOM_CLASSES)
    case = dataset[0]
    assert case.defective.same_grid(case.complete)
    np.testing.assert_allclose(case.defective.spacing, 240.0 / 64)
    assert np.array_equal(case.defective.array | case.implant.array, case.complete.array)


def test_coarse_fields_upsample_onto_the_fine_grid_exactly():
    """A plane evaluated on the coarse grid and upsampled cuts the fine grid exactly where the plane is."""
    fine = phantom.centred_geometry((90, 70, 50), 240.0)  # 2.67 mm: factor 1 on every axis
    fine = Volume(fine.array, spacing=(0.5, 0.7, 1.0), origin=(-20.0, 5.0, 3.0))  # factors 4, 2, 2
    factors = phantom._coarse_factors(fine.spacing)
    assert factors.tolist() == [4, 2, 2]
    x, y, z = phantom._coarse_world(fine, np.zeros(3, int), np.asarray(fine.shape), factors)
    mask = phantom._upsample_positive(x + 0.3 * y - 0.2 * z - 1.234, factors, fine.shape)
    i, j, k = np.indices(fine.shape)
    wx, wy, wz = (fine.origin[a] + fine.spacing[a] * idx for a, idx in enumerate((i, j, k)))
    expected = wx + 0.3 * wy - 0.2 * wz - 1.234 > 0
    inner = (slice(4, -4), slice(2, -2), slice(2, -2))  # borders are clamped by the interpolation
    assert np.array_equal(mask[inner], expected[inner])
