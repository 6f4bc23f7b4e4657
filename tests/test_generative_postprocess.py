"""Post-processing of generated probabilities into valid cases, and writing them as a loadable dataset."""

from __future__ import annotations

import numpy as np
import pytest

from cranialkit.data.datasets import load_dataset
from cranialkit.generative.postprocess import (
    REJECTION_REASONS,
    largest_component,
    main_component_fraction,
    mean_face_neighbours,
    postprocess_sample,
    rejection_counts,
    to_case,
    write_generated_dataset,
)
from cranialkit.io import read_mask
from cranialkit.jobs import Manifest


def _pair(size=24) -> np.ndarray:
    g = (np.mgrid[:size, :size, :size] + 0.5) / size - 0.5
    r = np.sqrt((g**2).sum(0))
    skull = (r < 0.4) & (r > 0.32)
    cap = skull & (g[2] > 0.3)
    return np.stack([skull & ~cap, cap]).astype(np.float32)


def test_to_case_repairs_overlap_and_specks():
    probs = _pair() * 0.9
    probs[1][probs[0] > 0.5] = 0.7  # implant overlapping the whole skull
    probs[0, 1, 1, 1] = 0.9  # a skull speck far from the skull
    probs[1, 12, 12, 12] = 0.9  # an implant speck in the middle
    defective, implant = to_case(probs)
    assert defective.dtype == bool and implant.dtype == bool
    assert not (defective & implant).any()
    assert not defective[1, 1, 1] and not implant[12, 12, 12]
    assert largest_component(defective).sum() == defective.sum()
    np.testing.assert_array_equal(implant, _pair()[1] > 0.5)


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda p: p.__setitem__(0, 0.0), "empty skull"),
        (lambda p: p.__setitem__(1, 0.0), "empty implant"),
        (lambda p: p[1].__setitem__(slice(None), 0.0) or p[1, 10:13, 10:13, 10:13].fill(1.0), "floating implant"),
    ],
)
def test_to_case_rejects_invalid(change, reason):
    probs = _pair()
    change(probs)
    assert to_case(probs) is None, reason


def test_to_case_checks_input():
    with pytest.raises(ValueError, match=r"\(2, S, S, S\)"):
        to_case(np.zeros((3, 8, 8, 8)))
    bad = _pair()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        to_case(bad)


def test_write_generated_dataset_is_loadable_and_resumable(tmp_path):
    samples = np.stack([_pair(), np.zeros_like(_pair()), _pair()])
    out = tmp_path / "gen"
    summary = write_generated_dataset(samples, out, name="vae", spacing_mm=7.5)
    assert (summary["written"], summary["invalid"], summary["skipped"]) == (2, 1, 0)
    dataset = load_dataset(out)
    assert len(dataset) == 2 and dataset.classes() == ["vae"]
    case = dataset[0]
    np.testing.assert_array_equal(case.implant.array, _pair()[1] > 0.5)
    np.testing.assert_allclose(case.defective.spacing, 7.5)
    assert read_mask(out / "complete_skull" / "000.nrrd").array.sum() == (_pair().sum(0) > 0).sum()
    # A second run (e.g. after an interruption) skips what is done; a new chunk continues the numbering.
    again = write_generated_dataset(samples, out, name="vae", spacing_mm=7.5)
    assert again["skipped"] == 3 and again["written"] == 0
    more = write_generated_dataset(samples[:1], out, name="vae", spacing_mm=7.5, start_index=3)
    assert more["written"] == 1 and (out / "implant" / "vae" / "003.nrrd").is_file()
    assert len(Manifest(out / "manifest.jsonl")) == 4


