"""Checkers for notebook 11: inverted dropout, AdamW's decoupled weight decay and its mask."""

from __future__ import annotations

import math

import jax
import numpy as np

from grulm_edu.exercises import Feedback, check_number, correct, incorrect, not_answered

__all__ = ["check_dropout_value", "check_decay_factor", "check_decay_mask"]


def _close(answer, value: float) -> bool:
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return False
    return math.isclose(answer, value, rel_tol=1e-3, abs_tol=1e-9)


def check_dropout_value(answer, value: float, rate: float) -> Feedback:
    """Check the value that a kept unit holding `value` has after inverted dropout at `rate`."""
    expected = value / (1.0 - rate)
    problem = check_number(answer, expected, what="your value")
    if problem is None:
        return correct(
            f"a kept unit is divided by the keep probability 1 - {rate:g}, so {value:g} becomes {expected:.4g}; "
            f"on average over masks the output is still {value:g}, which is why evaluation needs no rescaling"
        )
    if _close(answer, value):
        return incorrect("that is the value before dropout; inverted dropout also rescales the units it keeps")
    if _close(answer, value * (1.0 - rate)):
        return incorrect(
            "that multiplies by the keep probability, which the original dropout did at evaluation time; "
            "inverted dropout divides by it during training instead"
        )
    if _close(answer, 0.0):
        return incorrect("the question says the unit was kept; only dropped units become 0")
    if _close(answer, value * (1.0 + rate)):
        return incorrect(f"the scale is 1 / (1 - rate), not 1 + rate; for rate {rate:g} that is {1 / (1 - rate):.4g}")
    return problem


def check_decay_factor(answer, learning_rate: float, weight_decay: float, num_steps: int) -> Feedback:
    """Check the factor that `num_steps` AdamW updates with zero gradient multiply a decayed weight matrix by."""
    step_factor = 1.0 - learning_rate * weight_decay
    expected = step_factor**num_steps
    problem = check_number(answer, expected, rel_tol=1e-4, what="your factor")
    if problem is None:
        return correct(
            f"each update multiplies by 1 - lr x wd = {step_factor:g}, and {num_steps} updates compound: "
            f"{step_factor:g}^{num_steps} = {expected:.4f}"
        )
    if _close(answer, step_factor):
        return incorrect(f"that is the factor of one update; the question asks for {num_steps} of them")
    if _close(answer, 1.0 - num_steps * learning_rate * weight_decay):
        return incorrect(
            "each update shrinks what is left after the previous one, so the factors multiply; they do not add up"
        )
    if _close(answer, math.exp(-num_steps * learning_rate * weight_decay)):
        return incorrect(
            "exp(-n lr wd) is the continuous approximation; compute the exact product of the per-update factors"
        )
    if _close(answer, (1.0 - weight_decay) ** num_steps):
        return incorrect("optax scales the decay term by the learning rate too: each update multiplies by 1 - lr x wd")
    if _close(answer, 1.0):
        return incorrect("a zero gradient makes Adam's own update zero, but the decay term still shrinks the weights")
    return problem


def _example_params() -> dict:
    """Arrays shaped like the model's parameters, with V=5, E=3, H=2."""
    return {
        "embed": np.zeros((5, 3), np.float32),
        "gru": {
            "W_ih": np.zeros((3, 6), np.float32),
            "W_hh": np.zeros((2, 6), np.float32),
            "b_ih": np.zeros((6,), np.float32),
            "b_hh": np.zeros((6,), np.float32),
        },
        "head": {"W": np.zeros((2, 5), np.float32), "b": np.zeros((5,), np.float32)},
    }


def _leaf_flag(leaf):
    """Return a mask leaf as one bool, or None when it is neither a bool nor an array of one repeated bool."""
    array = np.asarray(leaf)
    if array.dtype != bool or array.size == 0 or not (array == array.flat[0]).all():
        return None
    return bool(array.flat[0])


def check_decay_mask(fn) -> Feedback:
    """`fn(params)` must return a pytree of bools, True for the parameters AdamW decays in this course."""
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")

    params = _example_params()
    try:
        mask = fn(params)
    except Exception as error:  # the learner's code may raise anything
        return incorrect(f"your function raised {type(error).__name__}: {error}")
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    try:
        leaves = jax.tree_util.tree_structure(params).flatten_up_to(mask)
    except (ValueError, TypeError):
        return incorrect("the mask must have the same structure as params: a dict with 'embed', 'gru' and 'head'")

    got = dict(zip(paths, (_leaf_flag(leaf) for leaf in leaves)))
    if any(flag is None for flag in got.values()):
        bad = [path for path, flag in got.items() if flag is None]
        return incorrect(f"each leaf must be True or False, but {', '.join(bad)} is not")

    expected = {path: path.startswith(("['gru']['W", "['head']['W")) for path in paths}
    if got == expected:
        return correct("GRU and head weight matrices decay; biases and the embedding table do not")

    # Name the typical mistakes: decaying the embedding, decaying a bias, decaying nothing.
    wrong = [path for path in paths if got[path] != expected[path]]
    if wrong == ["['embed']"]:
        return incorrect(
            "the embedding table decays here: every row would shrink on every update, while a rare character's row "
            "gets a gradient only when it appears, so rare characters fade"
        )
    if set(wrong) <= {path for path in paths if path.split("'")[-2].startswith("b")}:
        return incorrect("a bias decays here: biases set each unit's offset and are left out of the decay")
    if not any(got.values()):
        return incorrect("nothing decays: the GRU and head weight matrices should")
    return incorrect(f"these leaves have the wrong flag: {', '.join(wrong)}")
