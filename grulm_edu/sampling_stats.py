"""Sampling distributions, and measures of how varied generated text is.

`sampling_distribution` gives the probabilities that `generation.sample_logits`
draws from. `character_entropy` (bits) and `distinct_ngram_ratio` (distinct-n)
depend on the text's length: the entropy estimate grows with it and the ratio
falls, so only texts of equal length compare. Left out: model-based measures.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["sampling_distribution", "character_entropy", "distinct_ngram_ratio"]


def sampling_distribution(logits, temperature: float, top_k: int | None = None) -> np.ndarray:
    """Return the probabilities of each id under `temperature` and `top_k`, in float64.

    Args:
        logits: ``(V,)`` or ``(B, V)`` scores, for example the last time step
            of `grulm_edu.model.forward`.
        temperature: >= 0; 0 puts all mass on the argmax (the first one on ties).
        top_k: keep the k largest logits, 1 <= k <= V, and every logit equal
            to the k-th; None keeps all.

    Returns:
        ``(V,)`` or ``(B, V)`` probabilities that sum to 1 along the last axis.
    """
    logits = np.asarray(logits, np.float64)
    if logits.ndim not in (1, 2) or logits.shape[-1] < 1:
        raise ValueError(f"logits must have shape (V,) or (B, V), got {logits.shape}")
    vocab_size = logits.shape[-1]
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature < math.inf:
        raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= vocab_size):
        raise ValueError(f"top_k must be an int in [1, {vocab_size}] or None, got {top_k!r}")

    if top_k is not None:
        kth = np.sort(logits, axis=-1)[..., -top_k][..., None]
        logits = np.where(logits < kth, -np.inf, logits)
    if temperature == 0:
        return np.eye(vocab_size)[np.argmax(logits, axis=-1)]
    scaled = logits / temperature
    # Subtract the row maximum so that exp never overflows at small temperatures.
    weights = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def character_entropy(ids) -> float:
    """Entropy, in bits, of the frequencies of the ids in `ids` (any shape, all entries pooled).

    A text that uses k characters equally often has entropy ``log2(k)``; a
    text of one repeated character has 0.
    """
    ids = np.asarray(ids)
    if ids.size == 0:
        raise ValueError("ids is empty; the entropy of no characters is undefined")
    _, counts = np.unique(ids, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def distinct_ngram_ratio(ids, n: int) -> float:
    """Number of distinct n-grams in `ids` divided by its number of n-grams, ``L - n + 1``.

    Args:
        ids: ``(L,)`` ids (or characters) of one text, with ``L >= n``.
        n: the n-gram length, >= 1.

    Returns:
        A ratio in ``(0, 1]``: 1 when no n-gram repeats, near 0 for a text
        that loops over a short phrase.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    ids = np.asarray(ids)
    if ids.ndim != 1 or len(ids) < n:
        raise ValueError(f"ids must be one text of shape (L,) with L >= n = {n}, got shape {ids.shape}")
    windows = np.lib.stride_tricks.sliding_window_view(ids, n)  # (L - n + 1, n)
    return len(np.unique(windows, axis=0)) / len(windows)
