"""Every exercise checker accepts its solution (from solutions/) and rejects wrong answers with feedback."""

from __future__ import annotations

import importlib
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO_ROOT
from scipy.stats import norm, qmc

from cranialkit.data import phantom
from cranialkit.exercises import EXERCISES, check
from cranialkit.generative.ldm import LDMVQVAE
from cranialkit.generative.sampling import latent_points
from cranialkit.preprocessing import make_grid_transform
from cranialkit.reconstruction.fine import FineConfig

sys.path.insert(0, str(REPO_ROOT))  # the solutions/ folder is not part of the installed package


@pytest.fixture(scope="module")
def phantom_case():
    skull = phantom.make_skull(0, shape=(48, 48, 48))
    defective, implant = phantom.make_defect(skull, "parietotemporal", seed=0)
    return defective, implant


def solutions(notebook: str):
    return importlib.import_module(f"solutions.nb{notebook}")


def _wrong_dice(a, b):
    return np.count_nonzero(a & b) / max(np.count_nonzero(a | b), 1)  # IoU, not Dice


def _flip_defective_only(sample, axis):
    return {**sample, "defective": np.flip(sample["defective"], axis)}


def _flip_along_the_next_axis(sample, axis):
    return {k: np.flip(v, (axis + 1) % 3) for k, v in sample.items()}


def _penalty_without_minus_one(critic, real, fake, eps):
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed)
    return (grad.flatten(1).norm(dim=1) ** 2).mean()


def _penalty_one_norm_for_the_batch(critic, real, fake, eps):
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed)
    return (grad.norm() - 1) ** 2


def _scrambled_uds(n, d, scale=1.0):
    return scale * norm.ppf(qmc.Sobol(d, scramble=True).random(n))


def _uds_without_origin_skip(n, d, scale=1.0):
    return scale * norm.ppf(qmc.Sobol(d, scramble=False).random(n))


def _noise_without_square_roots(model):
    abar = model.train_scheduler.alphas_cumprod
    return lambda z0, noise, t: abar[t] * z0 + (1 - abar[t]) * noise


def _uds_in_the_unit_cube(n, d, scale=1.0):
    return qmc.Sobol(d, scramble=False).random(n)


def _test_rows() -> list[dict]:
    """Per-case rows: bilateral has the single worst case, frontoorbital the lowest mean, random_1 the highest."""
    dsc = {"bilateral/001": 0.9, "bilateral/002": 0.3, "frontoorbital/001": 0.6, "frontoorbital/002": 0.55,
           "random_1/001": 0.8, "random_1/002": 0.85}
    return [{"key": key, "case_id": key[-3:], "defect_class": key.split("/")[0], "dsc": value, "bdsc": value,
             "hd95": 1.0, "seconds": 0.1} for key, value in dsc.items()]


