"""Ways to run the GRU over time, and the tools notebook 07 compares them with.

`make_loss` builds the mean next-token loss of a batch, with the GRU layer run
in one of three ways. A Python loop (`grulm_edu.model.gru_layer_loop`) runs
eagerly, or unrolled under `jax.jit`. `jax.lax.scan` runs with the input
projection hoisted out of the loop (`grulm_edu.model.gru_layer_scan`). For
comparison only, a scan can keep the whole cell, input projection included,
inside each step (`gru_layer_scan_unhoisted`). `count_equations` measures a jaxpr's size, and
`compile_and_time` separates compile time from step time, and `fastest_times`
compares step times of several functions measured in alternation. Shapes follow the
package: ``B`` batch, ``T`` time, ``E`` embedding, ``H`` hidden, ``V`` vocabulary.
Left out: dropout and mixed precision, which do not change the comparison.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

from grulm_edu.losses import cross_entropy
from grulm_edu.model import embed, gru_cell, gru_layer_loop, gru_layer_scan
from grulm_edu.profiling import time_fn

__all__ = [
    "LAYER_KINDS",
    "gru_layer_scan_unhoisted",
    "make_loss",
    "count_equations",
    "compile_and_time",
    "fastest_times",
]

LAYER_KINDS = ("loop", "scan", "scan_unhoisted")


def gru_layer_scan_unhoisted(gru: dict, xs: jax.Array, h0: jax.Array, *, unroll: int = 1) -> jax.Array:
    """Run `grulm_edu.model.gru_cell` inside `jax.lax.scan`; returns all states ``(B, T, H)``.

    Unlike `grulm_edu.model.gru_layer_scan`, every step computes its own input
    projection ``x_t W_ih + b_ih``: T small ``(B, E) @ (E, 3H)`` matmuls
    instead of one ``(B*T, E) @ (E, 3H)`` before the loop. The outputs are the
    same; only the speed and the memory differ.

    Args:
        gru: the ``params["gru"]`` dict (``W_ih (E, 3H)``, ``W_hh (H, 3H)``, ``b_ih``, ``b_hh``).
        xs: ``(B, T, E)`` embedded inputs.
        h0: ``(B, H)`` initial state.
        unroll: time steps per iteration of the compiled loop, passed to `jax.lax.scan`.
    """
    E = gru["W_ih"].shape[0]
    H = gru["W_hh"].shape[0]
    if xs.ndim != 3 or xs.shape[-1] != E:
        raise ValueError(f"xs must have shape (B, T, E={E}), got {xs.shape}")
    if h0.shape != (xs.shape[0], H):
        raise ValueError(f"h0 must have shape (B={xs.shape[0]}, H={H}), got {h0.shape}")

    def step(h, x):
        h_new = gru_cell(gru, x, h)
        return h_new, h_new

    # lax.scan walks the leading axis, so go time-major once here.
    _, states = jax.lax.scan(step, h0, jnp.swapaxes(xs, 0, 1), unroll=unroll)
    return jnp.swapaxes(states, 0, 1)


def make_loss(kind: str, *, unroll: int = 1) -> Callable:
    """Build ``loss(params, tokens) -> scalar``: the mean cross-entropy of ``tokens (B, T + 1)``.

    Inputs are ``tokens[:, :-1]`` and targets ``tokens[:, 1:]``, as in
    `grulm_edu.training.batch_loss`; only the way the GRU layer walks time differs.

    Args:
        kind: ``"loop"`` (`gru_layer_loop`), ``"scan"`` (`gru_layer_scan`,
            input projection hoisted) or ``"scan_unhoisted"`` (`gru_layer_scan_unhoisted`).
        unroll: time steps per iteration of the compiled scan loop; must be 1
            for ``"loop"``, which has no loop left after tracing.
    """
    if kind not in LAYER_KINDS:
        raise ValueError(f"kind must be one of {LAYER_KINDS}, got {kind!r}")
    if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
        raise ValueError(f"unroll must be a positive int, got {unroll!r}")
    if kind == "loop" and unroll != 1:
        raise ValueError(f"unroll applies to the scans only; use kind='scan' for unroll={unroll}")

    def loss(params: dict, tokens: jax.Array) -> jax.Array:
        if tokens.ndim != 2 or tokens.shape[1] < 2:
            raise ValueError(f"tokens must have shape (B, T + 1) with T >= 1, got {tokens.shape}")
        gru = params["gru"]
        xs = embed(params["embed"], tokens[:, :-1])  # (B, T, E)
        h0 = jnp.zeros((tokens.shape[0], gru["W_hh"].shape[0]), jnp.float32)
        if kind == "loop":
            states = gru_layer_loop(gru, xs, h0)
        elif kind == "scan":
            states = gru_layer_scan(gru, xs, h0, unroll=unroll)
        else:
            states = gru_layer_scan_unhoisted(gru, xs, h0, unroll=unroll)
        logits = states @ params["head"]["W"] + params["head"]["b"]  # (B, T, V)
        return cross_entropy(logits, tokens[:, 1:])

    loss.__name__ = f"{kind}_loss" if unroll == 1 else f"{kind}_unroll{unroll}_loss"
    return loss


def count_equations(fn: Callable, *args) -> int:
    """Number of top-level equations in the jaxpr of ``fn(*args)``.

    A scan counts as one equation however many steps it runs; its body is a
    sub-jaxpr that is not counted here. Tracing only: nothing is compiled.
    """
    return len(jax.make_jaxpr(fn)(*args).jaxpr.eqns)


def compile_and_time(fn: Callable, *args, repeats: int = 5, number: int = 3) -> dict:
    """Compile ``jax.jit(fn)`` for `args` from scratch, then time the compiled function.

    A fresh wrapper is jitted on every call, so JAX's in-memory caches cannot
    return an executable compiled earlier and the compile time is real.

    Returns:
        ``{"compile_s", "step_s", "min_step_s", "compiled"}``. The first is
        the seconds spent in tracing, lowering and XLA compilation. The next
        two are the median and the fastest seconds per call of the compiled
        function (`grulm_edu.profiling.time_fn`). The last is the compiled
        function itself.
    """
    start = time.perf_counter()
    compiled = jax.jit(lambda *a: fn(*a)).lower(*args).compile()
    compile_s = time.perf_counter() - start
    timing = time_fn(compiled, *args, repeats=repeats, number=number)
    return {"compile_s": compile_s, "step_s": timing["median_s"], "min_step_s": timing["min_s"], "compiled": compiled}


def fastest_times(calls: dict, *, rounds: int = 10, number: int = 5) -> dict:
    """Time several functions in alternating rounds; return each one's fastest seconds per call.

    Alternating spreads background load evenly over the candidates, and the
    fastest round of each is the one least disturbed by other processes, so
    this compares functions more fairly than timing them one after another.

    Args:
        calls: label -> ``(fn, args)``; each ``fn(*args)`` should already be
            compiled (call it once first), or its first round includes compilation.
        rounds: rounds over all functions.
        number: calls per function per round.
    """
    if rounds < 1 or number < 1:
        raise ValueError(f"rounds and number must be >= 1, got {rounds} and {number}")
    best = {label: float("inf") for label in calls}
    for _ in range(rounds):
        for label, (fn, args) in calls.items():
            start = time.perf_counter()
            for _ in range(number):
                result = fn(*args)
            jax.block_until_ready(result)  # the host waits for the device here
            best[label] = min(best[label], (time.perf_counter() - start) / number)
    return best
