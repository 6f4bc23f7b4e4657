"""The registry of exercise checkers and the ``check`` entry point the notebooks call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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
    if answer is None:
        feedback = Feedback(False, "no answer yet: replace None with your answer (see the exercise text)")
    else:
        feedback = _run_checker(EXERCISES[exercise_id], answer, context)
    if verbose:
        print(("✅ " if feedback.ok else "❌ ") + feedback.message)
    return feedback


def _run_checker(checker: Callable[..., Feedback], answer, context: dict) -> Feedback:
    try:
        return checker(answer, **context)
    except (TypeError, ValueError) as exc:  # None, a string where a number was asked, a wrong shape ...
        return Feedback(False, f"could not check this answer ({exc}); read the exercise text again")


def call_answer(function, *args, **kwargs) -> tuple[Any, Feedback | None]:
    """Call a function the student wrote: ``(result, None)``, or ``(None, feedback)`` when it is not a function,
    raises or returns None — so that a half-written answer gives feedback instead of stopping the notebook."""
    if not callable(function):
        return None, Feedback(False, "pass your function itself (its name, without parentheses), not its result")
    try:
        result = function(*args, **kwargs)
    except Exception as exc:  # any error in the student's code becomes feedback
        return None, Feedback(False, f"your function raised {type(exc).__name__}: {exc}")
    if result is None:
        return None, Feedback(False, "your function returned None: replace the placeholder body and `return` a result")
    return result, None
