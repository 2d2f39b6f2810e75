"""Memory of a compiled JAX function, read from XLA's buffer assignment.

`compiled_memory` lowers and compiles a jitted function for given argument
shapes and returns the sizes XLA's memory analysis reports
(``Compiled.memory_analysis()``): arguments, outputs, temporaries and
aliased bytes. These are static sizes planned at compile time, not a
measurement of the process's memory, and they leave out the runtime's own
overhead. Backends without the analysis return None.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from grulm_edu.xla_stats import Memory, memory_analysis

__all__ = ["MemoryStats", "compiled_memory", "train_step_memory"]


# One record type for XLA's buffer sizes across the package.
MemoryStats = Memory


def compiled_memory(jitted_fn, *args, **kwargs) -> MemoryStats | None:
    """Compile ``jitted_fn`` for ``args`` and return its `MemoryStats`, or None when the backend has no analysis.

    Args:
        jitted_fn: a function wrapped in `jax.jit` (it needs ``.lower``).
        *args, **kwargs: concrete arrays or `jax.ShapeDtypeStruct` pytrees;
            only shapes and dtypes matter. A shape that was already compiled
            comes from JAX's cache, so the call costs no second compile.

    `peak_memory_in_bytes` is not used: on the CPU backend of jaxlib 0.10.2
    it reported about the arguments plus the outputs, without the temporaries.
    """
    if not hasattr(jitted_fn, "lower"):
        raise TypeError(f"jitted_fn must be wrapped in jax.jit, got {type(jitted_fn).__name__}; pass jax.jit(fn)")
    return memory_analysis(jitted_fn.lower(*args, **kwargs).compile())


def train_step_memory(train_step, state, batch_size: int, seq_len: int, *, loss_weight: bool = False) -> MemoryStats | None:
    """Compile ``train_step(state, tokens (B, T + 1), mask (B, T), key[, loss_weight])`` and return its `MemoryStats`.

    Args:
        train_step: from `grulm_edu.training.make_train_step`.
        state: a `TrainState` (or its shapes) built for that step's optimizer.
        batch_size: ``B``, rows per call (the micro-batch size under accumulation).
        seq_len: ``T``, targets per row.
        loss_weight: pass a float32 scalar loss weight, as `fit` does under
            accumulation, so the compiled call matches the one training runs.
    """
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    tokens = jax.ShapeDtypeStruct((batch_size, seq_len + 1), jnp.int32)
    mask = jax.ShapeDtypeStruct((batch_size, seq_len), jnp.float32)
    key = jax.eval_shape(lambda: jax.random.key(0))
    extra = (jax.ShapeDtypeStruct((), jnp.float32),) if loss_weight else ()
    return compiled_memory(train_step, state, tokens, mask, key, *extra)
