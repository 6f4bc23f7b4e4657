"""Solutions for notebook 12_augmentation_study."""

from __future__ import annotations

import math


def solve_12_difference_over_std(table) -> float:
    best = table["dsc"].idxmax()
    difference = table.loc[best, "dsc"] - table.loc["geometric", "dsc"]
    spread = max(table.loc[best, "dsc std"], table.loc["geometric", "dsc std"])
    if difference == 0:
        return 0.0
    return float(difference / spread) if spread > 0 else math.inf
