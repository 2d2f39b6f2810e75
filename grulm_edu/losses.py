"""Cross-entropy, perplexity and bits per character for next-token prediction.

Two forms of cross-entropy live here. `one_hot_cross_entropy` is the textbook
form (one-hot targets, softmax, log, mean) and overflows for large logits.
`token_cross_entropy` works on logits through log-softmax, which subtracts the
row maximum first, and is what training uses. Perplexity is ``exp`` of the
token-weighted mean loss over a whole split, never a mean of per-batch
perplexities. Shapes: logits ``(B, T, V)``, targets and mask ``(B, T)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = [
    "one_hot_cross_entropy",
    "token_cross_entropy",
    "cross_entropy",
    "masked_loss_sum",
    "perplexity",
    "bits_per_character",
]


def one_hot_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean cross-entropy in the textbook form: ``-mean(sum(one_hot * log(softmax)))``.

    Kept for teaching: ``exp`` of a large logit overflows to inf, and the loss
    becomes nan. Use `cross_entropy` for training.
    """
    num_classes = logits.shape[-1]
    one_hot = jax.nn.one_hot(targets, num_classes, dtype=logits.dtype)
    exp = jnp.exp(logits)
    probs = exp / jnp.sum(exp, axis=-1, keepdims=True)
    return -jnp.mean(jnp.sum(one_hot * jnp.log(probs), axis=-1))


def token_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-token loss ``logsumexp(logits) - logits[target]`` in nats.

    Computed in float32 whatever the logits' dtype, and finite for any finite
    float32 logits whose spread (max minus target logit) is itself finite.

    Args:
        logits: ``(..., V)`` unnormalised scores.
        targets: ``(...)`` integer ids in ``[0, V)``.

    Returns:
        ``(...)`` float32 losses.
    """
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32), axis=-1)
    return -picked[..., 0]


def masked_loss_sum(losses: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Return ``(sum of losses where mask is 1, number of such tokens)``.

    Masked positions contribute exactly 0, even when their loss is inf or nan,
    because `jnp.where` selects rather than multiplies.
    """
    if mask is None:
        return jnp.sum(losses), jnp.asarray(losses.size, jnp.float32)
    if mask.shape != losses.shape:
        raise ValueError(f"mask shape {mask.shape} must equal the loss shape {losses.shape}")
    keep = mask.astype(bool)
    total = jnp.sum(jnp.where(keep, losses, 0.0))
    return total, jnp.sum(keep).astype(jnp.float32)


def _check_labels(targets, vocab_size: int) -> None:
    # Out-of-range labels would silently index past the logits, so check them
    # whenever their values are known (not while tracing under jax.jit).
    if isinstance(targets, jax.core.Tracer):
        return
    if not jnp.issubdtype(jnp.asarray(targets).dtype, jnp.integer):
        raise TypeError(f"targets must be integer ids, got dtype {jnp.asarray(targets).dtype}")
    low, high = int(jnp.min(targets)), int(jnp.max(targets))
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"targets must lie in [0, {vocab_size}) (the vocabulary size V), got values from {low} to {high}; "
            f"encode the labels with the same tokenizer as the model"
        )


def cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Token-weighted mean cross-entropy in nats, over tokens where `mask` is 1.

    Args:
        logits: ``(B, T, V)``.
        targets: ``(B, T)`` integer ids.
        mask: optional ``(B, T)`` of 0/1; padding positions get 0.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits {logits.shape} and targets {targets.shape} disagree: logits must "
            f"be targets.shape + (V,)"
        )
    _check_labels(targets, logits.shape[-1])
    total, count = masked_loss_sum(token_cross_entropy(logits, targets), mask)
    # An all-masked batch gives 0 / 0; report 0 instead of nan.
    return total / jnp.maximum(count, 1.0)


def perplexity(losses: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """``exp`` of the token-weighted mean of per-token `losses` (nats) under `mask`."""
    total, count = masked_loss_sum(losses, mask)
    return jnp.exp(total / count)


def bits_per_character(total_nats: float, num_chars: int) -> float:
    """Convert a summed loss in nats over a text of `num_chars` characters to bits per character.

    With a character tokenizer this is the mean loss divided by ``ln 2``. With
    a subword tokenizer it divides by characters, not tokens, so that models
    with different tokenizers can be compared.
    """
    if num_chars <= 0:
        raise ValueError(f"num_chars must be positive, got {num_chars}")
    return float(total_nats) / (num_chars * math.log(2.0))
