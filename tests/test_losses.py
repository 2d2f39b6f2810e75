import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from grulm_edu.losses import (
    bits_per_character,
    cross_entropy,
    masked_loss_sum,
    one_hot_cross_entropy,
    perplexity,
    token_cross_entropy,
)

pytestmark = pytest.mark.usefixtures("strict_promotion")


def numpy_cross_entropy(logits, targets):
    """Reference in float64: log-sum-exp with the row maximum subtracted."""
    logits = np.asarray(logits, np.float64)
    m = logits.max(-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(logits - m).sum(-1))
    picked = np.take_along_axis(logits, np.asarray(targets)[..., None], -1)[..., 0]
    return lse - picked


def test_one_hot_and_stable_agree(key):
    logits = 3.0 * jax.random.normal(key, (4, 7, 11))
    targets = jax.random.randint(jax.random.fold_in(key, 1), (4, 7), 0, 11)
    expected = numpy_cross_entropy(logits, targets).mean()
    np.testing.assert_allclose(one_hot_cross_entropy(logits, targets), expected, rtol=1e-5)
    np.testing.assert_allclose(cross_entropy(logits, targets), expected, rtol=1e-5)


def test_stable_matches_optax(key):
    logits = 5.0 * jax.random.normal(key, (3, 9, 13))
    targets = jax.random.randint(jax.random.fold_in(key, 1), (3, 9), 0, 13)
    reference = optax.losses.softmax_cross_entropy_with_integer_labels(logits, targets)
    np.testing.assert_allclose(token_cross_entropy(logits, targets), reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale", [1e2, 1e4, 1e10, 1e30, 1e37])
def test_stable_finite_for_huge_logits(scale):
    base = np.array([[[0.1, -0.4, 0.3, 0.05]]], np.float64)
    logits = jnp.asarray(base * scale, jnp.float32)
    targets = jnp.array([[1]])
    expected = numpy_cross_entropy(np.asarray(logits), np.asarray(targets))
    got = token_cross_entropy(logits, targets)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_one_hot_form_overflows_at_large_logits():
    logits = jnp.array([[[1000.0, 0.0, -5.0]]])
    targets = jnp.array([[0]])
    assert not np.isfinite(one_hot_cross_entropy(logits, targets))
    assert float(cross_entropy(logits, targets)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("vocab", [2, 65, 1000])
def test_uniform_logits_perplexity_is_vocab(vocab):
    logits = jnp.zeros((2, 5, vocab))
    targets = jnp.zeros((2, 5), jnp.int32)
    losses = token_cross_entropy(logits, targets)
    np.testing.assert_allclose(perplexity(losses), vocab, rtol=1e-5)


@pytest.mark.parametrize("x", [0.0, 7.0, np.inf, np.nan])
def test_masked_perplexity_ignores_padding(x):
    losses = jnp.array([[1.0, 2.0, 3.0, x], [4.0, x, x, x]])
    mask = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0]])
    assert float(perplexity(losses, mask)) == pytest.approx(math.exp(10 / 4), rel=1e-6)
    assert float(perplexity(losses, mask)) == pytest.approx(12.182494, abs=1e-5)


def test_masked_perplexity_invariant_to_batch_split():
    losses = jnp.array([[1.0, 2.0, 3.0, 9.0], [4.0, 9.0, 9.0, 9.0]])
    mask = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0]])
    totals = [masked_loss_sum(losses[i : i + 1], mask[i : i + 1]) for i in range(2)]
    total = sum(float(t) for t, _ in totals)
    count = sum(float(c) for _, c in totals)
    assert math.exp(total / count) == pytest.approx(float(perplexity(losses, mask)), rel=1e-6)


def test_cross_entropy_mask_weights_by_tokens(key):
    logits = jax.random.normal(key, (2, 3, 5))
    targets = jnp.array([[0, 1, 2], [3, 4, 0]])
    mask = jnp.array([[1, 1, 0], [1, 0, 0]])
    per_token = numpy_cross_entropy(logits, targets)
    expected = (per_token * np.asarray(mask)).sum() / 3
    np.testing.assert_allclose(cross_entropy(logits, targets, mask), expected, rtol=1e-5)


def test_cross_entropy_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="targets"):
        cross_entropy(jnp.zeros((2, 3, 5)), jnp.zeros((2, 4), jnp.int32))


def test_bits_per_character():
    assert bits_per_character(math.log(2) * 10, 10) == pytest.approx(1.0)
    # A subword model: 100 nats over 50 tokens that spell 200 characters.
    assert bits_per_character(100.0, 200) == pytest.approx(100 / 200 / math.log(2))
    with pytest.raises(ValueError, match="num_chars"):
        bits_per_character(1.0, 0)
