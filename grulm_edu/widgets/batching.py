"""Notebook 06's experiments: throughput and gradient noise against batch size.

`sequence_loss` scores one window. `jax.vmap` of it over a batch gives one
loss per window, and their mean is `grulm_edu.training.batch_loss`.
`per_example_gradients` vmaps its gradient over a pool of windows. The
gradient of any minibatch drawn from the pool is then the mean of some rows,
and `gradient_noise` measures how far such minibatch gradients land from the
gradient of the whole pool. `measure_throughput` and `throughput_sweep` time
one jitted loss-and-gradient step. Left out: the optimizer update, whose cost
does not depend on the batch size.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from grulm_edu.losses import cross_entropy
from grulm_edu.model import forward
from grulm_edu.plots import new_figure
from grulm_edu.profiling import time_fn
from grulm_edu.training import batch_loss
from grulm_edu.widgets import experiment

__all__ = [
    "BATCH_SIZES",
    "SWEEP_BATCH_SIZES",
    "sequence_loss",
    "loss_and_grad",
    "measure_throughput",
    "throughput_sweep",
    "per_example_gradients",
    "gradient_noise",
    "expected_gradient_noise",
    "batching_view",
    "batching_explorer",
]

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
# The notebook's throughput sweep: every compile costs seconds on a small CPU.
SWEEP_BATCH_SIZES = (1, 4, 16, 64)


def sequence_loss(params: dict, tokens: jax.Array) -> jax.Array:
    """Mean cross-entropy of one window ``tokens (T + 1,)``: inputs ``tokens[:-1]``, targets ``tokens[1:]``."""
    logits, _ = forward(params, tokens[None, :-1])  # a batch of one: (1, T, V)
    return cross_entropy(logits, tokens[None, 1:])


# The training step's costly part: loss and gradient of one (B, T + 1) batch.
# Jitted once at module level, so each batch size compiles once per session.
loss_and_grad = jax.jit(jax.value_and_grad(batch_loss))


def _check_windows(windows) -> np.ndarray:
    windows = np.asarray(windows)
    if windows.ndim != 2 or windows.shape[1] < 2 or not np.issubdtype(windows.dtype, np.integer):
        raise ValueError(
            f"windows must be integer ids of shape (N, T + 1) with T >= 1, got {windows.dtype} {windows.shape}"
        )
    return windows


def _check_batch_size(batch_size, limit: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= limit:
        raise ValueError(f"batch_size must be an int in [1, {limit}] (the number of windows), got {batch_size!r}")


def measure_throughput(params: dict, windows, batch_size: int, *, repeats: int = 20, number: int = 3) -> dict:
    """Time `loss_and_grad` on the first `batch_size` windows.

    Args:
        params: model parameters.
        windows: ``(N, T + 1)`` token ids; ``N >= batch_size``.
        batch_size: ``B``.
        repeats, number: rounds and calls per round, as in `grulm_edu.profiling.time_fn`.

    Returns:
        ``{"batch_size", "first_s", "median_s", "step_s", "tokens_per_s"}``:
        the first call (compilation, unless this ``B`` ran before, plus one
        step), the median and the fastest seconds per step, and targets per
        second at the fastest step, ``B * T / step_s``. The fastest round is
        the one least disturbed by other work on the machine.
    """
    windows = _check_windows(windows)
    _check_batch_size(batch_size, len(windows))
    tokens = jnp.asarray(windows[:batch_size])
    mask = jnp.ones((batch_size, windows.shape[1] - 1), jnp.float32)
    timing = time_fn(loss_and_grad, params, tokens, mask, repeats=repeats, number=number)
    targets = batch_size * (windows.shape[1] - 1)
    return {
        "batch_size": batch_size,
        "first_s": timing["first_s"],
        "median_s": timing["median_s"],
        "step_s": timing["min_s"],
        "tokens_per_s": targets / timing["min_s"],
    }


def throughput_sweep(params: dict, windows, batch_sizes, *, rounds: int = 10, number: int = 3) -> dict:
    """Time `loss_and_grad` at several batch sizes, in alternating rounds.

    Each batch size is first called once (compiling it, unless it ran
    before). Then every round times `number` calls at each batch size in
    turn, so background load spreads evenly over the sizes, and the fastest
    round of each is kept.

    Returns:
        ``{B: {"batch_size", "first_s", "step_s", "tokens_per_s"}}`` as in
        `measure_throughput`, without the median.
    """
    windows = _check_windows(windows)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1 or number < 1:
        raise ValueError(f"rounds and number must be positive ints, got {rounds!r} and {number!r}")
    T = windows.shape[1] - 1
    inputs, results = {}, {}
    for B in batch_sizes:
        _check_batch_size(B, len(windows))
        inputs[B] = (jnp.asarray(windows[:B]), jnp.ones((B, T), jnp.float32))
        start = time.perf_counter()
        jax.block_until_ready(loss_and_grad(params, *inputs[B]))  # the host waits here
        results[B] = {"batch_size": B, "first_s": time.perf_counter() - start, "step_s": math.inf}
    for _ in range(rounds):
        for B in batch_sizes:
            start = time.perf_counter()
            for _ in range(number):
                out = loss_and_grad(params, *inputs[B])
            jax.block_until_ready(out)  # and here, once per round
            results[B]["step_s"] = min(results[B]["step_s"], (time.perf_counter() - start) / number)
    for B, result in results.items():
        result["tokens_per_s"] = B * T / result["step_s"]
    return results


@jax.jit
def _flat_gradients(params: dict, tokens: jax.Array) -> jax.Array:
    grads = jax.vmap(jax.grad(sequence_loss), in_axes=(None, 0))(params, tokens)  # one pytree row per window
    return jax.vmap(lambda tree: ravel_pytree(tree)[0])(grads)  # (chunk, P)


def per_example_gradients(params: dict, windows, *, chunk_size: int = 64) -> np.ndarray:
    """Gradient of `sequence_loss` for every window, flattened: ``(N, P)`` float32.

    ``P`` is the number of parameters, in the order of
    `jax.flatten_util.ravel_pytree`. Windows are processed `chunk_size` at a
    time. The last chunk is padded with copies of the first window, whose
    rows are dropped afterwards, so every chunk reuses one compiled function.
    """
    windows = _check_windows(windows)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    n = len(windows)
    padded = np.concatenate([windows, np.repeat(windows[:1], -n % chunk_size, axis=0)])
    chunks = [
        np.asarray(_flat_gradients(params, jnp.asarray(padded[i : i + chunk_size])))  # the host waits here
        for i in range(0, len(padded), chunk_size)
    ]
    return np.concatenate(chunks)[:n]


def gradient_noise(per_example, batch_size: int, num_draws: int, key: jax.Array) -> np.ndarray:
    """Squared distances ``||g_batch - g_full||^2`` of `num_draws` minibatch gradients from the full gradient.

    Args:
        per_example: ``(N, P)`` one gradient per window (`per_example_gradients`).
        batch_size: ``B``. Each minibatch contains ``B`` distinct windows
            drawn at random, and its gradient is the mean of their rows.
        num_draws: how many minibatches to draw.
        key: PRNG key for the draws.

    Returns:
        ``(num_draws,)`` float64 squared distances from the mean of all ``N`` rows.
    """
    per_example = np.asarray(per_example)
    if per_example.ndim != 2:
        raise ValueError(f"per_example must have shape (N, P), got {per_example.shape}")
    n = len(per_example)
    _check_batch_size(batch_size, n)
    if isinstance(num_draws, bool) or not isinstance(num_draws, int) or num_draws < 1:
        raise ValueError(f"num_draws must be a positive int, got {num_draws!r}")

    # Draw B distinct windows per minibatch: the first B of a fresh permutation.
    # NumPy draws them, seeded from the key's bits: a JAX permutation would
    # compile a sort first, which costs more than all the draws together.
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    picks = rng.permuted(np.tile(np.arange(n), (num_draws, 1)), axis=1)[:, :batch_size]  # (num_draws, B)
    full = per_example.mean(axis=0, dtype=np.float64)
    distances = np.empty(num_draws)
    for i, pick in enumerate(picks):
        difference = per_example[pick].mean(axis=0, dtype=np.float64) - full
        distances[i] = difference @ difference
    return distances


def expected_gradient_noise(per_example, batch_sizes):
    """Expected ``||g_batch - g_full||^2`` for ``B`` windows drawn without replacement from the ``N`` rows.

    ``sigma^2 / B * (N - B) / (N - 1)``, where ``sigma^2`` is the mean squared
    distance of a single row from the mean row. The last factor is the
    finite-pool correction: it is 0 when the minibatch is the whole pool and
    close to 1 when ``B`` is much smaller than ``N``.

    Args:
        per_example: ``(N, P)`` one gradient per window.
        batch_sizes: one ``B`` (returns a float) or a sequence of them
            (returns an array of the same length).
    """
    per_example = np.asarray(per_example)
    if per_example.ndim != 2:
        raise ValueError(f"per_example must have shape (N, P), got {per_example.shape}")
    n = len(per_example)
    sizes = np.atleast_1d(batch_sizes)
    for size in sizes.tolist():
        _check_batch_size(size, n)
    centered = per_example - per_example.mean(axis=0, dtype=np.float64)
    sigma2 = float(np.mean(np.sum(centered**2, axis=1)))
    expected = np.zeros(len(sizes)) if n == 1 else sigma2 / sizes * (n - sizes) / (n - 1)
    return float(expected[0]) if np.ndim(batch_sizes) == 0 else expected


def batching_view(
    batch_size: int,
    *,
    params: dict,
    windows,
    per_example,
    key: jax.Array,
    reference_speed: dict | None = None,
    reference_noise: dict | None = None,
    num_draws: int = 200,
):
    """Measure throughput and gradient noise at one batch size and plot them against earlier sweeps.

    Args:
        batch_size: ``B``.
        params: model parameters.
        windows: ``(N, T + 1)`` token ids, the pool the gradients come from.
        per_example: ``(N, P)`` per-window gradients of `params` on `windows`.
        key: PRNG key for the minibatch draws (folded with ``B``).
        reference_speed: optional ``{B: tokens per second}`` from an earlier sweep.
        reference_noise: optional ``{B: mean squared distance}`` from an earlier sweep.
        num_draws: minibatches drawn to estimate the noise.

    Returns:
        ``(figure, summary)``.
    """
    throughput = measure_throughput(params, windows, batch_size)
    distances = gradient_noise(per_example, batch_size, num_draws, jax.random.fold_in(key, batch_size))
    expected = expected_gradient_noise(per_example, batch_size)
    n = len(per_example)

    fig, (ax_speed, ax_noise) = new_figure(ncols=2, width=11.0, height=3.6)
    if reference_speed:
        sizes = sorted(reference_speed)
        ax_speed.plot(sizes, [reference_speed[b] for b in sizes], "o-", color="C0", label="earlier sweep")
    if reference_noise:
        sizes = sorted(reference_noise)
        ax_noise.plot(sizes, [reference_noise[b] for b in sizes], "o", color="C0", label="earlier sweep")
    ax_speed.plot(
        [batch_size], [throughput["tokens_per_s"]], "*", color="C3", markersize=14, label=f"B = {batch_size}, this run"
    )
    curve = np.arange(1, min(max(BATCH_SIZES[-1], batch_size), n) + 1)  # the expectation needs B <= N
    ax_noise.plot(curve, expected_gradient_noise(per_example, curve), "-", color="C2",
                  label=r"expected: $\sigma^2 / B$, finite-pool corrected")
    ax_noise.errorbar([batch_size], [distances.mean()], yerr=[distances.std() / math.sqrt(num_draws)], fmt="*",
                      color="C3", markersize=14, label=f"B = {batch_size}, {num_draws} minibatches")
    ax_speed.set(xlabel="batch size B", ylabel="tokens per second", title="Throughput of loss + gradient")
    ax_speed.set_ylim(bottom=0)
    ax_noise.set(yscale="log", xlabel="batch size B", ylabel=r"mean $\|g_B - \bar g\|^2$",
                 title=f"Gradient noise (pool of {n} windows)")
    for ax in (ax_speed, ax_noise):
        ax.set_xscale("log", base=2)
        ax.set_xticks(BATCH_SIZES, [str(b) for b in BATCH_SIZES])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    summary = (
        f"B = {batch_size}: {throughput['tokens_per_s']:,.0f} tokens/s ({throughput['step_s'] * 1e3:.2f} ms per step, "
        f"first call {throughput['first_s']:.2f} s) | gradient noise {distances.mean():.4g} "
        f"(mean of {num_draws} minibatches; expected {expected:.4g})"
    )
    return fig, summary


def batching_explorer(
    params: dict,
    windows,
    per_example,
    key: jax.Array,
    *,
    reference_speed: dict | None = None,
    reference_noise: dict | None = None,
    batch_size: int = 16,
):
    """Build a batch-size slider and a Run button around `batching_view`.

    Args:
        params, windows, per_example, key, reference_speed, reference_noise: as for `batching_view`.
        batch_size: the slider's starting value, one of `BATCH_SIZES`.
    """
    import ipywidgets as widgets

    if batch_size not in BATCH_SIZES:
        raise ValueError(f"batch_size must be one of {BATCH_SIZES}, got {batch_size!r}")
    def view(batch_size):
        return batching_view(
            batch_size,
            params=params,
            windows=windows,
            per_example=per_example,
            key=key,
            reference_speed=reference_speed,
            reference_noise=reference_noise,
        )

    controls = {"batch_size": widgets.SelectionSlider(options=BATCH_SIZES, value=batch_size, description="B")}
    return experiment(
        view,
        controls,
        run_button=True,
        description="Pick a batch size and press Run (a new B compiles the step first, a few seconds)",
    )
