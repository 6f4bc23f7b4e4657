"""Checkers for the notebooks' exercises: ``check(exercise_id, answer, **context)`` prints helpful feedback.

Each notebook ends with exercises whose ids start with the notebook number (``"01_implant_volume"``). A checker
computes the expected result itself from the context it is given (never a stored answer) and explains common
mistakes (a voxel count instead of millilitres, a forgotten spacing, ...). Solutions live apart, in ``solutions/``
at the repository root; the test suite runs every checker against its solution and against wrong answers.
"""

from cranialkit.exercises.registry import EXERCISES, Feedback, call_answer, check, exercise

# Importing the modules registers their checkers.
from cranialkit.exercises import (  # noqa: E402,F401  isort: skip
    nb01, nb02, nb03, nb04, nb05, nb06, nb07, nb08, nb09, nb10, nb11, nb12, nb13,
)

__all__ = ["EXERCISES", "Feedback", "call_answer", "check", "exercise"]
