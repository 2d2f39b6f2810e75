"""The GRU layer with a hand-written backward pass (`jax.custom_vjp`): the training path.

Automatic differentiation of `jax.lax.scan` computes every weight gradient
inside the reverse scan: T small ``(E, B) @ (B, 3H)`` and ``(H, B) @ (B, 3H)``
matmuls, one pair per time step. This layer keeps only what must be
sequential inside the reverse scan (the state gradient ``dh`` through
``W_hh``). After the reverse scan it computes ``dW_ih``, ``dW_hh``, their
biases and the input gradient as a few large ``(T*B)``-row matmuls, which CPUs
run far more efficiently.

The forward pass computes each step's input projection inside the loop
(``x_t W_ih``), like `grulm_edu.scan_lessons.gru_layer_scan_unhoisted`:
at embedding sizes near 64 that is faster on a CPU than one hoisted matmul
over all steps (`bench/bench_fused_gru.py` measures both).

Same convention, values and dtype policy as `grulm_edu.model.gru_layer_scan`
(PyTorch's gate order r, z, n; matmuls in the compute dtype, gates and state
in float32). `grulm_edu.model.forward` runs it whenever `use_scan` is True.
The gradient formulas are derived in `_recurrence_bwd`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["gru_layer_fused", "gru_layer_fused_time_major"]


def _forward_scan(W_ih, b_ih, W_hh, b_hh, xs, h0):
    """Run the recurrence over time-major ``xs (T, B, E)``.

    Returns the float32 states ``(T, B, H)`` and the gate values the backward
    pass needs. The weights and `xs` are in the compute dtype, so the matmuls
    run in it. The gates and the carried state are float32, as in
    `gru_layer_scan`.
    """
    H = W_hh.shape[0]
    cd = W_hh.dtype

    def step(h, x):
        gi = (x @ W_ih + b_ih).astype(jnp.float32)
        gh = (h.astype(cd) @ W_hh + b_hh).astype(jnp.float32)
        r = jax.nn.sigmoid(gi[:, :H] + gh[:, :H])
        z = jax.nn.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        gh_n = gh[:, 2 * H :]
        n = jnp.tanh(gi[:, 2 * H :] + r * gh_n)
        h_new = (1.0 - z) * n + z * h
        return h_new, (h_new, r, z, n, gh_n)

    _, saved = jax.lax.scan(step, h0, xs)
    return saved


@jax.custom_vjp
def _recurrence(W_ih, b_ih, W_hh, b_hh, xs, h0):
    states = _forward_scan(W_ih, b_ih, W_hh, b_hh, xs, h0)[0]
    return states.astype(W_hh.dtype)


def _recurrence_fwd(W_ih, b_ih, W_hh, b_hh, xs, h0):
    states, r, z, n, gh_n = _forward_scan(W_ih, b_ih, W_hh, b_hh, xs, h0)
    # The state before each step: h0, then every state but the last.
    h_prev = jnp.concatenate([h0[None], states[:-1]], axis=0)
    return states.astype(W_hh.dtype), (W_ih, W_hh, xs, h_prev, r, z, n, gh_n)


def _recurrence_bwd(residuals, d_states):
    W_ih, W_hh, xs, h_prev, r, z, n, gh_n = residuals
    cd = W_hh.dtype

    # Reverse scan: only the state gradient needs to be sequential.
    #   h' = (1 - z) n + z h           ->  dn = dh' (1 - z),  dz = dh' (h - n),  dh += dh' z
    #   n = tanh(a_n), a_n = i_n + r gh_n  ->  da_n = dn (1 - n^2),  dr = da_n gh_n,  dgh_n = da_n r
    #   r = sigmoid(a_r), z = sigmoid(a_z) ->  da_r = dr r (1 - r),  da_z = dz z (1 - z)
    #   a_r, a_z, gh_n are linear in h W_hh, so dh += [da_r, da_z, dgh_n] W_hh^T
    def step(dh_next, inputs):
        d_out, h, r, z, n, gh_n = inputs
        dh = d_out.astype(jnp.float32) + dh_next
        dn = dh * (1.0 - z)
        dz = dh * (h - n)
        da_n = dn * (1.0 - n * n)
        da_r = da_n * gh_n * r * (1.0 - r)
        da_z = dz * z * (1.0 - z)
        dgi = jnp.concatenate([da_r, da_z, da_n], axis=-1)  # (B, 3H): gradient of x_t W_ih + b_ih
        dgh = jnp.concatenate([da_r, da_z, da_n * r], axis=-1)  # (B, 3H): gradient of h W_hh + b_hh
        dh_prev = dh * z + (dgh.astype(cd) @ W_hh.T).astype(jnp.float32)
        return dh_prev, (dgi, dgh)

    inputs = (d_states, h_prev, r, z, n, gh_n)
    dh0, (d_gi, d_gh) = jax.lax.scan(step, jnp.zeros_like(h_prev[0]), inputs, reverse=True)

    # Large matmuls over all T*B rows instead of T small ones. Bias sums stay float32 until the end.
    T, B, H = h_prev.shape
    E = xs.shape[-1]
    d_gi = d_gi.reshape(T * B, 3 * H)
    d_gh = d_gh.reshape(T * B, 3 * H)
    d_gi_cd, d_gh_cd = d_gi.astype(cd), d_gh.astype(cd)
    dW_ih = xs.reshape(T * B, E).T @ d_gi_cd
    dW_hh = h_prev.reshape(T * B, H).astype(cd).T @ d_gh_cd
    d_xs = (d_gi_cd @ W_ih.T).reshape(T, B, E)
    db_ih = d_gi.sum(axis=0).astype(cd)
    db_hh = d_gh.sum(axis=0).astype(cd)
    return dW_ih, db_ih, dW_hh, db_hh, d_xs, dh0


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def gru_layer_fused_time_major(gru: dict, xs: jax.Array, h0: jax.Array, *, compute_dtype=None) -> jax.Array:
    """Run the layer on time-major inputs: ``xs (T, B, E)`` and ``h0 (B, H)`` to states ``(T, B, H)``.

    With `compute_dtype` (for example ``jnp.bfloat16``) the matmuls of both
    passes run in that dtype while the gates, the carried state and the bias
    gradients stay float32; the states come back in `compute_dtype`, as from
    `grulm_edu.model.gru_layer_scan`.
    """
    E, H = gru["W_ih"].shape[0], gru["W_hh"].shape[0]
    if xs.ndim != 3 or xs.shape[-1] != E:
        raise ValueError(f"xs must have shape (T, B, E={E}), got {xs.shape}")
    if h0.shape != (xs.shape[1], H):
        raise ValueError(f"h0 must have shape (B={xs.shape[1]}, H={H}), got {h0.shape}")
    cd = compute_dtype or jnp.float32
    weights = [gru[name].astype(cd) for name in ("W_ih", "b_ih", "W_hh", "b_hh")]
    return _recurrence(*weights, xs.astype(cd), h0.astype(jnp.float32))


def gru_layer_fused(gru: dict, xs: jax.Array, h0: jax.Array, *, compute_dtype=None) -> jax.Array:
    """Drop-in for `grulm_edu.model.gru_layer_scan`: ``xs (B, T, E)`` to states ``(B, T, H)``."""
    if xs.ndim != 3:
        raise ValueError(f"xs must have shape (B, T, E), got {xs.shape}")
    states = gru_layer_fused_time_major(gru, jnp.swapaxes(xs, 0, 1), h0, compute_dtype=compute_dtype)
    return jnp.swapaxes(states, 0, 1)
