"""Recurrent cells beside the library GRU, and the measurements notebook 03 makes with them.

`gru_cell_2014` is the GRU with the reset gate applied before the recurrent
matmul, ``n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)``: Keras calls it
``reset_after=False`` and its documentation attributes it to arXiv 1406.1078v3
(Cho et al., 2014). It takes the same parameter dict as `grulm_edu.model.gru_cell`.
`rnn_cell` is the vanilla tanh RNN of PyTorch ``nn.RNN``. Left out: LSTMs,
stacked and bidirectional layers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from grulm_edu.model import embed, gru_step

__all__ = [
    "gru_cell_2014",
    "gru_layer_2014",
    "init_rnn_params",
    "rnn_cell",
    "rnn_layer",
    "gate_activations",
    "input_gradient_norms",
]


def _check_sequence(name: str, xs: jax.Array, h0: jax.Array, E: int, H: int) -> None:
    if xs.ndim != 3 or xs.shape[-1] != E:
        raise ValueError(f"{name}: xs must have shape (B, T, E={E}), got {xs.shape}")
    if h0.shape != (xs.shape[0], H):
        raise ValueError(f"{name}: h0 must have shape (B={xs.shape[0]}, H={H}), got {h0.shape}")


def gru_cell_2014(gru: dict, x: jax.Array, h: jax.Array) -> jax.Array:
    """Compute one step of the 2014 GRU, where the reset gate scales ``h`` before the product with ``W_hn``.

    Args:
        gru: the library's GRU parameters, ``W_ih (E, 3H)``, ``W_hh (H, 3H)``,
            ``b_ih (3H,)``, ``b_hh (3H,)``, gate order r, z, n.
        x: ``(B, E)`` input.
        h: ``(B, H)`` previous state.

    Returns:
        ``(B, H)`` new state ``(1 - z) * n + z * h``.
    """
    H = h.shape[-1]
    i_r, i_z, i_n = jnp.split(x @ gru["W_ih"] + gru["b_ih"], 3, axis=-1)
    b_hr, b_hz, b_hn = jnp.split(gru["b_hh"], 3)

    # r and z need h before n can be computed: two dependent matmuls per step.
    h_r, h_z = jnp.split(h @ gru["W_hh"][:, : 2 * H] + jnp.concatenate([b_hr, b_hz]), 2, axis=-1)
    r = jax.nn.sigmoid(i_r + h_r)
    z = jax.nn.sigmoid(i_z + h_z)
    n = jnp.tanh(i_n + (r * h) @ gru["W_hh"][:, 2 * H :] + b_hn)
    return (1.0 - z) * n + z * h


def gru_layer_2014(gru: dict, xs: jax.Array, h0: jax.Array) -> jax.Array:
    """Run `gru_cell_2014` over ``xs (B, T, E)`` from ``h0 (B, H)`` with `jax.lax.scan`; returns ``(B, T, H)``."""
    E, H3 = gru["W_ih"].shape
    _check_sequence("gru_layer_2014", xs, h0, E, H3 // 3)
    H = H3 // 3
    # The input projection does not depend on r, so it still leaves the scan as one matmul.
    gi_all = jnp.swapaxes(xs @ gru["W_ih"] + gru["b_ih"], 0, 1)  # (T, B, 3H), time-major for the scan
    W_h_rz, W_hn = gru["W_hh"][:, : 2 * H], gru["W_hh"][:, 2 * H :]
    b_h_rz, b_hn = gru["b_hh"][: 2 * H], gru["b_hh"][2 * H :]

    def step(h, gi):
        i_r, i_z, i_n = jnp.split(gi, 3, axis=-1)
        h_r, h_z = jnp.split(h @ W_h_rz + b_h_rz, 2, axis=-1)
        r = jax.nn.sigmoid(i_r + h_r)
        z = jax.nn.sigmoid(i_z + h_z)
        n = jnp.tanh(i_n + (r * h) @ W_hn + b_hn)
        h_new = (1.0 - z) * n + z * h
        return h_new, h_new

    _, states = jax.lax.scan(step, h0, gi_all)
    return jnp.swapaxes(states, 0, 1)


def init_rnn_params(key: jax.Array, embed_size: int, hidden_size: int) -> dict:
    """Initialise a vanilla RNN as PyTorch ``nn.RNN`` does: every entry ~ U(-1/sqrt(H), 1/sqrt(H)).

    Returns ``{"W_ih": (E, H), "W_hh": (H, H), "b_ih": (H,), "b_hh": (H,)}``,
    the same bound that `grulm_edu.model.init_params` uses for the GRU.
    """
    for name, value in (("embed_size", embed_size), ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    E, H = embed_size, hidden_size
    bound = 1.0 / jnp.sqrt(H)
    k_ih, k_hh, k_bih, k_bhh = jax.random.split(key, 4)

    def uniform(k, shape):
        return jax.random.uniform(k, shape, jnp.float32, -bound, bound)

    return {"W_ih": uniform(k_ih, (E, H)), "W_hh": uniform(k_hh, (H, H)),
            "b_ih": uniform(k_bih, (H,)), "b_hh": uniform(k_bhh, (H,))}


def rnn_cell(rnn: dict, x: jax.Array, h: jax.Array) -> jax.Array:
    """Compute one vanilla RNN step, ``h' = tanh(x W_ih + b_ih + h W_hh + b_hh)``.

    Takes ``x (B, E)`` and ``h (B, H)`` and returns ``(B, H)``.
    """
    return jnp.tanh(x @ rnn["W_ih"] + rnn["b_ih"] + h @ rnn["W_hh"] + rnn["b_hh"])


def rnn_layer(rnn: dict, xs: jax.Array, h0: jax.Array) -> jax.Array:
    """Run `rnn_cell` over ``xs (B, T, E)`` from ``h0 (B, H)`` with `jax.lax.scan`; returns ``(B, T, H)``."""
    E, H = rnn["W_ih"].shape
    _check_sequence("rnn_layer", xs, h0, E, H)
    gi_all = jnp.swapaxes(xs @ rnn["W_ih"] + rnn["b_ih"], 0, 1)  # (T, B, H), time-major for the scan

    def step(h, gi):
        h_new = jnp.tanh(gi + h @ rnn["W_hh"] + rnn["b_hh"])
        return h_new, h_new

    _, states = jax.lax.scan(step, h0, gi_all)
    return jnp.swapaxes(states, 0, 1)


@jax.jit
def gate_activations(params: dict, ids: jax.Array) -> dict[str, jax.Array]:
    """Run the library GRU over ``ids (B, T)`` from a zero state and keep every gate.

    Args:
        params: a full model's parameters (`grulm_edu.model.init_params` layout).
        ids: ``(B, T)`` integer token ids.

    Returns:
        ``{"r", "z", "n", "h"}``, each ``(B, T, H)``: reset gate, update gate,
        candidate state and new state at every step. The states equal
        `grulm_edu.model.gru_layer_scan`'s.
    """
    if ids.ndim != 2 or not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"ids must be integers of shape (B, T), got dtype {ids.dtype} and shape {ids.shape}")
    gru = params["gru"]
    H = gru["W_hh"].shape[0]
    xs = embed(params["embed"], ids)  # (B, T, E)
    gi_all = jnp.swapaxes(xs @ gru["W_ih"] + gru["b_ih"], 0, 1)  # (T, B, 3H), time-major for the scan

    def step(h, gi):
        h_new, (r, z, n) = gru_step(gi, h @ gru["W_hh"] + gru["b_hh"], h)
        return h_new, {"r": r, "z": z, "n": n, "h": h_new}

    h0 = jnp.zeros((ids.shape[0], H), jnp.float32)
    _, gates = jax.lax.scan(step, h0, gi_all)
    return {name: jnp.swapaxes(value, 0, 1) for name, value in gates.items()}


@functools.partial(jax.jit, static_argnums=0)
def input_gradient_norms(layer: Callable, params: dict, xs: jax.Array, h0: jax.Array) -> jax.Array:
    """Measure how strongly the last state depends on each input: ``||d h_T / d x_t||`` for every ``t``.

    Args:
        layer: ``layer(params, xs, h0)`` returning all states ``(B, T, H)``,
            such as `grulm_edu.model.gru_layer_scan` or `rnn_layer`. It is a
            static argument of `jax.jit`: pass the same function object again
            to reuse the compiled code.
        params: the layer's parameters.
        xs: ``(B, T, E)`` inputs.
        h0: ``(B, H)`` initial state.

    Returns:
        ``(B, T)`` Frobenius norms of the ``(H, E)`` Jacobian of the last state
        with respect to the input at step ``t``, one row per sequence. Entry
        ``t`` is the gradient across a time lag of ``T - 1 - t`` steps.
    """
    if xs.ndim != 3:
        raise ValueError(f"xs must have shape (B, T, E), got {xs.shape}")

    def last_state(x, h):  # one sequence: x (T, E), h (H,) -> (H,)
        return layer(params, x[None], h[None])[0, -1]

    def norms_one(args):  # one sequence -> (T,)
        # jacrev builds the (H, T, E) Jacobian with one backward pass per output unit.
        jacobian = jax.jacrev(last_state)(*args)
        # subtle: entries below about 1e-19 square to zero in float32, so divide by
        # the largest entry first. Long lags reach such entries within a few dozen steps.
        scale = jnp.max(jnp.abs(jacobian), axis=(0, 2))  # (T,)
        safe_scale = jnp.where(scale > 0, scale, 1.0)
        return safe_scale * jnp.sqrt(jnp.sum((jacobian / safe_scale[None, :, None]) ** 2, axis=(0, 2)))

    # lax.map runs the sequences one after another: vmap would hold B Jacobians
    # and their residuals at once, and measured slower than linear in B here.
    return jax.lax.map(norms_one, (xs, h0))
