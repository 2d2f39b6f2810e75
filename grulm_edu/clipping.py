"""Per-parameter gradient clipping, the contrast to global-norm clipping.

`clip_by_leaf_norm` rescales every leaf of a gradient pytree on its own, so
that each leaf's L2 norm is at most ``max_norm``. `optax.clip_by_global_norm`,
which training uses, rescales all leaves by one shared factor and so keeps the
gradient's direction. optax 0.2.8 has no per-leaf L2 clipping: its nearest
relative, `optax.clip_by_block_rms`, bounds each leaf's root mean square (the
norm divided by the square root of the leaf's size). Left out: clipping by
value (`optax.clip`) and adaptive clipping (`optax.adaptive_grad_clip`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

__all__ = ["clip_leaves_by_norm", "clip_by_leaf_norm"]


def _check_max_norm(max_norm) -> float:
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)):
        raise TypeError(f"max_norm must be a Python number, got {type(max_norm).__name__}")
    if not math.isfinite(max_norm) or max_norm <= 0:
        raise ValueError(f"max_norm must be a finite number > 0, got {max_norm!r}")
    return float(max_norm)


def clip_leaves_by_norm(updates, max_norm: float):
    """Scale each leaf ``g_i`` of `updates` by ``min(1, max_norm / ||g_i||)``.

    Args:
        updates: a pytree of arrays of any shapes, for example the gradient
            dict of `grulm_edu.model.init_params`.
        max_norm: the largest L2 norm any single leaf may keep, > 0.

    Returns:
        A pytree of the same structure, shapes and dtypes. A leaf whose norm
        is already at most `max_norm` (an all-zero leaf included) comes back
        unchanged, bit for bit; every other leaf has norm `max_norm`.
    """
    max_norm = _check_max_norm(max_norm)

    def clip_leaf(g):
        norm = jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32))))
        # max_norm / max(norm, max_norm) is exactly 1 when norm <= max_norm and
        # never divides by zero, because max_norm > 0.
        scale = max_norm / jnp.maximum(norm, max_norm)
        return (g * scale).astype(g.dtype)

    return jax.tree_util.tree_map(clip_leaf, updates)


def clip_by_leaf_norm(max_norm: float) -> optax.GradientTransformation:
    """Build an optax transformation that applies `clip_leaves_by_norm` to every update.

    It can replace ``optax.clip_by_global_norm(max_norm)`` in an
    ``optax.chain``, and it keeps no state.
    """
    max_norm = _check_max_norm(max_norm)

    def update_fn(updates, state, params=None):
        del params
        return clip_leaves_by_norm(updates, max_norm), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)
