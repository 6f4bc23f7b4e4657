"""Checkers for the exercises of notebook 12_augmentation_study."""

from __future__ import annotations

import math

from cranialkit.exercises.registry import Feedback, exercise


def difference_over_std(table) -> float:
    """(mean DSC of the best configuration − that of "geometric") / the larger of their std over seeds."""
    best = table["dsc"].idxmax()
    difference = float(table.loc[best, "dsc"] - table.loc["geometric", "dsc"])
    spread = max(float(table.loc[best, "dsc std"]), float(table.loc["geometric", "dsc std"]))
    if difference == 0:
        return 0.0
    return difference / spread if spread > 0 else math.inf


@exercise("12_difference_over_std")
def check_difference_over_std(answer: float, table) -> Feedback:
    expected = difference_over_std(table)
    answer = float(answer)
    if (math.isinf(expected) and math.isinf(answer)) or abs(answer - expected) <= 1e-3 + 1e-3 * abs(expected):
        verdict = "not distinguishable at this scale" if expected < 1 else "larger than the spread over seeds"
        return Feedback(True, f"right: {expected:.2f} — {verdict}")
    best = table["dsc"].idxmax()
    return Feedback(False, f"the best configuration by mean DSC is {best!r}; divide its DSC minus that of "
                           "'geometric' by the larger of the two 'dsc std' values")
