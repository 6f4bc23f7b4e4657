"""Tests of cranialkit.metrics: definitions, edge cases, and agreement with MONAI's independent implementation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from monai.metrics.utils import get_mask_edges, get_surface_distance
from scipy import ndimage

from cranialkit import metrics

SKULLFIX = Path(__file__).resolve().parents[2] / "shared" / "data" / "skullfix_sample" / "training_set"


def _ball(shape, centre, radius_vox):
    grid = np.indices(shape, dtype=float)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius_vox**2


def _random_blob(rng, shape=(40, 36, 32), smoothing=2.5, level=0.25):
    """A random smooth binary shape (thresholded smoothed noise), several components possible."""
    noise = ndimage.gaussian_filter(rng.normal(size=shape), smoothing)
    return noise > level * noise.std()


def _monai_dice(pred, truth):
    p = torch.from_numpy(pred)[None, None].float()
    t = torch.from_numpy(truth)[None, None].float()
    return float(compute_dice(p, t, include_background=True)[0, 0])


def _monai_hd95(pred, truth, spacing):
    p = torch.from_numpy(pred)[None, None].float()
    t = torch.from_numpy(truth)[None, None].float()
    return float(compute_hausdorff_distance(p, t, include_background=True, percentile=95, spacing=list(spacing))[0, 0])


def _monai_pooled_hd95(pred, truth, spacing):
    """Our pooled definition, built from MONAI's own surface extraction and surface distances (float32 in MONAI:
    compare with a relative tolerance of 1e-6)."""
    edges_pred, edges_truth = get_mask_edges(torch.from_numpy(pred), torch.from_numpy(truth), crop=True)
    edges_pred, edges_truth = edges_pred.numpy(), edges_truth.numpy()
    forward = get_surface_distance(edges_pred, edges_truth, spacing=spacing)
    backward = get_surface_distance(edges_truth, edges_pred, spacing=spacing)
    return float(np.percentile(np.concatenate([forward, backward]), 95))


# ----------------------------------------------------------------------------------------------------------------------
# Definitions on hand-made shapes
# ----------------------------------------------------------------------------------------------------------------------
def test_dice_of_known_overlap():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[:4] = True  # 400 voxels
    b[2:6] = True  # 400 voxels, 200 shared
    assert metrics.dice(a, b) == pytest.approx(0.5)
    assert metrics.dice(a, a) == 1.0


def test_hd95_of_shifted_slab_is_the_shift_in_mm():
    a = np.zeros((12, 20, 20), bool)
    b = np.zeros_like(a)
    a[3:6, 2:18, 2:18] = True
    b[6:9, 2:18, 2:18] = True  # shifted by 3 voxels along axis 0
    # Most surface voxels (the big faces) are 3 voxels × 2 mm = 6 mm from the other surface.
    assert metrics.hd95(a, b, spacing=(2.0, 0.5, 0.5)) == pytest.approx(6.0)
    assert metrics.hd95(a, b, spacing=(1.0, 0.5, 0.5)) == pytest.approx(3.0)


def test_surface_is_six_connected_shell():
    cube = np.zeros((7, 7, 7), bool)
    cube[1:6, 1:6, 1:6] = True
    shell = metrics.surface(cube)
    assert shell.sum() == 5**3 - 3**3
    assert not shell[3, 3, 3]


def test_boundary_dice_ignores_voxels_far_from_the_defective_skull():
    defective = np.zeros((40, 10, 10), bool)
    defective[:2] = True  # the skull sits at x = 0..1 (1 mm spacing)
    truth = np.zeros_like(defective)
    truth[2:30] = True  # the implant reaches 28 mm away from it
    pred = truth.copy()
    pred[20:30] = False  # wrong only farther than 10 mm from the skull
    assert metrics.dice(pred, truth) < 0.8
    assert metrics.boundary_dice(pred, truth, defective, spacing=(1, 1, 1)) == pytest.approx(1.0)
    pred_near = truth.copy()
    pred_near[2:5] = False  # wrong next to the rim: bDSC drops
    assert metrics.boundary_dice(pred_near, truth, defective, spacing=(1, 1, 1)) < 0.9
    # With 0.25 mm spacing along x, only 40 voxels (10 mm) count: the far error at 20..30 now is within reach.
    assert metrics.boundary_dice(pred, truth, defective, spacing=(0.25, 1, 1)) < 0.8


def test_boundary_dice_equals_full_computation_without_crop():
    rng = np.random.default_rng(3)
    defective = _random_blob(rng, (48, 40, 36))
    truth = _random_blob(rng, (48, 40, 36)) & ~defective
    pred = ndimage.binary_dilation(truth) & ~defective
    spacing = (0.7, 1.1, 1.6)
    band = ndimage.distance_transform_edt(~defective, sampling=spacing) <= 10.0
    expected = metrics.dice(pred & band, truth & band)
    assert metrics.boundary_dice(pred, truth, defective, spacing) == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# Edge cases and errors
# ----------------------------------------------------------------------------------------------------------------------
def test_edge_cases_both_empty_and_one_empty():
    empty = np.zeros((8, 8, 8), bool)
    full = empty.copy()
    full[2:5, 2:5, 2:5] = True
    assert metrics.dice(empty, empty) == 1.0
    assert metrics.hd95(empty, empty, (1, 1, 1)) == 0.0
    assert metrics.dice(full, empty) == 0.0
    assert metrics.dice(empty, full) == 0.0
    assert metrics.hd95(full, empty, (1, 1, 1)) == float("inf")
    assert metrics.hd95(empty, full, (1, 1, 1)) == float("inf")
    assert metrics.evaluate_implant(empty, empty, full, (1, 1, 1)) == {"dsc": 1.0, "bdsc": 1.0, "hd95": 0.0}
    result = metrics.evaluate_implant(empty, full, full, (1, 1, 1))
    assert result["dsc"] == 0.0 and result["bdsc"] == 0.0 and result["hd95"] == float("inf")


def test_bad_inputs_raise_clear_errors():
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(ValueError, match="different shapes"):
        metrics.dice(a, np.zeros((4, 4, 5), bool))
    with pytest.raises(ValueError, match="pred: not a binary mask"):
        metrics.dice(np.full((4, 4, 4), 2), a)
    with pytest.raises(ValueError, match="truth: expected a 3D mask"):
        metrics.hd95(a, np.zeros((4, 4), bool), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        metrics.hd95(a, a, (1, 0, 1))
    with pytest.raises(ValueError, match="defective has shape"):
        metrics.boundary_dice(a, a, np.zeros((5, 5, 5), bool), (1, 1, 1))


def test_accepts_integer_masks_and_volumes():
    from cranialkit.volume import Volume

    a = np.zeros((6, 6, 6), np.int32)
    a[1:4, 1:4, 1:4] = 1
    assert metrics.dice(a, Volume(a.astype(bool))) == 1.0


# ----------------------------------------------------------------------------------------------------------------------
# Agreement with MONAI (an independent implementation)
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_monai_on_random_shapes(seed):
    rng = np.random.default_rng(seed)
    truth = _random_blob(rng)
    pred = _random_blob(rng) if seed % 2 else ndimage.binary_dilation(truth, iterations=int(rng.integers(1, 3)))
    spacing = tuple(rng.uniform(0.4, 2.5, 3))
    assert metrics.dice(pred, truth) == pytest.approx(_monai_dice(pred, truth), abs=1e-6)
    ours = metrics.hd95(pred, truth, spacing)
    assert ours == pytest.approx(_monai_pooled_hd95(pred, truth, spacing), rel=1e-6)
    voxel_diagonal = float(np.linalg.norm(spacing))
    assert abs(ours - _monai_hd95(pred, truth, spacing)) <= voxel_diagonal


def test_agrees_with_monai_on_phantom_implants():
    from cranialkit.data.phantom import make_defect, make_skull

    complete = make_skull(5, (96, 96, 96))
    spacing = tuple(complete.spacing)
    for defect_class, other in (("skullfix", "random_1"), ("bilateral", "parietotemporal")):
        _, truth = make_defect(complete, defect_class, 5)
        _, other_implant = make_defect(complete, other, 6)
        truth = truth.array
        # A near miss (shifted, thickened): pooled and MONAI's max-of-directed HD95 are within a voxel diagonal.
        near = np.roll(ndimage.binary_dilation(truth), 1, axis=1) & complete.array
        assert metrics.dice(near, truth) == pytest.approx(_monai_dice(near, truth), abs=1e-6)
        ours = metrics.hd95(near, truth, spacing)
        assert ours == pytest.approx(_monai_pooled_hd95(near, truth, spacing), rel=1e-6)
        assert abs(ours - _monai_hd95(near, truth, spacing)) <= np.linalg.norm(spacing)
        # A prediction with a far-away extra piece: the pooled value lies between MONAI's two directed ones.
        wrong = near | other_implant.array
        ours = metrics.hd95(wrong, truth, spacing)
        assert ours == pytest.approx(_monai_pooled_hd95(wrong, truth, spacing), rel=1e-6)
        p, t = (torch.from_numpy(m)[None, None].float() for m in (wrong, truth))
        directed = [float(compute_hausdorff_distance(a, b, include_background=True, percentile=95, directed=True,
                                                     spacing=list(spacing))[0, 0]) for a, b in ((p, t), (t, p))]
        assert min(directed) - 1e-6 <= ours <= max(directed) + 1e-6


@pytest.mark.realdata
@pytest.mark.slow
def test_agrees_with_monai_on_a_real_skullfix_implant():
    if not SKULLFIX.is_dir():
        pytest.skip(f"real sample data not found at {SKULLFIX}")
    from cranialkit.io import read_mask

    truth_volume = read_mask(SKULLFIX / "implant" / "002.nrrd")
    spacing = tuple(truth_volume.spacing)  # anisotropic: about 0.45 × 0.45 × 0.6 mm
    # Work on the implant's bounding box + 40 voxels (> 10 mm): same metrics, a fraction of the time.
    box = metrics._crop_box([truth_volume.array], (40, 40, 40))
    truth = truth_volume.array[box]
    defective = read_mask(SKULLFIX / "defective_skull" / "002.nrrd").array[box]
    # A plausible wrong prediction: the implant shifted by 4 voxels along axis 2 and eroded once.
    pred = ndimage.binary_erosion(np.roll(truth, 4, axis=2))
    assert metrics.dice(pred, truth) == pytest.approx(_monai_dice(pred, truth), abs=1e-6)
    ours = metrics.hd95(pred, truth, spacing)
    assert ours == pytest.approx(_monai_pooled_hd95(pred, truth, spacing), rel=1e-6)
    assert abs(ours - _monai_hd95(pred, truth, spacing)) <= np.linalg.norm(spacing)
    result = metrics.evaluate_implant(pred, truth, defective, spacing)
    assert 0.2 < result["dsc"] < 0.95 and 0 < result["bdsc"] < 1 and 0 < result["hd95"] < 10
    assert metrics.evaluate_implant(truth, truth, defective, spacing) == {"dsc": 1.0, "bdsc": 1.0, "hd95": 0.0}
