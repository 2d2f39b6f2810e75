"""Checkers for notebook 05: temperature, top-k filtering and the distinct n-gram ratio."""

from __future__ import annotations

import numpy as np

from grulm_edu.exercises import Feedback, check_number, correct, incorrect, not_answered

__all__ = ["check_apply_temperature", "check_top_k_filter", "check_distinct_trigrams", "DISTINCT_TEXT"]

# The text of exercise 3: 18 characters, 16 trigrams, 13 of them distinct.
DISTINCT_TEXT = "to be or not to be"


def _softmax(x: np.ndarray) -> np.ndarray:
    weights = np.exp(x - x.max())
    return weights / weights.sum()


def _call(fn, *args):
    """Return ``(result as a float64 array, None)`` or ``(None, Feedback)`` when `fn` raises."""
    try:
        with np.errstate(all="ignore"):
            return np.asarray(fn(*args), np.float64), None
    except Exception as error:  # the learner's code may raise anything
        return None, incorrect(f"your function raised {type(error).__name__}: {error}")


def check_apply_temperature(fn) -> Feedback:
    """Check that `fn(logits, temperature)` returns ``softmax(logits / temperature)`` for a ``(V,)`` array and temperature > 0."""
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")
    logits = np.array([2.0, 0.5, 0.8, -0.5, 0.2, -1.0])
    for temperature in (0.5, 2.0):
        result, problem = _call(fn, logits.copy(), temperature)
        if problem is not None:
            return problem
        if result.shape != logits.shape:
            return incorrect(f"return one probability per logit, shape {logits.shape}; got shape {result.shape}")
        if np.allclose(result, _softmax(logits / temperature), atol=1e-6):
            continue
        if np.allclose(result, _softmax(logits * temperature), atol=1e-6):
            return incorrect("you multiplied by the temperature; divide the logits by it, so a low temperature sharpens")
        if np.allclose(result, np.exp(logits / temperature), rtol=1e-6):
            return incorrect("the values do not sum to 1; divide by their sum (the softmax's normaliser)")
        if np.allclose(result, logits / temperature):
            return incorrect("these are the scaled logits; apply the softmax to turn them into probabilities")
        return incorrect(f"at temperature {temperature:g} the probabilities should be softmax(logits / {temperature:g})")

    # Large logits over a small temperature overflow exp unless the maximum is subtracted first.
    large = np.array([500.0, 499.0, 480.0])
    result, problem = _call(fn, large.copy(), 0.5)
    if problem is not None:
        return problem
    if not np.all(np.isfinite(result)):
        return incorrect(
            "logits [500, 499, 480] at temperature 0.5 give inf or nan: exp overflows; subtract the "
            "maximum of logits / temperature before exp"
        )
    if not np.allclose(result, _softmax(large / 0.5), atol=1e-6):
        return incorrect("logits [500, 499, 480] at temperature 0.5 should give about [0.8808, 0.1192, 0.0]")
    return correct("softmax(logits / temperature), computed without overflow")


def check_top_k_filter(fn) -> Feedback:
    """Check that `fn(probs, k)` keeps the k largest probabilities of a ``(V,)`` array, zeroes the rest, and renormalises."""
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")
    probs = np.array([0.05, 0.4, 0.3, 0.15, 0.1])

    def keep(indices):
        kept = np.zeros_like(probs)
        kept[list(indices)] = probs[list(indices)]
        return kept

    for k, top in ((2, [1, 2]), (3, [1, 2, 3])):
        result, problem = _call(fn, probs.copy(), k)
        if problem is not None:
            return problem
        if result.shape != probs.shape:
            return incorrect(f"return one probability per id, shape {probs.shape}; got shape {result.shape}")
        expected = keep(top) / probs[top].sum()
        if np.allclose(result, expected, atol=1e-6):
            continue
        if np.allclose(result, keep(top), atol=1e-6):
            return incorrect(f"the kept probabilities sum to {probs[top].sum():g}, not 1; divide by their sum")
        smallest = list(np.argsort(probs)[:k])
        if np.allclose(result, keep(smallest) / probs[smallest].sum(), atol=1e-6):
            return incorrect("you kept the k smallest probabilities; keep the k largest")
        for other in (k - 1, k + 1):
            indices = list(np.argsort(-probs)[:other])
            if other >= 1 and np.allclose(result, keep(indices) / probs[indices].sum(), atol=1e-6):
                return incorrect(f"you kept {other} ids for k = {k}; check the slice bounds")
        return incorrect(
            f"for probs {probs.tolist()} and k = {k} the result should be {np.round(expected, 4).tolist()}"
        )
    return correct("the k largest probabilities, renormalised to sum to 1")


def check_distinct_trigrams(answer) -> Feedback:
    """Check the distinct 3-gram ratio of `DISTINCT_TEXT`: 13 distinct of 16 trigrams, 0.8125."""
    problem = check_number(answer, 13 / 16, rel_tol=1e-3, what="your ratio")
    if problem is None:
        return correct("16 trigrams, of which 'to ', 'o b' and ' be' repeat: 13 / 16 = 0.8125")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        mistakes = {
            13 / 18: "you divided by the number of characters (18); a text of L characters has L - 2 trigrams",
            13.0: "that is the number of distinct trigrams; divide it by the number of trigrams, 16",
            3 / 16: "that is the share of repeated trigrams; the ratio counts the distinct ones",
        }
        for value, message in mistakes.items():
            if np.isclose(answer, value, rtol=1e-3):
                return incorrect(message)
    return problem
