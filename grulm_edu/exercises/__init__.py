"""Checkers for the notebooks' exercises.

Every ``check_*`` function takes the learner's answer and returns a
`Feedback`: whether it is right, and a message saying what is right or
wrong in it. An answer of None means "not answered yet". The checkers live
in topic modules (`grulm_edu.exercises.losses`, ...).
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["Feedback", "correct", "incorrect", "not_answered", "check_number"]


@dataclasses.dataclass(frozen=True)
class Feedback:
    """The verdict on one answer; shown as one line in a notebook."""

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return ("Correct: " if self.passed else "Not yet: ") + self.message

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))


def correct(message: str) -> Feedback:
    return Feedback(True, message)


def incorrect(message: str) -> Feedback:
    return Feedback(False, message)


def not_answered() -> Feedback:
    return Feedback(False, "no answer yet; replace the None with your answer and run the cell again")


def check_number(answer, expected: float, *, rel_tol: float = 1e-3, what: str = "the value") -> Feedback | None:
    """Return Feedback when `answer` is missing, not a number, or wrong; None when it matches."""
    if answer is None:
        return not_answered()
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return incorrect(f"{what} should be a number, got {answer!r}")
    if not math.isfinite(value):
        return incorrect(f"{what} should be finite, got {value}")
    if not math.isclose(value, expected, rel_tol=rel_tol, abs_tol=1e-12):
        return incorrect(f"{what} {value:.6g} is too {'high' if value > expected else 'low'}")
    return None
