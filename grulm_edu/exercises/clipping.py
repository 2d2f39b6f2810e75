"""Checkers for notebook 04: the global gradient norm, global-norm clipping, and clipping under Adam."""

from __future__ import annotations

import math

import numpy as np

from grulm_edu.exercises import Feedback, check_number, correct, incorrect, not_answered

__all__ = ["check_global_norm", "check_clip_by_global_norm", "check_adam_stall"]

# The gradient of exercise 1: leaf norms 3 and 4, global norm 5.
EXERCISE_GRADIENT = {"W": [[1.0, 2.0], [2.0, 0.0]], "b": [4.0]}


def check_global_norm(answer) -> Feedback:
    """Check the global norm of `EXERCISE_GRADIENT`: ``sqrt(1 + 4 + 4 + 0 + 16) = 5``."""
    problem = check_number(answer, 5.0, what="your norm")
    if problem is None:
        return correct("sqrt(1 + 4 + 4 + 0 + 16) = 5: every number of every leaf enters one sum of squares")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        mistakes = {
            25.0: "that is the squared norm; take its square root",
            7.0: "that is the sum of the two leaf norms (3 + 4); square them, add, then take one square root",
            3.5: "that is the mean of the leaf norms; the global norm combines them as sqrt(3² + 4²)",
            4.0: "that is the largest leaf norm only; the global norm includes every leaf",
            9.0: "that is the sum of absolute values (the L1 norm); the global norm is the L2 norm",
        }
        for value, message in mistakes.items():
            if math.isclose(answer, value, rel_tol=1e-6):
                return incorrect(message)
    return problem


def _as_arrays(tree):
    """Nested dicts of array-likes to nested dicts of new float64 arrays."""
    if isinstance(tree, dict):
        return {name: _as_arrays(value) for name, value in tree.items()}
    return np.array(np.asarray(tree), np.float64)


def _leaves(tree) -> list[np.ndarray]:
    if isinstance(tree, dict):
        return [leaf for name in sorted(tree) for leaf in _leaves(tree[name])]
    return [tree]


def _same_structure(a, b) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_same_structure(a[name], b[name]) for name in a)
        )
    return np.shape(a) == np.shape(b)


def _close(a, b) -> bool:
    return all(np.allclose(x, y, rtol=1e-5, atol=1e-7) for x, y in zip(_leaves(a), _leaves(b)))


def _norm(tree) -> float:
    return math.sqrt(sum(float(np.sum(leaf**2)) for leaf in _leaves(tree)))


def _map(fn, tree):
    if isinstance(tree, dict):
        return {name: _map(fn, value) for name, value in tree.items()}
    return fn(tree)


# Gradients and max norms the function is tried on: the notebook's worked
# example, and a nested tree whose norm (0.4272) is below its max norm.
_CLIP_CASES = [
    ({"a": [3.0, 4.0], "b": [0.0, 0.0, 12.0]}, 6.5),
    ({"gru": {"W": [[0.1, -0.2], [0.3, 0.0]], "b": [0.05, 0.0]}, "head": [0.2]}, 1.0),
]


def check_clip_by_global_norm(fn) -> Feedback:
    """Check that `fn(grads, max_norm)` returns `grads` (nested dicts of arrays) scaled by ``min(1, max_norm / global norm)``."""
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")
    for case, max_norm in _CLIP_CASES:
        grads = _as_arrays(case)
        norm = _norm(grads)
        try:
            # A fresh float32 copy (JAX's default dtype), in case fn changes it in place.
            result = fn(_map(lambda g: g.astype(np.float32), _as_arrays(case)), max_norm)
            result = _as_arrays(result)
        except Exception as error:  # the learner's code may raise anything
            return incorrect(f"your function raised {type(error).__name__}: {error}")
        if not _same_structure(result, grads):
            return incorrect("return a tree with the same keys and leaf shapes as the gradient you were given")
        if _close(result, _map(lambda g: g * min(1.0, max_norm / norm), grads)):
            continue
        if _close(result, _map(lambda g: g * max_norm / norm, grads)):
            return incorrect(
                f"a gradient of norm {norm:.4g} is already below max norm {max_norm:g}, so it must come back "
                f"unchanged; scale only when the norm exceeds max_norm"
            )
        per_leaf = _map(lambda g: g * min(1.0, max_norm / max(float(np.linalg.norm(g)), 1e-12)), grads)
        if _close(result, per_leaf):
            return incorrect(
                "you clipped each leaf on its own; global clipping scales every leaf by one factor, "
                "computed from the norm of all leaves together, and so keeps the direction"
            )
        if _close(result, _map(lambda g: g * min(1.0, max_norm / norm**2), grads)):
            return incorrect("you divided by the squared norm; the factor is max_norm / sqrt(sum of squares)")
        return incorrect(
            f"for max norm {max_norm:g} and a gradient of global norm {norm:.4g}, every leaf should be "
            f"multiplied by {min(1.0, max_norm / norm):.4g}"
        )
    return correct("one factor, min(1, max_norm / global norm), for every leaf: the direction is kept")


_ADAM_CHOICES = {
    "a": (
        False,
        "Adam's step for each parameter is about lr * m / sqrt(v), so one huge gradient moves each "
        "parameter by about the learning rate, not by an amount proportional to the gradient",
    ),
    "b": (
        True,
        "the huge gradients filled Adam's running mean of squared gradients, which forgets slowly, so "
        "later gradients were divided by a large number and made small steps",
    ),
    "c": (
        False,
        "no loss or gradient was inf or nan in that run (the history counted 0 skipped updates), "
        "so every update was applied",
    ),
    "d": (
        False,
        "the run used a constant learning rate (warmup_steps=0, final_lr_fraction=1.0), the same in both runs",
    ),
}


def check_adam_stall(answer) -> Feedback:
    """Check the multiple-choice question on why the unclipped AdamW run of section 3 stalled; ``"b"`` is right."""
    if answer is None:
        return not_answered()
    if not isinstance(answer, str):
        return incorrect(f"answer with one letter, 'a' to 'd', as a string; got {answer!r}")
    letter = answer.strip().strip("()").lower()
    if letter not in _ADAM_CHOICES:
        return incorrect(f"answer with one letter, 'a' to 'd'; got {answer!r}")
    right, message = _ADAM_CHOICES[letter]
    return correct(message) if right else incorrect(message)
