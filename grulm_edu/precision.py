"""Mixed-precision policy and dynamic loss scaling.

The policy keeps parameters and optimizer state in float32 and runs the
matmuls in a lower-precision compute dtype (bfloat16 or float16); the GRU
gates, the carried state, the softmax, the loss and every reduction stay
float32 (see `grulm_edu.model.gru_layer_scan` and `grulm_edu.losses`).

float16 has a narrow exponent range: gradients below about 6e-8 flush to
zero. Dynamic loss scaling multiplies the loss by a scale ``S`` before
differentiation and divides the gradients by ``S`` after; when a step
overflows (non-finite gradients) the step is skipped and ``S`` halves, and
after `period` finite steps in a row ``S`` doubles. bfloat16 has float32's
exponent range and needs no scaling. Left out: per-layer policies.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["PRECISIONS", "compute_dtype", "needs_loss_scaling", "adjust_loss_scale", "INITIAL_LOSS_SCALE"]

PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
INITIAL_LOSS_SCALE = 2.0**15


def compute_dtype(name: str):
    """Return the matmul dtype for a precision name: float32, bfloat16 or float16."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


def needs_loss_scaling(name: str) -> bool:
    """Only float16 needs a loss scale; bfloat16 shares float32's exponent range."""
    return compute_dtype(name) == jnp.float16


def adjust_loss_scale(scale, good_steps, finite, period: int = 200, factor: float = 2.0):
    """Return the next ``(scale, good_steps)`` after a step that was `finite` or not.

    Halve the scale after a non-finite step (never below 1); double it after
    `period` finite steps in a row.
    """
    grown = good_steps + 1 >= period
    next_scale = jnp.where(
        finite,
        jnp.where(grown, scale * factor, scale),
        jnp.maximum(scale / factor, 1.0),
    )
    next_good = jnp.where(finite & ~grown, good_steps + 1, 0)
    return next_scale.astype(jnp.float32), next_good.astype(jnp.int32)
