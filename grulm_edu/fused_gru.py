"""The GRU recurrence with a hand-written backward pass (`jax.custom_vjp`).

Automatic differentiation of `jax.lax.scan` accumulates the recurrent weight
gradient ``dW_hh`` inside the reverse scan: T small ``(H, B) @ (B, 3H)``
matmuls, one per step. This version keeps only what must be sequential inside
the reverse scan (the state gradient ``dh`` through ``W_hh``) and computes
``dW_hh`` and ``db_hh`` after it as one ``(H, T*B) @ (T*B, 3H)`` matmul, which
CPUs run far more efficiently. Same convention and results as
`grulm_edu.model.gru_layer_scan` (tests check values and gradients); float32
only. The gradient formulas are derived in `_recurrence_bwd`.

NOTE: not used by `forward` or `fit` yet; `bench/bench_fused_gru.py` measures it
against the autodiff scan.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["gru_recurrence", "gru_layer_fused"]


def _forward_scan(W_hh, b_hh, gi_all, h0):
    H = W_hh.shape[0]

    def step(h, gi):
        gh = h @ W_hh + b_hh
        r = jax.nn.sigmoid(gi[:, :H] + gh[:, :H])
        z = jax.nn.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        gh_n = gh[:, 2 * H :]
        n = jnp.tanh(gi[:, 2 * H :] + r * gh_n)
        h_new = (1.0 - z) * n + z * h
        return h_new, (h_new, h, r, z, n, gh_n)

    _, saved = jax.lax.scan(step, h0, gi_all)
    return saved


@jax.custom_vjp
def gru_recurrence(W_hh: jax.Array, b_hh: jax.Array, gi_all: jax.Array, h0: jax.Array) -> jax.Array:
    """Compute all states ``(T, B, H)`` from time-major input projections ``gi_all (T, B, 3H)`` and ``h0 (B, H)``."""
    return _forward_scan(W_hh, b_hh, gi_all, h0)[0]


def _recurrence_fwd(W_hh, b_hh, gi_all, h0):
    states, h_prev, r, z, n, gh_n = _forward_scan(W_hh, b_hh, gi_all, h0)
    return states, (W_hh, h_prev, r, z, n, gh_n)


def _recurrence_bwd(residuals, d_states):
    W_hh, h_prev, r, z, n, gh_n = residuals

    # Reverse scan: only the state gradient needs to be sequential.
    #   h' = (1 - z) n + z h           ->  dn = dh' (1 - z),  dz = dh' (h - n),  dh += dh' z
    #   n = tanh(a_n), a_n = i_n + r gh_n  ->  da_n = dn (1 - n^2),  dr = da_n gh_n,  dgh_n = da_n r
    #   r = sigmoid(a_r), z = sigmoid(a_z) ->  da_r = dr r (1 - r),  da_z = dz z (1 - z)
    #   a_r, a_z, gh_n are linear in h W_hh, so dh += [da_r, da_z, dgh_n] W_hh^T
    def step(dh_next, inputs):
        d_out, h, r, z, n, gh_n = inputs
        dh = d_out + dh_next
        dn = dh * (1.0 - z)
        dz = dh * (h - n)
        da_n = dn * (1.0 - n * n)
        da_r = da_n * gh_n * r * (1.0 - r)
        da_z = dz * z * (1.0 - z)
        dgi = jnp.concatenate([da_r, da_z, da_n], axis=-1)  # (B, 3H)
        dgh = jnp.concatenate([da_r, da_z, da_n * r], axis=-1)  # (B, 3H)
        dh_prev = dh * z + dgh @ W_hh.T
        return dh_prev, (dgi, dgh)

    dh0, (d_gi_all, d_gh_all) = jax.lax.scan(step, jnp.zeros_like(h_prev[0]), (d_states, h_prev, r, z, n, gh_n), reverse=True)

    # One large matmul for the recurrent weights instead of T small ones.
    T, B, H = h_prev.shape
    dW_hh = h_prev.reshape(T * B, H).T @ d_gh_all.reshape(T * B, 3 * H)
    db_hh = d_gh_all.sum(axis=(0, 1))
    return dW_hh, db_hh, d_gi_all, dh0


gru_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def gru_layer_fused(gru: dict, xs: jax.Array, h0: jax.Array) -> jax.Array:
    """Drop-in for `grulm_edu.model.gru_layer_scan` (float32): ``xs (B, T, E)`` to states ``(B, T, H)``."""
    gi_all = jnp.swapaxes(xs @ gru["W_ih"] + gru["b_ih"], 0, 1)  # (T, B, 3H), one matmul for all steps
    states = gru_recurrence(gru["W_hh"], gru["b_hh"], gi_all, h0)
    return jnp.swapaxes(states, 0, 1)
