"""Checkers for notebook 08: the play split rule, the spread of sampled validation losses, and sampling coverage."""

from __future__ import annotations

import math

from grulm_edu.exercises import Feedback, check_number, correct, incorrect, not_answered

__all__ = ["check_split_of_play", "check_spread_at_windows", "check_never_drawn_fraction"]


def check_split_of_play(fn) -> Feedback:
    """Check that `fn(i)` returns ``"train"``, ``"val"`` or ``"test"`` for play ``i``, as `split_plays` assigns it."""
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")
    expected = {i: "train" for i in range(60)}
    for i in expected:
        if i % 10 == 4:
            expected[i] = "val"
        elif i % 10 == 9:
            expected[i] = "test"
    try:
        answers = {i: fn(i) for i in expected}
    except Exception as error:  # the learner's code may raise anything
        return incorrect(f"your function raised {type(error).__name__}: {error}")
    wrong = [i for i in expected if answers[i] != expected[i]]
    if not wrong:
        return correct("plays 4, 14, 24, 34 validate and 9, 19, 29, 39 test; every other play trains")
    if all(answers[i] == {"val": "test", "test": "val"}.get(expected[i], "train") for i in expected):
        return incorrect("validation and test are swapped: i % 10 == 4 is validation, i % 10 == 9 is test")
    unknown = sorted({str(a) for a in answers.values()} - {"train", "val", "test"})
    if unknown:
        return incorrect(f"return one of 'train', 'val' or 'test'; got {unknown}")
    examples = ", ".join(f"{i} -> {answers[i]!r} (expected {expected[i]!r})" for i in wrong[:3])
    return incorrect(f"{len(wrong)} of 60 plays go to the wrong split, for example {examples}")


def check_spread_at_windows(answer, *, std: float, num_windows: int, new_num_windows: int) -> Feedback:
    """Check the standard deviation of sampled validation losses at `new_num_windows`, given `std` at `num_windows`."""
    ratio = new_num_windows / num_windows
    expected = std / math.sqrt(ratio)
    problem = check_number(answer, expected, rel_tol=1e-3, what="your standard deviation")
    if problem is None:
        return correct(
            f"the standard deviation of a mean falls as 1/sqrt(n): "
            f"{ratio:g} times the windows, 1/{math.sqrt(ratio):g} the spread"
        )
    if answer is None or isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return problem
    if math.isclose(answer, std / ratio, rel_tol=1e-3):
        return incorrect("that is the 1/n law, which holds for the variance; the standard deviation falls as 1/sqrt(n)")
    if math.isclose(answer, std, rel_tol=1e-3):
        return incorrect("more windows average away more of the sampling noise; the spread must fall")
    return problem


def check_never_drawn_fraction(answer) -> Feedback:
    """Check the fraction of N windows never drawn after N/B steps of B distinct random windows each (N large)."""
    expected = math.exp(-1.0)
    problem = check_number(answer, expected, rel_tol=0.02, what="your fraction")
    if problem is None:
        return correct(
            "each step misses a given window with probability 1 - B/N, so after N/B steps "
            "(1 - B/N)^(N/B) is close to 1/e = 0.368 of the windows were never drawn"
        )
    if answer is None or isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return problem
    if math.isclose(answer, 1 - expected, rel_tol=0.02):
        return incorrect("that is the fraction drawn at least once; the question asks for the windows never drawn")
    if answer == 0:
        return incorrect(
            "that holds for precomputed batches, which visit every window once per epoch; "
            "independent draws repeat some windows"
        )
    return problem
