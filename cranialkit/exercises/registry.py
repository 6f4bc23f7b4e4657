"""The registry of exercise checkers and the ``check`` entry point the notebooks call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Feedback:
    """A checker's verdict: ``ok`` and a message for the student."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok


EXERCISES: dict[str, Callable[..., Feedback]] = {}


def exercise(exercise_id: str) -> Callable[[Callable[..., Feedback]], Callable[..., Feedback]]:
    """Decorator that registers a checker under ``exercise_id`` (e.g. ``"01_implant_volume"``)."""

    def register(function: Callable[..., Feedback]) -> Callable[..., Feedback]:
        if exercise_id in EXERCISES:
            raise ValueError(f"exercise {exercise_id!r} registered twice")
        EXERCISES[exercise_id] = function
        return function

    return register


def check(exercise_id: str, answer, verbose: bool = True, **context) -> Feedback:
    """Check ``answer`` for exercise ``exercise_id``; prints the feedback and returns it (truthy when right)."""
    if exercise_id not in EXERCISES:
        known = ", ".join(sorted(EXERCISES))
        raise KeyError(f"unknown exercise {exercise_id!r}; known exercises: {known}")
    try:
        feedback = EXERCISES[exercise_id](answer, **context)
    except (TypeError, ValueError) as exc:  # None, a string where a number was asked, a wrong shape ...
        feedback = Feedback(False, f"could not check this answer ({exc}); read the exercise text again")
    if verbose:
        print(("✅ " if feedback.ok else "❌ ") + feedback.message)
    return feedback
