"""Checkers for notebook 01: cross-entropy, perplexity and masking."""

from __future__ import annotations

import math

import numpy as np

from grulm_edu.exercises import Feedback, check_number, correct, incorrect, not_answered

__all__ = ["check_uniform_loss", "check_split_perplexity", "check_masked_mean"]


def check_uniform_loss(answer, vocab_size: int) -> Feedback:
    """The cross-entropy, in nats, of a model that spreads probability evenly over `vocab_size` ids."""
    expected = math.log(vocab_size)
    problem = check_number(answer, expected, what="your loss")
    if problem is not None:
        if answer is not None and isinstance(answer, (int, float)) and math.isclose(answer, math.log2(vocab_size), rel_tol=1e-3):
            return incorrect("that is the loss in bits (log base 2); the question asks for nats (natural log)")
        if answer is not None and isinstance(answer, (int, float)) and math.isclose(answer, vocab_size, rel_tol=1e-3):
            return incorrect("that is the perplexity; the loss is its logarithm")
        return problem
    return correct(f"-log(1/{vocab_size}) = log({vocab_size}) = {expected:.4f} nats, and its exp is the perplexity {vocab_size}")


def check_split_perplexity(fn) -> Feedback:
    """`fn(batch_mean_losses, batch_token_counts)` must return the split's perplexity."""
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")
    means = np.array([1.0, 2.0, 4.0])
    counts = np.array([100, 10, 1])
    expected = math.exp((means * counts).sum() / counts.sum())
    try:
        value = float(fn(means, counts))
    except Exception as error:  # the learner's code may raise anything
        return incorrect(f"your function raised {type(error).__name__}: {error}")
    if math.isclose(value, expected, rel_tol=1e-6):
        return correct("the perplexity is exp of the token-weighted mean loss")
    if math.isclose(value, np.exp(means).mean(), rel_tol=1e-6):
        return incorrect("that is the mean of per-batch perplexities; average the losses first, weighted by tokens, then exp")
    if math.isclose(value, math.exp(means.mean()), rel_tol=1e-6):
        return incorrect("each batch counts equally here; weight each batch's loss by its token count")
    return incorrect(f"for means {means.tolist()} and counts {counts.tolist()} your function returned {value:.6g}")


def check_masked_mean(fn) -> Feedback:
    """`fn(losses, mask)` must return the mean loss over positions where `mask` is 1."""
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")
    losses = np.array([[1.0, 2.0, 3.0, np.inf], [4.0, np.nan, 0.0, 0.0]])
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]])
    try:
        value = float(fn(losses, mask))
    except Exception as error:  # the learner's code may raise anything
        return incorrect(f"your function raised {type(error).__name__}: {error}")
    if math.isclose(value, 2.5, rel_tol=1e-6):
        return correct("padding is left out, even when a padded loss is inf or nan")
    if math.isnan(value):
        return incorrect("the result is nan: multiplying inf or nan by a mask of 0 still gives nan; select with np.where instead")
    with np.errstate(invalid="ignore"):
        finite = np.where(mask == 1, losses, 0.0)
    if math.isclose(value, finite.sum() / mask.size, rel_tol=1e-6):
        return incorrect("you divided by every position; divide by the number of unmasked tokens")
    return incorrect(f"expected the mean of the 4 unmasked losses 1, 2, 3 and 4, got {value:.6g}")
