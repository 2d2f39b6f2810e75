"""Checkers for notebook 07: jaxpr size of an unrolled loop, and writing loops with `jax.lax.scan`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from grulm_edu.exercises import Feedback, check_number, correct, incorrect, not_answered
from grulm_edu.model import gru_layer_loop

__all__ = ["check_loop_equations", "check_scan_cumsum", "check_scan_gru_layer"]


def _uses_scan(jaxpr) -> bool:
    """Return True when `jaxpr` or any sub-jaxpr (inside jit, cond, ...) contains a scan."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            return True
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)  # a ClosedJaxpr wraps a Jaxpr
            if hasattr(inner, "eqns") and _uses_scan(inner):
                return True
    return False


def check_loop_equations(answer, counts: dict, seq_len: int) -> Feedback:
    """Check a prediction of the unrolled loop's jaxpr size at `seq_len`.

    `counts` maps two or more sequence lengths to the equation counts measured there.

    The count is linear in T: a fixed part (embedding, head, loss) plus the
    same number of equations for every time step.
    """
    lengths = sorted(counts)
    if len(lengths) < 2:
        raise ValueError(f"counts must hold at least two lengths, got {counts!r}")
    first, last = lengths[0], lengths[-1]
    per_step = (counts[last] - counts[first]) / (last - first)
    fixed = counts[first] - per_step * first
    expected = fixed + per_step * seq_len
    problem = check_number(answer, expected, rel_tol=1e-9, what="your count")
    if problem is None:
        return correct(
            f"{fixed:.0f} fixed equations plus {per_step:.0f} per time step: "
            f"{fixed:.0f} + {per_step:.0f} x {seq_len} = {expected:.0f}"
        )
    if answer is None or isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return problem
    proportional = counts[first] * seq_len / first
    if math.isclose(answer, proportional, rel_tol=1e-3):
        return incorrect(
            f"scaling the count at T = {first} in proportion assumes every equation repeats per step; "
            f"the embedding, head and loss appear once, so fit a fixed part plus a per-step part"
        )
    if math.isclose(answer, per_step * seq_len, rel_tol=1e-3):
        return incorrect(f"that is the per-step part only; add the {fixed:.0f} equations that appear once")
    return problem


def check_scan_cumsum(fn) -> Feedback:
    """Check that `fn(xs)` returns the running sums ``(T,)`` of ``xs (T,)``, computed with `jax.lax.scan`."""
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")
    xs = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
    expected = np.cumsum(np.asarray(xs))
    try:
        jaxpr = jax.make_jaxpr(fn)(xs)
        value = np.asarray(fn(xs), np.float64)
    except Exception as error:  # the learner's code may raise anything
        return incorrect(f"your function raised {type(error).__name__}: {error}")
    uses_scan = _uses_scan(jaxpr.jaxpr)
    if value.shape == () and math.isclose(float(value), expected[-1]):
        return incorrect(
            "that is only the final carry (the total); return the stacked per-step outputs, "
            "the second result of lax.scan"
        )
    if value.shape != expected.shape:
        return incorrect(f"expected shape {expected.shape}, one sum per step, got {value.shape}")
    if np.allclose(value, np.concatenate([[0.0], expected[:-1]])):
        return incorrect(
            "these are exclusive sums (each step outputs the carry before adding x); output the carry after adding"
        )
    if not np.allclose(value, expected):
        return incorrect(f"for xs = {np.asarray(xs).tolist()} expected {expected.tolist()}, got {value.tolist()}")
    if not uses_scan:
        return incorrect("the values are right, but the jaxpr has no scan; write the loop with jax.lax.scan")
    return correct("the carry is the running total and each step outputs it; lax.scan stacks the outputs into (T,)")


def check_scan_gru_layer(fn) -> Feedback:
    """Check that `fn(gru, xs, h0)` runs `gru_cell` over ``xs (B, T, E)`` with `lax.scan`, returning ``(B, T, H)``."""
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")
    # A small random GRU and its reference states from the Python loop.
    B, T, E, H = 3, 5, 4, 6
    keys = jax.random.split(jax.random.key(7), 5)
    gru = {
        "W_ih": 0.5 * jax.random.normal(keys[0], (E, 3 * H)),
        "W_hh": 0.5 * jax.random.normal(keys[1], (H, 3 * H)),
        "b_ih": 0.1 * jax.random.normal(keys[2], (3 * H,)),
        "b_hh": 0.1 * jax.random.normal(keys[3], (3 * H,)),
    }
    xs = jax.random.normal(keys[4], (B, T, E))
    h0 = jnp.zeros((B, H))
    expected = np.asarray(gru_layer_loop(gru, xs, h0))

    # Run the answer, and trace it to see whether it uses a scan.
    try:
        jaxpr = jax.make_jaxpr(fn)(gru, xs, h0)
        value = np.asarray(fn(gru, xs, h0))
    except Exception as error:  # the learner's code may raise anything
        message = f"your function raised {type(error).__name__}: {error}"
        if "shape" in str(error).lower() or isinstance(error, TypeError):
            message += (
                " (did you scan over the batch axis? lax.scan walks axis 0, so swap xs to time-major (T, B, E) first)"
            )
        return incorrect(message)
    uses_scan = _uses_scan(jaxpr.jaxpr)

    # Name the typical mistakes before the generic ones.
    if value.shape == (T, B, H) and np.allclose(value, np.swapaxes(expected, 0, 1), atol=1e-5):
        return incorrect("the states are right but time-major (T, B, H); swap axes 0 and 1 back to (B, T, H)")
    if value.shape == (B, H) and np.allclose(value, expected[:, -1], atol=1e-5):
        return incorrect(
            "that is the final state only (the carry); return the stacked states, the second result of lax.scan"
        )
    if value.shape != (B, T, H):
        return incorrect(f"expected shape (B, T, H) = {(B, T, H)}, got {value.shape}")
    if not np.allclose(value, expected, atol=1e-5):
        return incorrect(
            f"the states differ from gru_layer_loop's by up to {np.max(np.abs(value - expected)):.2g}; "
            f"check that each step reads x_t (not x_0) and carries the new state"
        )
    if not uses_scan:
        return incorrect("the states are right, but the jaxpr has no scan; write the loop with jax.lax.scan")
    return correct("same states as the Python loop, with one scan in the jaxpr whatever T is")
