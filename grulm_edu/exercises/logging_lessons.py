"""Checkers for notebook 12: smoothing a log, per-epoch means, and reading a spike off the log."""

from __future__ import annotations

import numpy as np

from grulm_edu.exercises import Feedback, correct, incorrect, not_answered
from grulm_edu.log_analysis import ema

__all__ = ["check_ema", "check_epoch_means", "check_first_spike"]


def _call(fn, *args):
    """Return ``(result as a float64 array, None)``, or ``(None, Feedback)`` when `fn` is missing or fails."""
    if fn is None:
        return None, not_answered()
    if not callable(fn):
        return None, incorrect(f"pass your function itself, got {type(fn).__name__}")
    try:
        return np.asarray(fn(*args), np.float64), None
    except Exception as error:  # the learner's code may raise anything
        return None, incorrect(f"your function raised {type(error).__name__}: {error}")


def _matches(result, expected) -> bool:
    return result.shape == np.shape(expected) and np.allclose(result, expected, rtol=1e-6, atol=1e-9)


def check_ema(fn) -> Feedback:
    """`fn(values, beta)` must return the bias-corrected exponential moving average, one value per step."""
    values = np.array([2.0, 4.0, 3.0, 5.0, 1.0, 2.5])
    beta = 0.8
    result, problem = _call(fn, values, beta)
    if problem is not None:
        return problem
    if result.shape != values.shape:
        return incorrect(f"return one smoothed value per step: {values.shape}, got {result.shape}")
    if _matches(result, ema(values, beta)):
        return correct("m_t = beta m_(t-1) + (1 - beta) x_t from m_0 = 0, divided by 1 - beta^t")
    if _matches(result, ema(values, beta, bias_correction=False)):
        return incorrect(
            f"without the bias correction the average starts near 0 (here {result[0]:.4g} for a first value of 2); "
            f"divide m_t by 1 - beta^t"
        )
    if _matches(result, ema(values, 1.0 - beta)):
        return incorrect("beta weighs the old average and 1 - beta the new value; yours swaps them")
    started_at_first = [values[0]]
    for x in values[1:]:
        started_at_first.append(beta * started_at_first[-1] + (1 - beta) * x)
    if _matches(result, started_at_first):
        return incorrect(
            "starting the average at the first value gives that one value the weight of all earlier steps; "
            "start from m_0 = 0 and divide by 1 - beta^t"
        )
    return incorrect(f"for values {values.tolist()} and beta {beta} expected {np.round(ema(values, beta), 4).tolist()}")


def check_epoch_means(fn) -> Feedback:
    """`fn(losses, tokens, steps_per_epoch)` must return each epoch's token-weighted mean loss."""
    losses = np.array([4.0, 3.0, 2.0, 2.5, 2.0, 1.0, 1.5])
    tokens = np.array([100, 100, 20, 100, 100, 20, 60])
    steps_per_epoch = 3
    epochs = np.arange(len(losses)) // steps_per_epoch
    weighted = [float(np.average(losses[epochs == e], weights=tokens[epochs == e])) for e in range(3)]
    unweighted = [float(losses[epochs == e].mean()) for e in range(3)]
    result, problem = _call(fn, losses, tokens, steps_per_epoch)
    if problem is not None:
        return problem
    if _matches(result, weighted):
        return correct("each step counts in proportion to its tokens, and the partial last epoch is kept")
    if _matches(result, weighted[:2]):
        return incorrect("the last epoch is partial (one step) but still trained the model; keep it")
    if _matches(result, unweighted) or _matches(result, unweighted[:2]):
        return incorrect("each step counts equally here; weight each step's loss by its tokens")
    return incorrect(
        f"for losses {losses.tolist()}, tokens {tokens.tolist()} and 3 steps per epoch "
        f"expected {np.round(weighted, 4).tolist()}, got {np.round(result, 4).tolist()}"
    )


def check_first_spike(answer, steps, losses, flags) -> Feedback:
    """Check the step number of the first record flagged as a spike.

    Args:
        answer: the learner's step number.
        steps: ``(N,)`` the log's step numbers, from 1.
        losses: ``(N,)`` the logged values the flags were computed on.
        flags: ``(N,)`` bool, from `grulm_edu.log_analysis.find_spikes`.
    """
    steps, losses, flags = np.asarray(steps), np.asarray(losses, np.float64), np.asarray(flags, bool)
    if not flags.any():
        raise ValueError("flags has no spike; pass the flags of a log that has one")
    first = int(np.argmax(flags))
    expected = int(steps[first])
    if answer is None:
        return not_answered()
    if isinstance(answer, bool) or not isinstance(answer, (int, np.integer)):
        return incorrect(f"give the step number as an int, got {answer!r}")
    if answer == expected:
        return correct(f"step {expected} is the first record at least the chosen factor above its rolling median")
    if answer == first:
        return incorrect("that is the array index; the log's step numbers count from 1, so read steps[index]")
    if answer == int(steps[np.nanargmax(losses)]):
        return incorrect("that is the step with the highest value, reached after the first flagged step")
    if answer < expected:
        return incorrect(f"step {answer} was not flagged: the first flagged record comes later")
    return incorrect(f"step {answer} is after the first flagged record; look for the earliest True")
