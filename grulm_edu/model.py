"""A GRU language model: embedding, one GRU layer, a linear head.

The GRU follows the convention of PyTorch ``nn.GRU``, cuDNN, Flax ``GRUCell``
and Keras ``reset_after=True``, gate order r, z, n::

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

The three gates' weights are stored side by side: ``W_ih`` is ``(E, 3H)`` and
``W_hh`` is ``(H, 3H)``, PyTorch's ``weight_ih_l0`` and ``weight_hh_l0``
transposed. Shapes: ``B`` batch, ``T`` time, ``V`` vocabulary, ``E`` embedding,
``H`` hidden. Left out: stacked layers and bidirectional GRUs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from grulm_edu.fused_gru import gru_layer_fused

__all__ = [
    "ModelConfig",
    "init_params",
    "embed",
    "gru_step",
    "gru_cell",
    "gru_layer_loop",
    "gru_layer_scan",
    "dropout",
    "forward",
    "count_params",
]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes of the model: vocabulary ``V``, embedding ``E`` and hidden ``H``."""

    vocab_size: int
    embed_size: int = 64
    hidden_size: int = 256

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{field.name} must be an int, got {value!r}")
            if value < 1:
                raise ValueError(f"{field.name} must be at least 1, got {value}")
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, got {self.vocab_size}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def init_params(key: jax.Array, config: ModelConfig) -> dict:
    """Initialise parameters as PyTorch does for these layers.

    Embedding rows ~ N(0, 1); GRU and head weights ~ U(-1/sqrt(H), 1/sqrt(H));
    GRU biases likewise; head bias 0.
    """
    V, E, H = config.vocab_size, config.embed_size, config.hidden_size
    k_embed, k_ih, k_hh, k_bih, k_bhh, k_head = jax.random.split(key, 6)
    bound = 1.0 / jnp.sqrt(H)

    def uniform(k, shape):
        return jax.random.uniform(k, shape, jnp.float32, -bound, bound)

    return {
        "embed": jax.random.normal(k_embed, (V, E), jnp.float32),
        "gru": {
            "W_ih": uniform(k_ih, (E, 3 * H)),
            "W_hh": uniform(k_hh, (H, 3 * H)),
            "b_ih": uniform(k_bih, (3 * H,)),
            "b_hh": uniform(k_bhh, (3 * H,)),
        },
        "head": {"W": uniform(k_head, (H, V)), "b": jnp.zeros((V,), jnp.float32)},
    }


def count_params(params) -> int:
    return sum(x.size for x in jax.tree_util.tree_leaves(params))


def embed(embedding: jax.Array, ids: jax.Array) -> jax.Array:
    """Look up rows of `embedding` ``(V, E)`` for `ids` ``(B, T)``; returns ``(B, T, E)``.

    Equal to ``one_hot(ids, V) @ embedding`` without building the one-hot matrix.
    """
    return jnp.take(embedding, ids, axis=0)


