"""Checkers for notebook 02: the cost of a one-hot matmul, cosine similarity, the gradient of a lookup."""

from __future__ import annotations

import math

import numpy as np

from grulm_edu.exercises import Feedback, check_number, correct, incorrect, not_answered

__all__ = ["check_one_hot_flops", "check_cosine_similarity", "check_embedding_gradient"]


def check_one_hot_flops(answer, num_tokens: int, vocab_size: int, embed_size: int) -> Feedback:
    """Check a count of the FLOPs of ``one_hot (N, V) @ table (V, E)``.

    Each multiply and each add is one operation.
    """
    N, V, E = num_tokens, vocab_size, embed_size
    expected = 2 * N * V * E
    exact = N * E * (2 * V - 1)  # V products and V - 1 additions per output entry
    if answer is not None and isinstance(answer, (int, float)) and math.isclose(answer, exact, rel_tol=1e-9):
        return correct(f"N E (2V - 1) = {exact:,}: V multiplies and V - 1 adds per output entry; "
                       f"XLA's cost analysis rounds this to 2 N V E = {expected:,}")
    problem = check_number(answer, expected, rel_tol=1e-6, what="your count")
    if problem is None:
        return correct(f"2 N V E = {expected:,}: one multiply and one add per entry of the one-hot matrix and "
                       f"column of the table, although only {N * E:,} of the products are not multiplications by 0")
    if isinstance(answer, (int, float)):
        mistakes = {
            N * V * E: "that counts a multiply-add as one operation; count the multiply and the add separately",
            2 * V * E: "that is the cost for one token; the batch has N of them",
            N * E: "that is the number of values the lookup copies; the question asks for the matmul",
            N * V: "that is the size of the one-hot matrix; each of its entries meets E columns of the table",
        }
        for value, message in mistakes.items():
            if math.isclose(answer, value, rel_tol=1e-6):
                return incorrect(message)
    return problem


def check_cosine_similarity(fn) -> Feedback:
    """Check `fn(vectors)`, which must return the ``(N, N)`` cosine similarity of the rows of ``vectors (N, D)``."""
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")
    vectors = np.array([[3.0, 4.0, 0.0], [0.0, 2.0, 0.0], [-1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    norms = np.linalg.norm(vectors, axis=1)
    expected = vectors @ vectors.T / np.outer(norms, norms)
    try:
        value = np.asarray(fn(vectors), dtype=np.float64)
    except Exception as error:  # the learner's code may raise anything
        return incorrect(f"your function raised {type(error).__name__}: {error}")
    if value.shape != expected.shape:
        return incorrect(f"expected one similarity per pair of rows, shape {expected.shape}, got shape {value.shape}")
    if np.allclose(value, expected, atol=1e-6):
        return correct("each row divided by its length, then all dot products: "
                       "1 on the diagonal, and 0 for orthogonal rows")
    if np.allclose(value, vectors @ vectors.T, atol=1e-6):
        return incorrect("these are plain dot products; divide each row by its length first, "
                         "so longer rows do not score higher")
    column_unit = vectors / np.linalg.norm(vectors, axis=0)
    if np.allclose(value, column_unit @ column_unit.T, atol=1e-6):
        return incorrect("you divided by the length of each column (axis=0); "
                         "divide each row by its own length (axis=1, keepdims=True)")
    dots = vectors @ vectors.T
    if np.allclose(value, dots / norms[:, None], atol=1e-6) or np.allclose(value, dots / norms[None, :], atol=1e-6):
        return incorrect("only one side of each dot product is divided by its length; divide by both lengths")
    if not np.allclose(np.diag(value), 1.0, atol=1e-6):
        return incorrect("every row should have similarity 1 with itself; check the diagonal of your result")
    return incorrect(f"for rows {vectors.tolist()} the first row of your result is {np.round(value[0], 4).tolist()}, "
                     f"expected {np.round(expected[0], 4).tolist()}")


def check_embedding_gradient(fn) -> Feedback:
    """Check `fn(ids, upstream, vocab_size)`, which must return a ``(V, E)`` gradient.

    The gradient is that of ``sum(upstream * table[ids])`` with respect to ``table``.
    """
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")
    ids = np.array([3, 1, 3, 0, 3])
    upstream = np.arange(10.0).reshape(5, 2) + 1.0  # (N, E)
    V = 5
    expected = np.eye(V)[ids].T @ upstream  # one_hot(ids).T @ upstream
    try:
        value = np.asarray(fn(ids, upstream, V), dtype=np.float64)
    except Exception as error:  # the learner's code may raise anything
        return incorrect(f"your function raised {type(error).__name__}: {error}")
    if value.shape != expected.shape:
        return incorrect(f"the gradient has the table's shape (V, E) = {expected.shape}, got {value.shape}")
    if np.allclose(value, expected):
        return correct("one_hot(ids).T @ upstream: every occurrence of an id adds its upstream row, and ids "
                       "that did not occur get zero (np.add.at does the same without the one-hot matrix)")
    assigned = np.zeros_like(expected)
    assigned[ids] = upstream
    if np.allclose(value, assigned):
        return incorrect("id 3 occurs three times but only its last row counts: `grad[ids] = upstream` overwrites "
                         "repeats; add them instead, with np.add.at(grad, ids, upstream)")
    counts = np.bincount(ids, minlength=V)[:, None]
    if np.allclose(value, expected / np.maximum(counts, 1)):
        return incorrect("you averaged the rows of repeated ids; "
                         "the loss sums over positions, so their gradients add up")
    return incorrect(f"for ids {ids.tolist()} row 3 of the gradient should be {expected[3].tolist()}, "
                     f"the sum of the three upstream rows at positions 0, 2 and 4; got {value[3].tolist()}")
