"""Two ways to feed a training loop, and the measurements notebook 08 compares them with.

`naive_batches` is the pipeline of many first training loops. Every step it
reshuffles all window indices on the host, slices the first ``B`` windows out
of a NumPy array of ids, stacks them and copies the batch to the device.
`precomputed_batches` walks batches built once by `grulm_edu.data.make_batches`
and copied to the device once, in the order `grulm_edu.data.epoch_order` draws
for each epoch. Both use the same windows (``ids[k*T : k*T + T + 1]``); only
the per-step work differs. `random_windows` draws a fresh validation sample at
random offsets. Left out: prefetching batches in a background thread, which
hides host time behind device time instead of removing it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from grulm_edu.data import Batches, epoch_order

__all__ = [
    "host_rng",
    "batch_at",
    "naive_window_order",
    "naive_batches",
    "precomputed_batches",
    "seconds_per_batch",
    "steps_per_second",
    "random_windows",
]


def host_rng(key: jax.Array) -> np.random.Generator:
    """Return a NumPy generator seeded from the bits of `key`, so host-side draws follow one root JAX key."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())


def _check_ids(ids, seq_len: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a 1-D integer array, got {ids.dtype} {ids.shape}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
    if len(ids) < seq_len + 1:
        raise ValueError(
            f"a window needs seq_len + 1 = {seq_len + 1} ids, but the text has {len(ids)}; use a shorter seq_len"
        )
    return ids


def naive_window_order(num_windows: int, batch_size: int, key: jax.Array) -> Iterator[np.ndarray]:
    """Yield the ``(B,)`` window indices of each naive step without end: the first ``B`` of a fresh permutation.

    Every step reshuffles all `num_windows` indices, so steps are independent:
    within a step the windows are distinct, but across steps a window can
    come back before others have been drawn at all.
    """
    for name, value in (("num_windows", num_windows), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if batch_size > num_windows:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {num_windows} windows of the text; use a smaller batch"
        )
    rng = host_rng(key)
    while True:
        yield rng.permutation(num_windows)[:batch_size]  # reshuffles every window on every step


def naive_batches(ids, batch_size: int, seq_len: int, key: jax.Array) -> Iterator[jax.Array]:
    """Yield ``(B, T + 1)`` device batches without end, building each one on the host when it is requested.

    Window ``k`` is ``ids[k*T : k*T + T + 1]``, as in `grulm_edu.data.make_batches`;
    `naive_window_order` picks which ``B`` windows each step uses.
    """
    ids = _check_ids(ids, seq_len)
    for indices in naive_window_order((len(ids) - 1) // seq_len, batch_size, key):
        batch = np.stack([ids[k * seq_len : k * seq_len + seq_len + 1] for k in indices])  # (B, T + 1), on the host
        yield jnp.asarray(batch)  # a host-to-device copy on every step


@jax.jit
def batch_at(tokens: jax.Array, index) -> jax.Array:
    """Return batch `index` of ``tokens (N, B, T + 1)``, as ``(B, T + 1)``, in one jitted call.

    Indexing a device array eagerly (``tokens[index]``) dispatches a slice and
    a squeeze one by one, which costs several times as much on a CPU (notebook
    08 times both). Under `jax.jit` the index is traced, so one compiled
    function serves every index.
    """
    return tokens[index]


def precomputed_batches(batches: Batches, key: jax.Array) -> Iterator[jax.Array]:
    """Yield the ``(B, T + 1)`` batches of `batches` without end, each epoch in a fresh `epoch_order`.

    The whole ``(N, B, T + 1)`` array is copied to the device once, before the
    first batch; each step only indexes it. Epoch ``e`` uses the order drawn
    with ``jax.random.fold_in(key, e)``, as `grulm_edu.training.fit` does.
    """
    tokens = jnp.asarray(batches.tokens)  # one copy, before the first step
    epoch = 0
    while True:
        for index in epoch_order(jax.random.fold_in(key, epoch), len(batches)):
            yield batch_at(tokens, index)
        epoch += 1


def seconds_per_batch(batches: Iterator[jax.Array], num_batches: int) -> float:
    """Mean wall-clock seconds to get one batch from `batches`, until it is ready on the device."""
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
        raise ValueError(f"num_batches must be a positive int, got {num_batches!r}")
    start = time.perf_counter()
    for _ in range(num_batches):
        jax.block_until_ready(next(batches))  # the host waits for the copy or the slice
    return (time.perf_counter() - start) / num_batches


def steps_per_second(train_step: Callable, state, batches: Iterator[jax.Array], num_steps: int, key: jax.Array):
    """Run `num_steps` steps of ``train_step(state, tokens, mask, key)``; return ``(steps per second, state)``.

    The mask is all ones. Like `grulm_edu.training.fit`, the loop reads each
    step's loss back to the host before it requests the next batch, so the
    time to build a batch adds to the time of every step. Compile the step
    before calling this, or the first step's compilation is counted.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    mask = None
    start = time.perf_counter()
    for step in range(num_steps):
        tokens = next(batches)
        if mask is None:
            mask = jnp.ones((tokens.shape[0], tokens.shape[1] - 1), jnp.float32)
        state, metrics = train_step(state, tokens, mask, jax.random.fold_in(key, step))
        float(metrics["loss"])  # the host waits for the device here, as fit does
    return num_steps / (time.perf_counter() - start), state


def random_windows(ids, num_windows: int, seq_len: int, key: jax.Array) -> Batches:
    """Draw `num_windows` windows of ``T + 1`` ids at random offsets; returns one batch ``(1, num_windows, T + 1)``.

    The result is a `Batches` with a mask of ones, ready for `grulm_edu.training.evaluate`.
    """
    ids = _check_ids(ids, seq_len)
    if isinstance(num_windows, bool) or not isinstance(num_windows, int) or num_windows < 1:
        raise ValueError(f"num_windows must be a positive int, got {num_windows!r}")
    starts = host_rng(key).integers(0, len(ids) - seq_len, size=num_windows)
    tokens = ids[starts[:, None] + np.arange(seq_len + 1)].astype(np.int32)[None]  # (1, n, T + 1)
    return Batches(tokens, np.ones((1, num_windows, seq_len), np.float32), num_windows * (seq_len + 1))
