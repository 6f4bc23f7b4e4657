"""Tests for cranialkit.volume and cranialkit.io: geometry kept exactly through NRRD/NIfTI, clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cranialkit.io import VolumeFileError, as_mask, read_mask, read_volume, write_volume
from cranialkit.volume import Volume


def oblique_volume(shape=(7, 9, 5), seed=0, dtype=np.int16) -> Volume:
    rng = np.random.default_rng(seed)
    direction = Rotation.from_euler("xyz", [12, -5, 30], degrees=True).as_matrix()
    array = rng.integers(0, 100, size=shape).astype(dtype)
    return Volume(array, spacing=[0.45, 0.5, 0.625], origin=[-120.2, -127.8, -10.2], direction=direction)


def test_volume_geometry_and_index_world_round_trip():
    vol = oblique_volume()
    assert vol.is_oblique
    assert not Volume(np.zeros((2, 2, 2))).is_oblique
    idx = np.array([[0, 0, 0], [1, 0, 0], [3, 4, 2]], dtype=float)
    world = vol.index_to_world(idx)
    np.testing.assert_allclose(world[0], vol.origin)
    # One step along axis 0 moves by spacing[0] mm along the first direction column.
    np.testing.assert_allclose(world[1] - world[0], vol.direction[:, 0] * 0.45, atol=1e-12)
    np.testing.assert_allclose(vol.world_to_index(world), idx, atol=1e-9)
    np.testing.assert_allclose((vol.affine @ np.r_[idx[2], 1])[:3], world[2])
    np.testing.assert_allclose(vol.extent_mm, np.array([7, 9, 5]) * vol.spacing)


def test_volume_rejects_bad_input():
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="spacing"):
        Volume(np.zeros((2, 2, 2)), spacing=[1, 0, 1])
    with pytest.raises(ValueError, match="shape"):
        Volume(np.zeros((2, 2, 2))).with_array(np.zeros((2, 2, 3)))


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".nii"])
def test_write_read_round_trip_keeps_oblique_geometry(tmp_path, suffix):
    vol = oblique_volume()
    path = write_volume(vol, tmp_path / f"case{suffix}")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.same_grid(vol, atol=1e-5)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"


def test_nrrd_header_written_as_lps_rows(tmp_path):
    vol = oblique_volume()
    path = write_volume(vol, tmp_path / "a.nrrd")
    header = nrrd.read_header(str(path))
    assert header["space"] == "left-posterior-superior"
    # NRRD rows are axis vectors = spacing × direction column.
    np.testing.assert_allclose(header["space directions"], (vol.direction * vol.spacing).T, atol=1e-9)
    np.testing.assert_allclose(header["space origin"], vol.origin)


def test_nifti_affine_is_ras_version_of_lps(tmp_path):
    vol = oblique_volume()
    path = write_volume(vol, tmp_path / "a.nii.gz")
    affine = nib.load(str(path)).affine
    np.testing.assert_allclose(np.diag([-1, -1, 1, 1]) @ affine, vol.affine, atol=1e-5)


def test_bool_is_written_as_uint8_and_read_back_as_mask(tmp_path):
    mask = Volume(np.zeros((4, 5, 6), bool))
    mask.array[1:3, 2, 3] = True
    path = write_volume(mask, tmp_path / "m.nrrd")
    assert read_volume(path).array.dtype == np.uint8
    back = read_mask(path)
    assert back.array.dtype == bool and np.array_equal(back.array, mask.array)


def test_ras_and_spacings_only_nrrd_headers(tmp_path):
    array = np.zeros((3, 4, 5), np.uint8)
    ras = tmp_path / "ras.nrrd"
    nrrd.write(str(ras), array, {"space": "right-anterior-superior", "space directions": np.diag([0.5, 0.6, 0.7]),
                                 "space origin": np.array([10.0, 20.0, 30.0])})
    vol = read_volume(ras)
    np.testing.assert_allclose(vol.origin, [-10, -20, 30])
    np.testing.assert_allclose(vol.spacing, [0.5, 0.6, 0.7])
    np.testing.assert_allclose(vol.direction, np.diag([-1, -1, 1]))
    plain = tmp_path / "plain.nrrd"
    nrrd.write(str(plain), array, {"spacings": np.array([0.8, 0.9, 1.1])})
    vol = read_volume(plain)
    np.testing.assert_allclose(vol.spacing, [0.8, 0.9, 1.1])
    np.testing.assert_allclose(vol.direction, np.eye(3))


def test_truncated_and_garbage_files_name_the_path(tmp_path):
    vol = oblique_volume(shape=(20, 20, 20))
    good = write_volume(vol, tmp_path / "good.nrrd")
    cut = tmp_path / "cut.nrrd"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VolumeFileError, match=r"cut\.nrrd: unreadable or truncated NRRD"):
        read_volume(cut)
    cut_nii = tmp_path / "cut.nii.gz"
    cut_nii.write_bytes(write_volume(vol, tmp_path / "g.nii.gz").read_bytes()[:200])
    with pytest.raises(VolumeFileError, match=r"cut\.nii\.gz: unreadable or truncated NIFTI"):
        read_volume(cut_nii)
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(gzip.compress(b"not a nifti"))
    with pytest.raises(VolumeFileError, match="garbage.nii.gz"):
        read_volume(garbage)
    with pytest.raises(VolumeFileError, match="no such file"):
        read_volume(tmp_path / "missing.nrrd")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(VolumeFileError, match=r"notes\.txt: unknown volume format"):
        read_volume(text)
    with pytest.raises(VolumeFileError, match="unknown volume format"):
        write_volume(vol, tmp_path / "x.mha")


def test_wrong_dimensionality_and_nan_are_errors(tmp_path):
    path_4d = tmp_path / "four.nrrd"
    nrrd.write(str(path_4d), np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(VolumeFileError, match=r"four\.nrrd: expected a 3D volume, got 4D"):
        read_volume(path_4d)
    path_2d = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.zeros((3, 4), np.float32), np.eye(4)), str(path_2d))
    with pytest.raises(VolumeFileError, match="got 2D"):
        read_volume(path_2d)
    path_nan = tmp_path / "nan.nrrd"
    array = np.zeros((3, 3, 3), np.float32)
    array[1, 1, 1] = np.nan
    nrrd.write(str(path_nan), array)
    with pytest.raises(VolumeFileError, match="NaN"):
        read_volume(path_nan)


def test_mask_checks(tmp_path):
    vol = Volume(np.zeros((4, 4, 4), np.int32))
    with pytest.raises(VolumeFileError, match="skull.nrrd: empty mask"):
        as_mask(vol, "skull.nrrd")
    assert not as_mask(vol, allow_empty=True).array.any()
    vol.array[0, 0, 0] = 1
    vol.array[1, 1, 1] = 2
    vol.array[2, 2, 2] = -1
    with pytest.raises(VolumeFileError, match=r"not a binary mask \(2 voxels with values -1, 2\)"):
        as_mask(vol, "skull.nrrd")
    path = write_volume(vol, tmp_path / "labels.nrrd")
    with pytest.raises(VolumeFileError, match="labels.nrrd: not a binary mask"):
        read_mask(path)
    floats = Volume(np.array([0.0, 1.0] * 4).reshape(2, 2, 2))
    assert as_mask(floats).array.dtype == bool


# ------------------------------------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_real_oblique_skullfix_geometry_matches_nrrd_header(shared_data):
    """Real SkullFix case 000 has a gantry tilt: every voxel must land where the NRRD header puts it.

    (All five real triplets are checked voxel for voxel, and round-tripped, in test_preprocessing.py.)
    """
    path = shared_data / "skullfix_sample" / "training_set" / "defective_skull" / "000.nrrd"
    vol = read_mask(path)
    header = nrrd.read_header(str(path))
    assert vol.shape == tuple(header["sizes"])
    assert vol.is_oblique, "case 000 has a gantry tilt: its direction matrix must not be diagonal"
    rows = np.asarray(header["space directions"], float)
    # NRRD definition: voxel (i, j, k) sits at origin + i·row0 + j·row1 + k·row2.
    index = np.array([[0, 0, 0], [511, 3, 7], [100, 200, vol.shape[2] - 1]])
    expected = np.asarray(header["space origin"], float) + index @ rows
    np.testing.assert_allclose(vol.index_to_world(index), expected, atol=1e-6)
    np.testing.assert_allclose(vol.spacing, np.linalg.norm(rows, axis=1), atol=1e-9)
    assert 0.001 < vol.array.mean() < 0.2


@pytest.mark.realdata
@pytest.mark.slow
def test_real_skullbreak_nifti_geometry_matches_nibabel(shared_data):
    path = shared_data / "skullbreak_sample" / "skullbreak_parietotemporal_001.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    vol = read_mask(path)
    image = nib.load(str(path))
    assert vol.shape == image.shape == (512, 512, 512)
    np.testing.assert_allclose(vol.affine, np.diag([-1, -1, 1, 1]) @ image.affine, atol=1e-6)
    np.testing.assert_allclose(vol.spacing, 0.4, atol=1e-6)
    # World position of a skull voxel agrees with nibabel's own (RAS) mapping, flipped to LPS.
    skull = np.flatnonzero(vol.array)
    voxel = np.array(np.unravel_index(skull[len(skull) // 2], vol.shape))
    ras = nib.affines.apply_affine(image.affine, voxel)
    np.testing.assert_allclose(vol.index_to_world(voxel), ras * [-1, -1, 1], atol=1e-6)
    assert 0.001 < vol.array.mean() < 0.2


def test_read_mask_accepts_path_objects_and_strings(tmp_path):
    mask = Volume(np.ones((2, 2, 2), bool))
    path = write_volume(mask, tmp_path / "m.nii.gz")
    assert read_mask(str(path)).array.all()
    assert read_mask(Path(path)).array.all()
