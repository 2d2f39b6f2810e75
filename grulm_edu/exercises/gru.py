"""Checkers for notebook 03: the GRU's parameter count, the 2014 cell, and gradient decay through the update gate."""

from __future__ import annotations

import math

import numpy as np

from grulm_edu.exercises import Feedback, check_number, correct, incorrect, not_answered

__all__ = ["check_gru_param_count", "check_gru_2014_cell", "check_update_gate_decay"]


def _matches(answer, value) -> bool:
    return isinstance(answer, (int, float)) and math.isclose(answer, value, rel_tol=1e-9)


def check_gru_param_count(answer, embed_size: int, hidden_size: int) -> Feedback:
    """Check a count of the parameters of one GRU layer for sizes ``E`` and ``H``.

    The layer's parameters are ``W_ih``, ``W_hh``, ``b_ih`` and ``b_hh``.
    """
    E, H = embed_size, hidden_size
    expected = 3 * H * (E + H) + 6 * H
    mistakes = {
        3 * H * (E + H) + 3 * H: (
            "that has one bias per gate; the library, like PyTorch, keeps two: b_ih and b_hh, each (3H,)"
        ),
        3 * H * (E + H): "the weights are right, but the two biases b_ih and b_hh, each (3H,), are missing",
        H * (E + H) + 2 * H: (
            "that is a vanilla RNN with one block; a GRU has three (r, z, n), so every matrix is 3H wide"
        ),
        3 * H * E + 6 * H: "W_hh (H, 3H) is missing: each gate also sees the previous state",
        3 * (E + H) + 6: "that treats H as 1; the matrices are (E, 3H) and (H, 3H)",
    }
    for value, message in mistakes.items():
        if _matches(answer, value):
            return incorrect(message)
    problem = check_number(answer, expected, rel_tol=1e-9, what="your count")
    if problem is not None:
        return problem
    return correct(f"W_ih {E}x{3 * H} + W_hh {H}x{3 * H} + b_ih {3 * H} + b_hh {3 * H} = {expected:,}")


def _reference_2014(x, h, gru):
    W_ih, W_hh = np.asarray(gru["W_ih"], np.float64), np.asarray(gru["W_hh"], np.float64)
    b_ih, b_hh = np.asarray(gru["b_ih"], np.float64), np.asarray(gru["b_hh"], np.float64)
    H = h.shape[-1]
    sigmoid = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    i_r, i_z, i_n = np.split(x @ W_ih + b_ih, 3, axis=-1)
    r = sigmoid(i_r + h @ W_hh[:, :H] + b_hh[:H])
    z = sigmoid(i_z + h @ W_hh[:, H : 2 * H] + b_hh[H : 2 * H])
    return r, z, i_n, W_hh[:, 2 * H :], b_hh[2 * H :]


def check_gru_2014_cell(fn) -> Feedback:
    """Check `fn(x, h, gru)`, which must return the 2014 GRU's new state ``(B, H)``.

    The arguments are ``x (B, E)``, ``h (B, H)`` and the library's parameter dict.
    """
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")
    rng = np.random.default_rng(3)
    B, E, H = 3, 4, 5
    gru = {
        "W_ih": rng.normal(0, 0.6, (E, 3 * H)),
        "W_hh": rng.normal(0, 0.6, (H, 3 * H)),
        "b_ih": rng.normal(0, 0.5, 3 * H),
        "b_hh": rng.normal(0, 0.5, 3 * H),
    }
    x, h = rng.normal(size=(B, E)), rng.normal(0, 0.5, (B, H))
    r, z, i_n, W_hn, b_hn = _reference_2014(x, h, gru)

    n = np.tanh(i_n + (r * h) @ W_hn + b_hn)
    candidates = {
        "right": (1 - z) * n + z * h,
        "reset after": (1 - z) * np.tanh(i_n + r * (h @ W_hn + b_hn)) + z * h,
        "z swapped": z * n + (1 - z) * h,
        "no b_hn": (1 - z) * np.tanh(i_n + (r * h) @ W_hn) + z * h,
        "gates swapped": (1 - r) * np.tanh(i_n + (z * h) @ W_hn + b_hn) + r * h,
    }
    try:
        value = np.asarray(fn(x, h, gru), dtype=np.float64)
    except Exception as error:  # the learner's code may raise anything
        return incorrect(f"your function raised {type(error).__name__}: {error}")
    if value.shape != (B, H):
        return incorrect(f"the new state has shape (B, H) = {(B, H)}, got {value.shape}")
    messages = {
        "right": None,
        "reset after": "that is the library's form, r * (W_hn h + b_hn); the 2014 form multiplies h by r before W_hn",
        "z swapped": "z weighs the old state: h' = (1 - z) * n + z * h, not z * n + (1 - z) * h",
        "no b_hn": "the bias b_hn (the last H entries of b_hh) is missing from the candidate",
        "gates swapped": (
            "the gate order is r, z, n: the first H columns are the reset gate, the next H the update gate"
        ),
    }
    for name, expected in candidates.items():
        if np.allclose(value, expected, atol=1e-6):
            if messages[name] is None:
                return correct("r scales h before the product with W_hn, so W_hn (r * h) needs r first: "
                               "a second matmul in every step")
            return incorrect(messages[name])
    return incorrect(f"the first row of your new state is {np.round(value[0], 4).tolist()}, "
                     f"expected {np.round(candidates['right'][0], 4).tolist()}")


def check_update_gate_decay(answer, z: float = 0.95, steps: int = 100) -> Feedback:
    """Check the factor by which a unit's gradient shrinks over `steps` steps.

    The unit's update gate stays at `z`, and only the ``z * h`` path carries the gradient.
    """
    expected = z**steps
    if answer is not None and _matches(answer, (1 - z) ** steps):
        return incorrect(f"that multiplies (1 - z) = {1 - z:.2f}; the path that keeps the old state is z * h, "
                         f"so each step multiplies by z")
    if answer is not None and _matches(answer, z * steps):
        return incorrect("the factors multiply, one per step: z to the power of the number of steps")
    approximation = math.exp(-(1 - z) * steps)
    if isinstance(answer, (int, float)) and math.isclose(answer, approximation, rel_tol=1e-6):
        return incorrect(f"e^(-(1 - z) T) = {answer:.4f} is only an approximation of z^T; compute the power itself")
    problem = check_number(answer, expected, rel_tol=1e-3, what="your factor")
    if problem is not None:
        return problem
    return correct(f"{z}^{steps} = {expected:.4f}: with z = 1 the gradient would pass unchanged; "
                   f"every bit below 1 compounds over the steps")
