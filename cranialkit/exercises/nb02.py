"""Checkers for the exercises of notebook 02_geometric_augmentation."""

from __future__ import annotations

import numpy as np
import torch

from cranialkit.augment.geometric import RandomAffine, RandomFlip
from cranialkit.exercises.registry import Feedback, call_answer, exercise


def _flip_cases(sample: dict) -> list[dict]:
    """The notebook's sample and a small random one with unequal sides (which shows a flip along a wrong axis)."""
    rng = np.random.default_rng(0)
    defective = rng.random((5, 6, 7)) > 0.6
    implant = (rng.random((5, 6, 7)) > 0.8) & ~defective
    small = {"defective": defective, "implant": implant}
    return [{k: np.asarray(sample[k], bool) for k in ("defective", "implant")}, small]


@exercise("02_flip_pair")
def flip_pair(answer, sample: dict) -> Feedback:
    """A hand-written ``flip_pair(sample, axis)`` must mirror the defective skull AND the implant along ``axis``,
    as ``RandomFlip(prob=1.0, axes=(axis,))`` does, and leave the input sample unchanged."""
    for case in _flip_cases(sample):
        for axis in (0, 1, 2):
            original = {k: v.copy() for k, v in case.items()}
            result, problem = call_answer(answer, case, axis)
            if problem is not None:
                return problem
            if any(not np.array_equal(case[k], original[k]) for k in case):
                return Feedback(False, "your function changed the sample it was given; build and return a new dict")
            if not isinstance(result, dict) or not {"defective", "implant"} <= set(result):
                return Feedback(False, "return a dict with the keys 'defective' and 'implant', like the sample")
            expected = RandomFlip(prob=1.0, axes=(axis,))(case, torch.Generator().manual_seed(0))
            got = {k: np.asarray(result[k], bool) for k in ("defective", "implant")}
            if any(got[k].shape != case[k].shape for k in got):
                return Feedback(False, "a flip keeps the shape of each array; yours changed it")
            right = {k: np.array_equal(got[k], expected[k]) for k in got}
            if all(right.values()):
                continue
            if all(np.array_equal(got[k], case[k]) for k in got):
                return Feedback(False, f"nothing was flipped along axis {axis}: use np.flip(array, axis) on both masks")
            if right["defective"] and np.array_equal(got["implant"], case["implant"]):
                return Feedback(False, "you flipped only the defective skull: the implant no longer sits in the hole "
                                       "— flip both masks along the same axis")
            if right["implant"] and np.array_equal(got["defective"], case["defective"]):
                return Feedback(False, "you flipped only the implant: it no longer sits in the hole of the skull — "
                                       "flip both masks along the same axis")
            for other in {0, 1, 2} - {axis}:
                if all(np.array_equal(got[k], np.flip(case[k], other)) for k in got):
                    return Feedback(False, f"asked for axis {axis}, you flipped along axis {other}: "
                                           f"use np.flip(array, axis)")
            return Feedback(False, f"along axis {axis} your result differs from a mirror image of both masks: "
                                   "np.flip(sample['defective'], axis) and the same for 'implant'")
    return Feedback(True, "right: both masks mirrored along the same axis, so the implant still fits its defect")


@exercise("02_scale_ratio")
def scale_ratio(answer: float, sample: dict) -> Feedback:
    """Defective-skull voxels after ``RandomAffine(prob=1, rotation_deg=0, scale=(0.5, 0.5), translation=0)`` divided
    by those before (a dimensionless ratio, ideally 0.5³ = 0.125)."""
    transform = RandomAffine(prob=1.0, rotation_deg=0, scale=(0.5, 0.5), translation=0)
    scaled = transform(sample, torch.Generator().manual_seed(0))  # no random parameter left: any generator will do
    before = int(np.count_nonzero(sample["defective"]))
    after = int(np.count_nonzero(scaled["defective"]))
    expected = after / before
    answer = float(answer)
    if np.isclose(answer, expected, rtol=0.01, atol=1e-4):
        return Feedback(True, f"right: {after} / {before} voxels = {expected:.4f}; 0.5³ = 0.125 in theory — nearest-"
                              "neighbour sampling of a thin shell picks a few voxels more or less than one in eight")
    if np.isclose(answer, 0.125) and not np.isclose(expected, 0.125, rtol=0.01):
        return Feedback(False, "0.125 = 0.5³ is the ratio you expect; now measure it: count the voxels of the "
                               "transformed defective skull and divide by the count before")
    if np.isclose(answer, 0.5):
        return Feedback(False, "0.5 is the factor per axis; a volume shrinks along all three axes")
    if np.isclose(answer, 1 / expected, rtol=0.01) or np.isclose(answer, 8):
        return Feedback(False, "inverted: divide the count after the transform by the count before")
    if np.isclose(answer, after) or np.isclose(answer, before):
        return Feedback(False, "that is a voxel count; give the ratio after / before")
    if np.isclose(answer, expected * 100, rtol=0.01):
        return Feedback(False, "that looks like a percentage; give the ratio as a fraction (e.g. 0.13)")
    implant_before = int(np.count_nonzero(sample["implant"]))
    if implant_before and np.isclose(answer, np.count_nonzero(scaled["implant"]) / implant_before, rtol=0.01):
        return Feedback(False, "that is the ratio for the implant; the exercise asks for the defective skull")
    if np.isclose(answer, expected, rtol=0.05):
        return Feedback(False, "close, but do not round: compute the ratio from the two voxel counts")
    return Feedback(False, "apply the transform to `sample`, then np.count_nonzero(out['defective']) / "
                           "np.count_nonzero(sample['defective'])")
