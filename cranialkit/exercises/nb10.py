"""Checkers for the exercises of notebook 10_unet_training."""

from __future__ import annotations

import math

import numpy as np

from cranialkit.exercises.registry import Feedback, call_answer, exercise
from cranialkit.preprocessing import implant_from
from cranialkit.reconstruction.evaluation import summarize_by_class


@exercise("10_worst_class")
def worst_class(answer: str, rows: list[dict]) -> Feedback:
    """The defect class with the lowest mean test DSC, from the per-case ``rows`` of ``evaluate_cases``."""
    summary = [s for s in summarize_by_class(rows) if s["defect_class"] not in ("mean of classes", "all cases")]
    means = {s["defect_class"]: s["dsc"] for s in summary if not math.isnan(s["dsc"])}
    if not means:
        return Feedback(False, "no case has a DSC: evaluate cases with a true implant first")
    expected = min(means, key=means.get)
    if not isinstance(answer, str):
        return Feedback(False, "give the name of the defect class as a string, e.g. 'bilateral'")
    if answer == expected or (answer in means and means[answer] == means[expected]):
        return Feedback(True, f"right: {answer!r} with a mean DSC of {means[answer]:.3f} "
                              f"(best class: {max(means, key=means.get)!r}, {max(means.values()):.3f})")
    if "/" in answer:
        return Feedback(False, "that is a case key (class/subject); give the defect class whose cases have the "
                               "lowest mean DSC")
    if answer not in means:
        return Feedback(False, f"{answer!r} is not a defect class of the test split; the classes are {sorted(means)}")
    if answer == max(means, key=means.get):
        return Feedback(False, "that is the class with the highest mean DSC; the exercise asks for the lowest")
    scored = [r for r in rows if not math.isnan(r["dsc"])]
    if answer == min(scored, key=lambda r: r["dsc"])["defect_class"]:
        return Feedback(False, "that class has the single worst case, but not the lowest mean: average the DSC "
                               "per class first (summarize_by_class)")
    return Feedback(False, f"{answer!r} has a mean DSC of {means[answer]:.3f}; one class is lower — compare the 'dsc' "
                           "column of summarize_by_class(rows)")


@exercise("10_implant_from_complete")
def implant_from_complete(answer) -> Feedback:
    """A hand-written ``implant_from_complete(predicted_complete, defective)`` must return the bool implant =
    predicted complete skull AND NOT defective skull, as :func:`cranialkit.preprocessing.implant_from` does."""
    rng = np.random.default_rng(0)
    for shape in [(6, 7, 8), (4, 4, 4)]:
        predicted, defective = rng.random(shape) > 0.4, rng.random(shape) > 0.5
        expected = implant_from(predicted, defective)
        got, problem = call_answer(answer, predicted.copy(), defective.copy())
        if problem is not None:
            return problem
        got = np.asarray(got)
        if got.shape != expected.shape:
            return Feedback(False, f"the implant has the shape of the inputs, {expected.shape}; got {got.shape}")
        if got.dtype != bool:
            return Feedback(False, f"return a boolean mask (dtype bool), got dtype {got.dtype}")
        if np.array_equal(got, expected):
            continue
        variants = {
            "that is the whole predicted skull: remove the voxels of the defective skull (& ~defective)": predicted,
            "XOR also adds skull voxels the network did not predict: use predicted & ~defective": predicted ^ defective,
            "the other way round: the implant is in the prediction but NOT in the defective skull":
                defective & ~predicted,
            "that is the overlap with the existing skull; the implant is what is NOT already there":
                predicted & defective,
            "the union is the complete skull again: the implant is predicted & ~defective": predicted | defective,
        }
        for hint, value in variants.items():
            if np.array_equal(got, value):
                return Feedback(False, hint)
        return Feedback(False, "implant = predicted complete skull AND NOT defective skull: predicted & ~defective")
    return Feedback(True, "right: the implant is what the network adds to the defective skull")
