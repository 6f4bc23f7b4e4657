"""Tests for cranialkit.data.datasets: the four layouts, clear errors for incomplete ones, subject-wise splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cranialkit.data.datasets import (
    DatasetLayoutError,
    check_case_volumes,
    detect_layout,
    load_dataset,
    phantom_dataset,
)
from cranialkit.errors import GeometryError
from cranialkit.io import VolumeFileError, read_grid, read_mask, write_volume
from cranialkit.volume import Volume

SPACING = (0.5, 0.5, 0.625)


def tiny_triplet(seed: int, shape=(12, 12, 10)) -> tuple[Volume, Volume, Volume]:
    """A hollow box 'skull' with a hole in its top face: (complete, defective, implant)."""
    complete = np.zeros(shape, bool)
    complete[2:-2, 2:-2, 2:-2] = True
    complete[3:-3, 3:-3, 3:-3] = False
    implant = np.zeros(shape, bool)
    k = shape[2] - 3
    lo = 3 + seed % 3
    implant[lo : lo + 4, 4:8, k] = True
    implant &= complete
    geometry = dict(spacing=SPACING, origin=(-3.0, -2.0, 1.0 + seed))
    return (Volume(complete, **geometry), Volume(complete & ~implant, **geometry), Volume(implant, **geometry))


def write_skullbreak(root: Path, ids=("000", "001", "002"), classes=("bilateral", "random_1"), implants=True,
                     complete=True) -> Path:
    for n, case_id in enumerate(ids):
        full, defective, implant = tiny_triplet(n)
        if complete:
            write_volume(full, root / "complete_skull" / f"{case_id}.nrrd")
        for cls in classes:
            write_volume(defective, root / "defective_skull" / cls / f"{case_id}.nrrd")
            if implants:
                write_volume(implant, root / "implant" / cls / f"{case_id}.nrrd")
    return root


def write_skullfix(root: Path, ids=("000", "001", "002"), test_ids=("000",)) -> Path:
    for n, case_id in enumerate(ids):
        full, defective, implant = tiny_triplet(n)
        for part, vol in (("complete_skull", full), ("defective_skull", defective), ("implant", implant)):
            write_volume(vol, root / "training_set" / part / f"{case_id}.nrrd")
    for case_id in test_ids:
        write_volume(tiny_triplet(7)[1], root / "test_set_for_participants" / f"{case_id}.nrrd")
    return root


def test_skullbreak_layout_loads_cases_with_geometry(tmp_path):
    root = write_skullbreak(tmp_path / "sb")
    ds = load_dataset(root)
    assert ds.layout == "skullbreak" and len(ds) == 6
    assert ds.classes() == ["bilateral", "random_1"] and ds.subjects() == ["000", "001", "002"]
    assert [c.key for c in ds][:3] == ["bilateral/000", "bilateral/001", "bilateral/002"]
    case = ds[4]
    assert case.key == "random_1/001"
    full, defective, implant = tiny_triplet(1)
    assert np.array_equal(case.defective.array, defective.array)
    assert np.array_equal(case.implant.array, implant.array)
    assert np.array_equal(case.complete.array, full.array)
    assert case.defective.same_grid(defective)
    np.testing.assert_allclose(case.defective.spacing, SPACING)
    assert ds.summary()["cases_per_class"] == {"bilateral": 3, "random_1": 3}


def test_skullbreak_test_split_without_ground_truth(tmp_path):
    root = write_skullbreak(tmp_path / "sb_test", implants=False, complete=False)
    ds = load_dataset(root)
    assert ds.layout == "skullbreak" and len(ds) == 6
    assert all(c.implant is None and c.complete is None and not c.has_ground_truth for c in ds)


def test_implant_derived_from_complete_when_no_implant_file(tmp_path):
    root = write_skullbreak(tmp_path / "sb", implants=False)
    case = load_dataset(root)[0]
    full, defective, implant = tiny_triplet(0)
    assert case.implant_path is None and case.has_ground_truth
    assert np.array_equal(case.implant.array, implant.array)


def test_skullfix_layout_with_test_set(tmp_path):
    root = write_skullfix(tmp_path / "sf")
    ds = load_dataset(root)
    assert ds.layout == "skullfix" and detect_layout(root) == "skullfix"
    assert ds.classes() == ["skullfix"]
    assert [c.case_id for c in ds] == ["000", "001", "002", "test_000"]
    assert sum(c.has_ground_truth for c in ds) == 3
    assert np.array_equal(ds[2].implant.array, tiny_triplet(2)[2].array)
    # The training_set folder on its own (flat layout) also loads.
    flat = load_dataset(root / "training_set")
    assert flat.layout == "skullfix" and len(flat) == 3


def test_mug500_and_phantom_layouts_are_detected(tmp_path):
    mug = tmp_path / "mug"
    for n, case_id in enumerate(("B01", "B02")):
        _, defective, implant = tiny_triplet(n)
        write_volume(defective, mug / "defective_skull" / "craniotomy" / f"{case_id}.nrrd")
        write_volume(implant, mug / "implant" / "craniotomy" / f"{case_id}.nrrd")
    for case_id in ("A0001", "A0002", "A0003"):
        write_volume(tiny_triplet(0)[0], mug / "complete_skull" / f"{case_id}.nrrd")
    ds = load_dataset(mug)
    assert ds.layout == "mug500" and len(ds) == 2 and len(ds.healthy) == 3
    assert all(c.complete is None and c.implant is not None for c in ds)
    phantom_like = write_skullbreak(tmp_path / "ph")
    (phantom_like / "phantom.json").write_text("{}")
    assert load_dataset(phantom_like).layout == "phantom"


def test_missing_implants_are_listed_by_class_and_case(tmp_path):
    root = write_skullbreak(tmp_path / "sb", ids=("000", "004", "007", "009"))
    (root / "implant" / "bilateral" / "004.nrrd").unlink()
    (root / "implant" / "bilateral" / "007.nrrd").unlink()
    with pytest.raises(DatasetLayoutError, match=r"implant/bilateral: missing for cases 004, 007"):
        load_dataset(root)


def test_phantom_needs_complete_skulls(tmp_path):
    root = write_skullbreak(tmp_path / "ph", ids=("000", "001"))
    (root / "phantom.json").write_text("{}")
    (root / "complete_skull" / "001.nrrd").unlink()
    with pytest.raises(DatasetLayoutError, match=r"complete_skull: missing for cases 001"):
        load_dataset(root)


def test_unknown_layout_and_missing_folder(tmp_path):
    (tmp_path / "odd" / "images").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=r"unknown dataset layout.*Found: \['images'\]"):
        load_dataset(tmp_path / "odd")
    with pytest.raises(DatasetLayoutError, match="no such dataset folder"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "sf" / "training_set").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=r"training_set/defective_skull: missing"):
        load_dataset(tmp_path / "sf")
    with pytest.raises(ValueError, match="layout must be"):
        load_dataset(write_skullbreak(tmp_path / "sb"), layout="brats")


def test_shape_and_spacing_mismatch_name_both_files(tmp_path):
    root = write_skullbreak(tmp_path / "sb", ids=("000", "001"))
    _, _, implant = tiny_triplet(1)
    write_volume(Volume(np.pad(implant.array, ((0, 1), (0, 0), (0, 0))), spacing=SPACING),
                 root / "implant" / "random_1" / "001.nrrd")
    with pytest.raises(VolumeFileError, match=r"defective_skull/random_1/001.nrrd and .*implant/random_1/001.nrrd: "
                                              r".*different grids \(shape \(12, 12, 10\) vs \(13, 12, 10\)"):
        load_dataset(root)
    write_volume(Volume(implant.array, spacing=(0.5, 0.5, 1.0)), root / "implant" / "random_1" / "001.nrrd")
    with pytest.raises(VolumeFileError, match=r"implant/random_1/001.nrrd: .*different grids \(spacing"):
        load_dataset(root)
    assert len(load_dataset(root, check_headers=False)) == 4


def test_origin_direction_and_copied_implant_are_refused(tmp_path):
    """Same shape and spacing is not enough: a shifted or mirrored implant would be scored voxel by voxel against
    the wrong place, and an implant that is the skull itself is no implant."""
    root = write_skullbreak(tmp_path / "sb", ids=("000", "001"))
    target = root / "implant" / "random_1" / "001.nrrd"
    _, defective, implant = tiny_triplet(1)
    write_volume(Volume(implant.array, SPACING, implant.origin + [5.0, 0, 0]), target)
    with pytest.raises(GeometryError, match=r"implant/random_1/001.nrrd: .*different grids \(origin .*5 mm apart"):
        load_dataset(root)
    write_volume(Volume(implant.array, SPACING, implant.origin, np.diag([1.0, -1.0, 1.0])), target)
    with pytest.raises(GeometryError, match=r"different grids \(direction \(axis 1 flipped\)"):
        load_dataset(root)
    write_volume(implant.with_array(implant.array), target)
    assert len(load_dataset(root)) == 4  # a rounding-sized origin difference is accepted
    write_volume(Volume(implant.array, SPACING, implant.origin + 1e-4), target)
    assert len(load_dataset(root)) == 4
    (root / "implant" / "random_1" / "001.nrrd").write_bytes((root / "defective_skull" / "random_1" /
                                                             "001.nrrd").read_bytes())
    with pytest.raises(GeometryError, match=r"implant/random_1/001.nrrd: the implant of case random_1/001 is a copy"):
        load_dataset(root)
    case = next(c for c in load_dataset(root, check_headers=False) if c.key == "random_1/001")
    with pytest.raises(GeometryError, match=r"overlaps its defective skull .* in \d+ of its \d+ voxels \(100 %\)"):
        check_case_volumes(case, case.defective, implant=read_mask(case.implant_path))
    check_case_volumes(case, defective, implant=implant)  # the true pair is disjoint


def test_spacing_must_be_present_and_plausible(tmp_path):
    import nrrd

    array = np.zeros((4, 4, 4), np.uint8)
    array[1, 1, 1] = 1
    nrrd.write(str(tmp_path / "bare.nrrd"), array)
    with pytest.raises(VolumeFileError, match=r"bare.nrrd: the NRRD header gives no voxel spacing"):
        read_mask(tmp_path / "bare.nrrd")
    for spacing in (1e6, 1e-6):
        nrrd.write(str(tmp_path / "v.nrrd"), array, {"space directions": np.diag([spacing, 1.0, 1.0])})
        with pytest.raises(VolumeFileError, match=r"v.nrrd: implausible voxel spacing .* \(expected 0.05–20 mm\)"):
            read_mask(tmp_path / "v.nrrd")
        with pytest.raises(VolumeFileError, match="implausible voxel spacing"):
            read_grid(tmp_path / "v.nrrd")


@pytest.mark.parametrize("n_subjects", [3, 4, 5, 7, 10, 23])
def test_split_by_subject_is_disjoint_complete_reproducible(tmp_path, n_subjects):
    ids = [f"{i:03d}" for i in range(n_subjects)]
    root = write_skullbreak(tmp_path / "sb", ids=ids, classes=("a", "b"), implants=False, complete=False)
    ds = load_dataset(root, check_headers=False)
    parts = ds.split(seed=3)
    subjects = {name: set(part.subjects()) for name, part in parts.items()}
    assert all(subjects.values()), f"empty part for {n_subjects} subjects: {subjects}"
    assert subjects["train"].isdisjoint(subjects["val"]) and subjects["train"].isdisjoint(subjects["test"])
    assert subjects["val"].isdisjoint(subjects["test"])
    assert set().union(*subjects.values()) == set(ids)
    # All classes of a subject stay together.
    for part in parts.values():
        assert len(part) == 2 * len(part.subjects())
    again = ds.split(seed=3)
    assert all(again[k].subjects() == parts[k].subjects() for k in parts)
    if n_subjects >= 10:
        assert len(subjects["train"]) >= len(subjects["val"]) and len(subjects["train"]) > n_subjects // 2
        other = ds.split(seed=4)
        assert any(other[k].subjects() != parts[k].subjects() for k in parts)


def test_split_rejects_bad_fractions_and_allows_empty_parts(tmp_path):
    ds = load_dataset(write_skullbreak(tmp_path / "sb", classes=("a",), implants=False), check_headers=False)
    with pytest.raises(ValueError, match="fractions"):
        ds.split(fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match="fractions"):
        ds.split(fractions=(1.0, -0.1, 0.1))
    parts = ds.split(fractions=(1, 0, 0))
    assert len(parts["train"]) == 3 and len(parts["val"]) == 0 and len(parts["test"]) == 0


def test_phantom_dataset_64_cubed_10_subjects_6_classes_geometry():
    """Must show: a 64³ phantom dataset of 10 subjects × 6 classes loads back with correct geometry."""
    from cranialkit.data.phantom import PHANTOM_CLASSES

    ds = phantom_dataset(n_subjects=10, resolution=64, seed=0)
    assert ds.layout == "phantom" and len(ds) == 60
    assert ds.classes() == sorted(PHANTOM_CLASSES) and len(ds.subjects()) == 10
    spacing = 240.0 / 64
    for case in ds.cases[::7]:
        defective, implant, complete = case.defective, case.implant, case.complete
        for vol in (defective, implant, complete):
            assert vol.shape == (64, 64, 64)
            np.testing.assert_allclose(vol.spacing, spacing)
            np.testing.assert_allclose(vol.direction, np.eye(3))
            np.testing.assert_allclose(vol.origin, -(64 - 1) / 2 * spacing)  # centred on the world origin
        assert np.array_equal(defective.array | implant.array, complete.array)
        assert not (defective.array & implant.array).any() and implant.array.any()
    again = phantom_dataset(n_subjects=10, resolution=64, seed=0)  # reused, not regenerated
    assert again.root == ds.root and again.cases == ds.cases
    subset = phantom_dataset(n_subjects=2, resolution=32, seed=1, classes=["skullfix", "bilateral"])
    assert subset.classes() == ["bilateral", "skullfix"] and len(subset) == 4
    with pytest.raises(ValueError, match="unknown phantom defect classes"):
        phantom_dataset(n_subjects=2, resolution=32, classes=["bilateral", "tumour"])


@pytest.mark.realdata
def test_real_skullfix_sample_loads(shared_data):
    ds = load_dataset(shared_data / "skullfix_sample")
    assert ds.layout == "skullfix" and len(ds) == 5 and ds.subjects() == ["000", "001", "002", "003", "004"]
    assert all(c.implant_path is not None and c.complete_path is not None for c in ds)
    parts = ds.split(seed=0)
    assert sorted(sum((p.subjects() for p in parts.values()), [])) == ds.subjects()


@pytest.mark.realdata
def test_real_skullfix_cases_pass_the_geometry_checks(shared_data):
    """Every real case shares one grid (oblique ones too) and its implant lies off the skull; the header checks
    read no voxels, so loading 50 cases of 512² × Z gzip NRRD stays cheap."""
    import time

    root = shared_data / "skullfix_dev"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    started = time.perf_counter()
    ds = load_dataset(root)
    assert len(ds) == 50 and time.perf_counter() - started < 10
    oblique = [c for c in ds if not np.allclose(np.abs(read_grid(c.defective_path).direction), np.eye(3), atol=1e-6)]
    assert len(oblique) == 21
    case = oblique[0]
    defective = case.defective
    check_case_volumes(case, defective, implant=read_mask(case.implant_path), complete=read_mask(case.complete_path))
