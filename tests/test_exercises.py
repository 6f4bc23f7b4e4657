"""Every exercise checker accepts its solution (from solutions/) and rejects wrong answers with feedback."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT

from cranialkit.data import phantom
from cranialkit.exercises import EXERCISES, check

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


def contexts(phantom_case) -> dict[str, tuple[dict, list]]:
    """Per exercise: the context the notebook passes, and wrong answers the checker must reject."""
    defective, implant = phantom_case
    n_voxels = int(implant.array.sum())
    shifted = implant.with_array(np.roll(implant.array, 2, axis=2) & ~defective.array)
    p95 = solutions("12").solve_12_one_way_p95(shifted, implant)
    study = pd.DataFrame({"dsc": [0.70, 0.80, 0.75], "dsc std": [0.02, 0.04, 0.01]},
                         index=["no augmentation", "geometric + registration", "geometric"])
    return {
        "11_difference_over_std": ({"table": study}, [0.05, 1.0, 5.0]),
        "01_implant_volume": ({"implant": implant}, [n_voxels, n_voxels * float(np.prod(implant.spacing)), 1.0]),
        "01_dice": ({}, [_wrong_dice, lambda a, b: 2 * (a & b).sum() / (a.sum() + b.sum()), 0.5]),
        "01_isotropic_shape": ({"volume": defective}, [defective.shape, (1, 2, 3), "abc"]),
        "12_mesh_volume": ({"implant": implant}, [0.5, -0.5, "x"]),
        "12_one_way_p95": ({"predicted": shifted, "truth": implant}, [p95 + 5, 0.0, p95 / float(implant.spacing[0])]),
    }


def test_every_exercise_has_a_test_context(phantom_case):
    assert set(EXERCISES) == set(contexts(phantom_case)), "add the new exercise to contexts() in this test"


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_checker_accepts_solution_and_rejects_wrong_answers(exercise_id, phantom_case, capsys):
    context, wrong_answers = contexts(phantom_case)[exercise_id]
    solution = getattr(solutions(exercise_id[:2]), f"solve_{exercise_id}")(**context)
    assert check(exercise_id, solution, **context).ok
    assert "✅" in capsys.readouterr().out
    for wrong in wrong_answers:
        feedback = check(exercise_id, wrong, **context)
        assert not feedback.ok, f"{exercise_id} accepted the wrong answer {wrong!r}"
        assert len(feedback.message) > 20, "feedback must say what to look at"


def test_unknown_exercise_lists_known_ones():
    with pytest.raises(KeyError, match="01_implant_volume"):
        check("99_nothing", 1)