def test_write_generated_dataset_checks_arguments(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_generated_dataset(np.zeros((2, 1, 8, 8, 8)), tmp_path)
    with pytest.raises(ValueError, match="folder name"):
        write_generated_dataset(np.zeros((1, 2, 8, 8, 8)), tmp_path, name="a/b")


def test_rejection_counts_name_the_failed_criterion():
    good = _pair()
    no_implant = good.copy()
    no_implant[1] = 0.0
    swallowed = good.copy()
    swallowed[0] = np.maximum(good[0], good[1])  # skull channel covers the implant: implant AND NOT skull is empty
    floating = good.copy()
    floating[1] = 0.0
    floating[1, 10:13, 10:13, 10:13] = 1.0
    counts = rejection_counts(np.stack([good, no_implant, swallowed, floating, np.zeros_like(good)]))
    expected = {"valid": 1, "skull too small": 1, "implant too small": 2, "implant not touching skull": 1}
    assert counts == {**dict.fromkeys(REJECTION_REASONS, 0), **expected}
    skull, implant, reason = postprocess_sample(floating)
    assert reason == "implant not touching skull" and implant.sum() == 27 and skull.any()
    with pytest.raises(ValueError, match="shape"):
        rejection_counts(good)


def test_overlap_goes_to_the_more_probable_channel():
    """A decoder unsure where the defect is paints the complete skull in channel 0 and the implant on top of it:
    the implant is kept where it is the more probable label, and the skull gets the hole."""
    pair = _pair()
    probs = np.stack([0.8 * (pair[0] + pair[1]), 0.95 * pair[1]])  # skull channel = complete skull
    defective, implant = to_case(probs)
    np.testing.assert_array_equal(implant, pair[1] > 0.5)
    np.testing.assert_array_equal(defective, pair[0] > 0.5)
    weaker = np.stack([0.8 * (pair[0] + pair[1]), 0.6 * pair[1]])  # implant less probable than skull: skull wins
    assert postprocess_sample(weaker)[2] == "implant too small"


def test_mean_face_neighbours_tells_surfaces_from_speckle():
    block = np.zeros((12, 12, 12), bool)
    block[2:10, 2:10, 2:10] = True  # 8³ block: 6 inside, fewer on the faces → 6 · (1 − 1/8) = 5.25
    assert mean_face_neighbours(block) == pytest.approx(6 * (1 - 1 / 8))
    sheet = np.zeros((12, 12, 12), bool)
    sheet[2:10, 2:10, 5] = True  # one voxel thick: 4 in-plane neighbours, fewer at the rim → 4 · (1 − 1/8) = 3.5
    assert mean_face_neighbours(sheet) == pytest.approx(4 * (1 - 1 / 8))
    checkerboard = (np.indices((12, 12, 12)).sum(0) % 2 == 0) & block
    assert mean_face_neighbours(checkerboard) == 0.0
    assert mean_face_neighbours(np.zeros((4, 4, 4), bool)) == 0.0
    assert mean_face_neighbours(_pair()[0] > 0.5) > 2.5  # the test shell


def test_main_component_fraction():
    mask = np.zeros((10, 10, 10), bool)
    assert main_component_fraction(mask) == 0.0
    mask[1:4, 1:4, 1:4] = True  # 27 voxels
    mask[6:8, 6:8, 6:8] = True  # 8 voxels, apart
    assert main_component_fraction(mask) == pytest.approx(27 / 35)


def test_speckled_and_scattered_samples_are_rejected():
    """Noise that passes the size and contact tests in letter: a checkerboard skull or implant, and an implant of
    many small pieces over the vault."""
    good = _pair()
    odd = np.indices(good.shape[1:]).sum(0) % 2 == 1
    cube = np.zeros(odd.shape, bool)
    cube[2:22, 2:22, 2:22] = True
    speckled_skull = good.copy()
    speckled_skull[0] = 0.9 * (cube & ~odd)  # a checkerboard block (one 26-connected piece, big enough)
    assert postprocess_sample(speckled_skull)[2] == "skull speckled"
    speckled_implant = good.copy()
    speckled_implant[1] = good[1] * ~odd
    assert postprocess_sample(speckled_implant)[2] == "implant speckled"
    scattered = good.copy()
    scattered[1] = 0.0
    for corner in np.indices((2, 2, 2)).reshape(3, -1).T:  # 8 holes of 2×2×2 voxels, one towards each corner
        i, j, k = 12 + np.where(corner == 1, 5, -6)
        scattered[0, i:i + 2, j:j + 2, k:k + 2] = 0.0
        scattered[1, i:i + 2, j:j + 2, k:k + 2] = 1.0
    skull, implant, reason = postprocess_sample(scattered)
    assert reason == "implant scattered" and main_component_fraction(implant) < 0.5
    assert postprocess_sample(good)[2] is None


@pytest.mark.realdata
@pytest.mark.slow
def test_real_skullfix_pairs_pass_the_criteria(shared_data):
    """The speckle and scatter criteria must not reject real cases: the SkullFix sample at the generators' 32³ grid
    (measured: skull 3.0–3.3 and implant 3.2–3.9 face neighbours, each implant one piece)."""
    from cranialkit.generative.data import pairs_from_dataset

    pairs = pairs_from_dataset(load_dataset(shared_data / "skullfix_sample"), 32)
    for pair in pairs:
        skull, implant, reason = postprocess_sample(pair)
        assert reason is None
        assert mean_face_neighbours(skull) > 2.5 and main_component_fraction(implant) > 0.9
