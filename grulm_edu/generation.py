"""Autoregressive sampling from the GRU language model.

The prompt is consumed in full first (one scan over its tokens), and the
first new token is drawn from the logits after the prompt's last token. Each
drawn token is then fed back as the next input, inside a `jax.lax.scan`, so
the whole loop compiles once per (prompt length, number of new tokens, top-k).
Temperature 0 means greedy (argmax). Top-k keeps the k largest logits
(ties at the k-th value are all kept). Every step draws with its own key,
``fold_in(key, step)``, so the same key gives the same sample.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from grulm_edu.model import forward, gru_cell

__all__ = ["generate", "sample_logits"]


def sample_logits(key: jax.Array, logits: jax.Array, temperature, top_k: int | None = None) -> jax.Array:
    """Draw one id per row from `logits` ``(B, V)``; returns int32 ``(B,)``.

    ``temperature == 0`` returns the argmax. `top_k` must be a Python int (it
    fixes an array shape), `temperature` may be traced.
    """
    logits = logits.astype(jnp.float32)
    if top_k is not None:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    safe_temperature = jnp.where(temperature > 0, temperature, 1.0)
    drawn = jax.random.categorical(key, logits / safe_temperature, axis=-1).astype(jnp.int32)
    return jnp.where(temperature > 0, drawn, greedy)


@partial(jax.jit, static_argnames=("num_tokens", "top_k"))
def _generate(params, prompt, key, temperature, num_tokens, top_k):
    logits, h = forward(params, prompt)

    def step(carry, t):
        h, last_logits = carry
        token = sample_logits(jax.random.fold_in(key, t), last_logits, temperature, top_k)
        x = params["embed"][token]
        h = gru_cell(params["gru"], x, h)
        next_logits = h @ params["head"]["W"] + params["head"]["b"]
        return (h, next_logits), token

    _, tokens = jax.lax.scan(step, (h, logits[:, -1]), jnp.arange(num_tokens))
    return tokens.T  # (B, num_tokens)


def generate(
    params: dict,
    prompt_ids,
    num_tokens: int,
    key: jax.Array,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> jax.Array:
    """Continue `prompt_ids` by `num_tokens` sampled tokens.

    Args:
        params: model parameters.
        prompt_ids: ``(P,)`` or ``(B, P)`` integer ids, at least one token.
        num_tokens: how many new tokens to draw (>= 1).
        key: PRNG key; the same key gives the same tokens.
        temperature: >= 0; 0 is greedy, 1 samples the model's distribution.
        top_k: sample among the k most likely tokens, 1 <= k <= V; None keeps all.

    Returns:
        The new tokens only, int32 ``(num_tokens,)`` or ``(B, num_tokens)``.
    """
    vocab_size = params["head"]["b"].shape[0]
    prompt = jnp.asarray(prompt_ids)
    squeeze = prompt.ndim == 1
    if squeeze:
        prompt = prompt[None]
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise ValueError(f"prompt_ids must have shape (P,) or (B, P) with P >= 1, got {tuple(np.shape(prompt_ids))}")
    if not jnp.issubdtype(prompt.dtype, jnp.integer):
        raise TypeError(f"prompt_ids must be integers, got dtype {prompt.dtype}")
    if int(prompt.min()) < 0 or int(prompt.max()) >= vocab_size:
        raise ValueError(f"prompt ids must lie in [0, {vocab_size}), got values up to {int(prompt.max())}")
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
        raise ValueError(f"num_tokens must be a positive int, got {num_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature < float("inf"):
        raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= vocab_size):
        raise ValueError(f"top_k must be an int in [1, {vocab_size}] or None, got {top_k!r}")

    tokens = _generate(params, prompt.astype(jnp.int32), key, jnp.float32(temperature), num_tokens, top_k)
    return tokens[0] if squeeze else tokens
