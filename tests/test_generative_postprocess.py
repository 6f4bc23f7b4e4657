"""Post-processing of generated probabilities into valid cases, and writing them as a loadable dataset."""

from __future__ import annotations

import numpy as np
import pytest

from cranialkit.data.datasets import load_dataset
from cranialkit.generative.postprocess import (
    largest_component,
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
    assert counts == {"valid": 1, "skull too small": 1, "implant too small": 2, "implant not touching skull": 1}
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
