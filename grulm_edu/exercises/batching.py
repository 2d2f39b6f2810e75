"""Checkers for notebook 06: per-window losses with `jax.vmap`, throughput, and gradient noise."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from grulm_edu.exercises import Feedback, check_number, correct, incorrect, not_answered
from grulm_edu.losses import token_cross_entropy
from grulm_edu.model import ModelConfig, forward, init_params

__all__ = ["check_per_window_losses", "check_tokens_per_second", "check_noise_at_batch_size"]


def check_per_window_losses(fn) -> Feedback:
    """Check that `fn(params, tokens)` returns the mean loss of each window of ``tokens (B, T + 1)``, shape ``(B,)``."""
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")
    key_params, key_tokens = jax.random.split(jax.random.key(6))
    params = init_params(key_params, ModelConfig(vocab_size=12, embed_size=4, hidden_size=8))
    tokens = jax.random.randint(key_tokens, (5, 9), 0, 12)  # B = 5 windows, T = 8
    logits, _ = forward(params, tokens[:, :-1])
    expected = np.asarray(token_cross_entropy(logits, tokens[:, 1:]).mean(axis=1))  # (B,)
    try:
        value = np.asarray(fn(params, tokens), np.float64)
    except Exception as error:  # the learner's code may raise anything
        message = f"your function raised {type(error).__name__}: {error}"
        if "vmap" in str(error) or "axis" in str(error):
            message += " (the parameters are shared by every window: vmap with in_axes=(None, 0))"
        return incorrect(message)
    if value.shape == () and math.isclose(float(value), float(expected.mean()), rel_tol=1e-5):
        return incorrect("that is the batch's mean loss; return one loss per window, shape (B,)")
    if value.shape != expected.shape:
        return incorrect(f"expected one loss per window, shape {expected.shape}, got {value.shape}")
    if not np.allclose(value, expected, rtol=1e-5, atol=1e-6):
        return incorrect(f"expected {np.round(expected, 4).tolist()}, got {np.round(value, 4).tolist()}")
    return correct("one loss per window; their mean is the batch loss")


def check_tokens_per_second(answer, *, batch_size: int, seq_len: int, step_ms: float) -> Feedback:
    """Check the targets per second of a step on a ``(batch_size, seq_len + 1)`` batch taking `step_ms` ms."""
    expected = batch_size * seq_len / (step_ms / 1000)
    problem = check_number(answer, expected, what="your rate")
    if problem is None:
        targets = batch_size * seq_len
        return correct(f"{batch_size} x {seq_len} = {targets:,} targets in {step_ms:g} ms: {expected:,.0f} tokens/s")
    if answer is None or isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return problem
    mistakes = {
        batch_size / (step_ms / 1000): "that counts sequences, not tokens; each window contains T targets",
        batch_size * (seq_len + 1) / (step_ms / 1000): (
            "a window of T + 1 ids contains T targets; the first id is an input only"
        ),
        batch_size * seq_len / step_ms: "the step time is in milliseconds; convert it to seconds",
    }
    for value, message in mistakes.items():
        if math.isclose(answer, value, rel_tol=1e-3):
            return incorrect(message)
    return problem


def check_noise_at_batch_size(answer, *, noise: float, batch_size: int, new_batch_size: int) -> Feedback:
    """Check the mean squared distance from the full gradient at `new_batch_size`, given `noise` at `batch_size`.

    The pool is taken to be much larger than either batch size, so the finite-pool correction is left out.
    """
    expected = noise * batch_size / new_batch_size
    problem = check_number(answer, expected, what="your value")
    ratio = new_batch_size / batch_size
    if problem is None:
        return correct(f"the squared distance falls as 1/B: {ratio:g} times the windows, 1/{ratio:g} of the noise")
    if answer is None or isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return problem
    if math.isclose(answer, noise / math.sqrt(ratio), rel_tol=1e-3):
        return incorrect(
            "that is the 1/sqrt(B) law, which holds for the standard deviation; "
            "the mean squared distance is a variance and falls as 1/B"
        )
    if math.isclose(answer, noise * ratio, rel_tol=1e-3):
        return incorrect("more windows per batch average away noise; the value must fall, not grow")
    return problem
