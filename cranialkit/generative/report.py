"""What notebooks 04–07 check about a generator's samples: are they valid cases, new ones, varied, closed shells,
and do their defects land where the training defects are.

Taught in notebook 04_vae (each measure is explained there) and reused by 05_wgan_gp, 06_introvae and
07_soft_introvae. Built on the measures of :mod:`cranialkit.generative.sampling` and the post-processing of
:mod:`cranialkit.generative.postprocess`; this module only gathers them into one report per model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cranialkit.generative.base import Generator
from cranialkit.generative.data import implant_directions
from cranialkit.generative.postprocess import rejection_counts
from cranialkit.generative.sampling import (
    defect_direction_recall,
    nearest_training_dice,
    sampled_defect_cones,
    valid_fraction,
    valid_fraction_by_seed,
    vault_gap_fraction,
    volume_diversity,
)


@dataclass
class SampleReport:
    """The checks of one set of samples against the training pairs (fractions in [0, 1], Dice in [0, 1])."""

    n_samples: int
    valid: float  # share of this draw that post-processing turns into a case
    rejections: dict  # post-processing outcome: how many samples failed which criterion
    valid_by_seed: list  # the valid share of further draws of the same size, one per seed
    seeds: list
    nearest_dice: np.ndarray  # per sample: Dice with the most similar training pair (≈ 1 = a copy)
    diversity: float  # mean pairwise 1 − Dice of the samples
    training_diversity: float  # the same for the training pairs
    vault_gap: float  # mean share of upward rays that meet no bone (0 = closed shells)
    training_vault_gap: float

    @property
    def valid_mean(self) -> float:
        """Mean valid share over every draw (this one and :attr:`valid_by_seed`): the number to compare models by."""
        return float(np.mean([self.valid, *self.valid_by_seed]))

    def summary(self) -> dict[str, float]:
        """The headline numbers, for a table that compares models."""
        return {"valid (mean of draws)": self.valid_mean, "nearest-training Dice": float(self.nearest_dice.mean()),
                "diversity": self.diversity, "vault gap fraction": self.vault_gap}

    def __str__(self) -> str:
        draws = [self.valid, *self.valid_by_seed]
        return "\n".join([
            f"post-processing outcome    : {self.rejections}",
            f"valid cases                : {self.valid:.0%} of {self.n_samples} samples",
            f"valid over {len(draws)} draws         : mean {self.valid_mean:.0%} (from {min(draws):.0%} to "
            f"{max(draws):.0%}; seeds {self.seeds[0]}–{self.seeds[-1]}, {self.n_samples} samples each)",
            f"nearest-training Dice      : mean {self.nearest_dice.mean():.3f}, max {self.nearest_dice.max():.3f}",
            f"diversity (1 − Dice)       : {self.diversity:.3f} (training pairs: {self.training_diversity:.3f})",
            f"vault gap fraction         : {self.vault_gap:.3f} (training pairs: {self.training_vault_gap:.3f}; "
            "0 = a closed vault)",
        ])


def check_samples(model: Generator, samples: np.ndarray, training: np.ndarray, seed: int = 0, n_draws: int = 5,
                  device: str = "auto") -> SampleReport:
    """Check ``samples`` (``model``'s random samples drawn with ``seed``) against the ``training`` pairs.

    Besides this draw, ``n_draws − 1`` further draws of the same size (seeds ``seed + 1 …``) estimate the valid
    share: one draw of 100 samples pins a rate near 85 % down only to about ± 7 points.
    """
    if len(samples) < 2:
        raise ValueError(f"check_samples needs at least 2 samples, got {len(samples)}")
    seeds = list(range(seed, seed + max(1, n_draws)))
    return SampleReport(
        n_samples=len(samples),
        valid=valid_fraction(samples),
        rejections=rejection_counts(samples),
        valid_by_seed=valid_fraction_by_seed(model, len(samples), seeds=seeds[1:], device=device) if n_draws > 1
        else [],
        seeds=seeds,
        nearest_dice=nearest_training_dice(samples, training),
        diversity=volume_diversity(samples)["pair"],
        training_diversity=volume_diversity(training)["pair"],
        vault_gap=float(vault_gap_fraction(samples).mean()),
        training_vault_gap=float(vault_gap_fraction(training).mean()),
    )


@dataclass
class DefectPlaces:
    """Where a cone-decoder generator puts its defects, next to where the training defects are."""

    training_directions: np.ndarray  # (N, 3) unit vectors from the grid centre to each training implant
    axes: np.ndarray  # (n, 3) the sampled cones' axes
    half_angles_deg: np.ndarray  # (n,) the sampled cones' half-angles (degrees)
    recall: float  # share of training implants with a sampled axis within ``within_deg``
    within_deg: float

    def __str__(self) -> str:
        angles = self.half_angles_deg
        return (f"half-angle θ: {angles.min():.0f}°–{angles.max():.0f}°, mean {angles.mean():.0f}°\n"
                f"training implants with a sampled defect axis within {self.within_deg:.0f}°: {self.recall:.0%}")


def defect_places(model: Generator, training: np.ndarray, n: int, sampler: str = "random", seed: int = 0,
                  within_deg: float = 15.0) -> DefectPlaces | None:
    """The cones of ``model``'s ``n`` samples (the same latent points as ``model.sample(n, sampler, seed)``) and
    the recall of the training defects' directions; ``None`` for a model without a cone-shaped defect."""
    cones = sampled_defect_cones(model, n, sampler, seed=seed)
    if cones is None:
        return None
    directions = implant_directions(training)
    return DefectPlaces(directions, cones["axis"], cones["half_angle_deg"],
                        defect_direction_recall(directions, cones["axis"], max_angle_deg=within_deg), within_deg)
