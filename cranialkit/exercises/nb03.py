"""Checkers for the exercises of notebook 03_registration_augmentation."""

from __future__ import annotations

import numpy as np
import torch

from cranialkit.augment.registration import ordered_pairs
from cranialkit.exercises.registry import Feedback, call_answer, exercise
from cranialkit.registration.jacobian import folding_percent


@exercise("03_folding_percent")
def folding(answer: float, det) -> Feedback:
    """Percentage (0–100) of the voxels of a Jacobian-determinant grid where det J <= 0 (folded)."""
    det = torch.as_tensor(np.asarray(det, dtype=np.float32))
    expected = float(folding_percent(det[None])[0])
    n_voxels = det.numel()
    answer = float(answer)
    tolerance = max(0.01 * expected, 50.0 / n_voxels)  # 1 %, at least half a voxel
    if abs(answer - expected) <= tolerance:
        if expected == 0:
            return Feedback(True, "right: 0 % — no voxel folds; this alpha keeps the transform invertible")
        return Feedback(True, f"right: {expected:.3f} % of {n_voxels} voxels fold (det J <= 0)")
    folded = int((det <= 0).sum())
    if folded and np.isclose(answer, folded):
        return Feedback(False, f"that is the number of folded voxels; divide by all {n_voxels} voxels, times 100")
    if expected and abs(answer - expected / 100) <= tolerance / 100:
        return Feedback(False, "that is a fraction; the exercise asks for a percentage (times 100)")
    shrinking = float((det < 1).float().mean() * 100)
    if abs(answer - shrinking) <= max(0.01 * shrinking, 50.0 / n_voxels):
        return Feedback(False, "that is the share of voxels that shrink (det J < 1); folded means det J <= 0")
    if abs(answer - (100 - expected)) <= tolerance:
        return Feedback(False, "that is the share of voxels that do NOT fold; count det J <= 0")
    return Feedback(False, "count the voxels with det <= 0, divide by all voxels and multiply by 100: "
                           "100 * (det <= 0).float().mean()")


@exercise("03_new_cases")
def new_cases(answer) -> Feedback:
    """A hand-written ``new_cases(n_subjects, n_classes)`` = N·(N−1)·C, the cases that ``augment_dataset`` makes."""
    for n, c in [(2, 1), (3, 1), (3, 3), (10, 6), (100, 1), (1, 5)]:
        expected = len(ordered_pairs([str(i) for i in range(n)])) * c
        got, problem = call_answer(answer, n, c)
        if problem is not None:
            return problem
        try:
            got = float(got)
        except (TypeError, ValueError):
            return Feedback(False, "return a number (the count of new cases)")
        if got == expected:
            continue
        if got == n * n * c:
            return Feedback(False, "a skull registered onto itself gives no new case: leave out the N pairs (s, s)")
        if got * 2 == expected:
            return Feedback(False, "A→B and B→A are different cases (A's defect on B's anatomy and the other way "
                                   "round): count ordered pairs")
        if got * c == expected:
            return Feedback(False, "every pair carries the source's defect of every class: multiply by n_classes")
        return Feedback(False, f"for {n} subjects and {c} classes you give {got:g}, expected {expected}: every ordered "
                               "pair of distinct subjects, once per defect class")
    return Feedback(True, "right: N·(N−1) ordered pairs × classes — SkullFix's 100 subjects give 9900 new cases")