def contexts(phantom_case) -> dict[str, tuple[dict, list]]:
    """Per exercise: the context the notebook passes, and wrong answers the checker must reject."""
    defective, implant = phantom_case
    n_voxels = int(implant.array.sum())
    shifted = implant.with_array(np.roll(implant.array, 2, axis=2) & ~defective.array)
    p95 = solutions("13").solve_13_one_way_p95(shifted, implant)
    study = pd.DataFrame({"dsc": [0.70, 0.80, 0.75], "dsc std": [0.02, 0.04, 0.01]},
                         index=["no augmentation", "geometric + registration", "geometric"])
    sample = {"defective": defective.array, "implant": implant.array}
    ratio = solutions("02").solve_02_scale_ratio(sample)
    det = torch.from_numpy(np.random.default_rng(0).normal(1.0, 0.6, (10, 10, 10)).astype(np.float32))
    folded, shrinking = float((det <= 0).float().mean() * 100), float((det < 1).float().mean() * 100)
    ldm = LDMVQVAE(resolution=16, autoencoder=dict(levels=2))
    uds_z, random_z = latent_points(100, (32,), "uds").numpy(), latent_points(100, (32,), "random", seed=0).numpy()
    deviations = solutions("09").solve_09_quartile_deviation(uds_z, random_z)
    first_only = tuple(abs(float((z[:, 0] < norm.ppf(0.25)).mean()) - 0.25) for z in (uds_z, random_z))
    coarse_grid = make_grid_transform(defective, (32, 32, 32))
    fine_config = FineConfig(spacing_mm=0.5, patch=(32, 32, 32), coarse_shape=(32, 32, 32))
    coarse_per_fine = float(coarse_grid.spacing_mm[0]) / 0.5
    stage_summaries = {  # random_1 has the highest DSC with both stages, bilateral gains the most
        "coarse": [{"defect_class": "bilateral", "dsc": 0.60}, {"defect_class": "random_1", "dsc": 0.85},
                   {"defect_class": "mean of classes", "dsc": 0.725}],
        "coarse + fine": [{"defect_class": "bilateral", "dsc": 0.80}, {"defect_class": "random_1", "dsc": 0.90},
                          {"defect_class": "mean of classes", "dsc": 0.85}],
    }
    return {
        "02_flip_pair": ({"sample": sample}, [_flip_defective_only, _flip_along_the_next_axis, lambda s, axis: s]),
        "02_scale_ratio": ({"sample": sample}, [0.125, 0.5, 1 / ratio, ratio * 100]),
        "03_folding_percent": ({"det": det}, [folded / 100, float((det <= 0).sum()), shrinking]),
        "03_new_cases": ({}, [lambda n, c: n * n * c, lambda n, c: n * (n - 1) // 2 * c, lambda n, c: n * (n - 1)]),
        "04_kl_divergence": ({}, [lambda mu, lv: (mu**2 + lv.exp() - 1 - lv).sum(1),
                                  lambda mu, lv: 0.5 * (mu**2 + lv.exp() - 1 - lv).mean(1),
                                  lambda mu, lv: 0.5 * (mu**2 + lv.exp() - 1 - lv).sum()]),
        "04_reparameterize": ({}, [lambda mu, lv, eps: mu + lv.exp() * eps, lambda mu, lv, eps: mu, 0.5]),
        "05_gradient_penalty": ({}, [_penalty_without_minus_one, _penalty_one_norm_for_the_batch,
                                     lambda *args: 10 * solutions("05").solve_05_gradient_penalty()(*args)]),
        "05_training_updates": ({"steps": 300, "n_critic": 5}, [1500, 300, 2700]),
        "06_encoder_hinge": ({"kl_reconstructed": 40.0, "kl_fake": 75.0, "margin": 60.0, "alpha": 0.25},
                             [1.25, 20.0, 3.75]),
        "07_fake_reward": ({"reconstruction": 0.2, "kl": 50.0, "beta_neg": 4e-3, "beta_kl": 1e-3},
                           [0.4, math.exp(-0.4), math.exp(-0.5)]),
        "08_ddim_timesteps": ({"model": ldm, "num_inference_steps": 10},
                              [list(range(99, 1000, 100)), list(range(900, -1, -100)), list(range(999, 0, -100))[:9]]),
        "08_add_noise": ({"model": ldm}, [_noise_without_square_roots(ldm), lambda z0, noise, t: z0]),
        "09_my_uds": ({}, [_scrambled_uds, _uds_without_origin_skip, _uds_in_the_unit_cube]),
        "09_quartile_deviation": ({"uds_z": uds_z, "random_z": random_z, "scale": 1.0},
                                  [deviations[::-1], first_only, (0.25, 0.25)]),
        "10_worst_class": ({"rows": _test_rows()}, ["bilateral", "random_1", "frontoorbital/001", 0.575]),
        "10_implant_from_complete": ({}, [lambda p, d: p, lambda p, d: p ^ d, lambda p, d: d & ~p]),
        "11_fine_voxels_per_coarse_voxel": ({"coarse_transform": coarse_grid, "fine_config": fine_config},
                                            [1 / coarse_per_fine, float(coarse_grid.spacing_mm[0]),
                                             coarse_per_fine**3]),
        "11_largest_gain": ({"summaries": stage_summaries}, ["random_1", "frontoorbital", 0.5]),
        "12_difference_over_std": ({"table": study}, [0.05, 1.0, 5.0]),
        "01_implant_volume": ({"implant": implant}, [n_voxels, n_voxels * float(np.prod(implant.spacing)), 1.0]),
        "01_dice": ({}, [_wrong_dice, lambda a, b: 2 * (a & b).sum() / (a.sum() + b.sum()), 0.5]),
        "01_isotropic_shape": ({"volume": defective}, [defective.shape, (1, 2, 3), "abc"]),
        "13_mesh_volume": ({"implant": implant}, [0.5, -0.5, "x"]),
        "13_one_way_p95": ({"predicted": shifted, "truth": implant}, [p95 + 5, 0.0, p95 / float(implant.spacing[0])]),
    }


def test_every_exercise_has_a_test_context(phantom_case):
    assert set(EXERCISES) == set(contexts(phantom_case)), "add the new exercise to contexts() in this test"


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_checker_accepts_solution_and_rejects_wrong_answers(exercise_id, phantom_case, capsys):
    context, wrong_answers = contexts(phantom_case)[exercise_id]
    solution = getattr(solutions(exercise_id[:2]), f"solve_{exercise_id}")(**context)
    assert check(exercise_id, solution, **context).ok
    assert "✅" in capsys.readouterr().out
    assert not check(exercise_id, None, **context).ok, "the notebooks' placeholder `answer = None` must be rejected"
    assert not check(exercise_id, lambda *args, **kwargs: None, **context).ok  # a placeholder function body
    for wrong in wrong_answers:
        feedback = check(exercise_id, wrong, **context)
        assert not feedback.ok, f"{exercise_id} accepted the wrong answer {wrong!r}"
        assert len(feedback.message) > 20, "feedback must say what to look at"


def test_unknown_exercise_lists_known_ones():
    with pytest.raises(KeyError, match="01_implant_volume"):
        check("99_nothing", 1)