def gru_step(gi: jax.Array, gh: jax.Array, h: jax.Array):
    """Combine projected inputs and hidden state into the new state.

    Args:
        gi: ``(B, 3H)`` input projection ``x W_ih + b_ih``, gates r, z, n.
        gh: ``(B, 3H)`` hidden projection ``h W_hh + b_hh``.
        h: ``(B, H)`` previous hidden state.

    Returns:
        ``(h_new, (r, z, n))``, each ``(B, H)``.
    """
    i_r, i_z, i_n = jnp.split(gi, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
    r = jax.nn.sigmoid(i_r + h_r)
    z = jax.nn.sigmoid(i_z + h_z)
    n = jnp.tanh(i_n + r * h_n)
    h_new = (1.0 - z) * n + z * h
    return h_new, (r, z, n)


def gru_cell(gru: dict, x: jax.Array, h: jax.Array) -> jax.Array:
    """One GRU step: `x` ``(B, E)`` and `h` ``(B, H)`` to the new ``(B, H)`` state."""
    gi = x @ gru["W_ih"] + gru["b_ih"]
    gh = h @ gru["W_hh"] + gru["b_hh"]
    return gru_step(gi, gh, h)[0]


def _check_layer_inputs(gru: dict, xs: jax.Array, h0: jax.Array):
    E, H3 = gru["W_ih"].shape
    if xs.ndim != 3 or xs.shape[-1] != E:
        raise ValueError(f"xs must have shape (B, T, E={E}), got {xs.shape}")
    if h0.shape != (xs.shape[0], H3 // 3):
        raise ValueError(f"h0 must have shape (B={xs.shape[0]}, H={H3 // 3}), got {h0.shape}")


def gru_layer_loop(gru: dict, xs: jax.Array, h0: jax.Array) -> jax.Array:
    """Run the GRU over time with a Python loop; returns all states ``(B, T, H)``.

    The reference for `gru_layer_scan`. Under `jax.jit` the loop is unrolled,
    so compile time grows with ``T``.
    """
    _check_layer_inputs(gru, xs, h0)
    h = h0
    states = []
    for t in range(xs.shape[1]):
        h = gru_cell(gru, xs[:, t], h)
        states.append(h)
    return jnp.stack(states, axis=1)


def gru_layer_scan(
    gru: dict, xs: jax.Array, h0: jax.Array, *, unroll: int = 1, compute_dtype=None
) -> jax.Array:
    """Run the GRU over time with `jax.lax.scan`; returns all states ``(B, T, H)``.

    The input projection of every time step is one ``(B*T, E) @ (E, 3H)``
    matmul before the scan, so only the recurrent matmul stays inside it.

    With `compute_dtype` (for example ``jnp.bfloat16``) both matmuls run in
    that dtype, while the gates and the carried state stay float32. The
    returned states are in `compute_dtype`, ready for the next matmul.
    """
    _check_layer_inputs(gru, xs, h0)
    cd = compute_dtype or jnp.float32
    W_ih, W_hh = gru["W_ih"].astype(cd), gru["W_hh"].astype(cd)
    b_ih, b_hh = gru["b_ih"].astype(cd), gru["b_hh"].astype(cd)
    gi_all = xs.astype(cd) @ W_ih + b_ih  # (B, T, 3H)
    # lax.scan walks the leading axis, so go time-major once here.
    gi_all = jnp.swapaxes(gi_all, 0, 1)  # (T, B, 3H)

    def step(h, gi):
        gh = h.astype(cd) @ W_hh + b_hh
        h_new, _ = gru_step(gi.astype(jnp.float32), gh.astype(jnp.float32), h)
        return h_new, h_new.astype(cd)

    _, states = jax.lax.scan(step, h0.astype(jnp.float32), gi_all, unroll=unroll)
    return jnp.swapaxes(states, 0, 1)


def dropout(key: jax.Array | None, x: jax.Array, rate: float) -> jax.Array:
    """Inverted dropout: zero each entry with probability `rate`, scale the rest by ``1/(1-rate)``.

    A `rate` of 0 returns `x` unchanged and needs no key.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    if rate == 0.0:
        return x
    if key is None:
        raise ValueError(f"dropout rate {rate} needs a PRNG key; pass key=jax.random.key(...)")
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def forward(
    params: dict,
    ids: jax.Array,
    h0: jax.Array | None = None,
    *,
    use_scan: bool = True,
    dropout_rate: float = 0.0,
    key: jax.Array | None = None,
    compute_dtype=None,
):
    """Compute next-token logits for `ids` ``(B, T)``.

    Args:
        params: from `init_params`.
        ids: ``(B, T)`` integer token ids.
        h0: optional ``(B, H)`` initial state; zeros when omitted.
        use_scan: a `lax.scan` layer when True, else the Python loop. The
            scan layer is `grulm_edu.fused_gru.gru_layer_fused`: the values
            of `gru_layer_scan` with a hand-written, faster backward pass.
        dropout_rate: dropout on the embeddings and on the GRU outputs (training only).
        key: PRNG key for dropout; required when `dropout_rate` > 0.
        compute_dtype: dtype of the matmuls (None means float32); see
            `gru_layer_scan`. The logits come back in this dtype; the loss
            casts them to float32.

    Returns:
        ``(logits (B, T, V), h_last (B, H))``.
    """
    if ids.ndim != 2:
        raise ValueError(f"ids must have shape (B, T), got {ids.shape}")
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
    B = ids.shape[0]
    H = params["gru"]["W_hh"].shape[0]
    if h0 is None:
        h0 = jnp.zeros((B, H), jnp.float32)
    keys = jax.random.split(key, 2) if key is not None else (None, None)

    x = dropout(keys[0], embed(params["embed"], ids), dropout_rate)
    if use_scan:
        # The values of gru_layer_scan, with a faster backward pass.
        states = gru_layer_fused(params["gru"], x, h0, compute_dtype=compute_dtype)
    elif compute_dtype not in (None, jnp.float32):
        raise ValueError("the Python-loop forward runs in float32 only; use use_scan=True for other dtypes")
    else:
        states = gru_layer_loop(params["gru"], x, h0)
    out = dropout(keys[1], states, dropout_rate)
    cd = compute_dtype or jnp.float32
    logits = out @ params["head"]["W"].astype(cd) + params["head"]["b"].astype(cd)
    return logits, states[:, -1].astype(jnp.float32)
