"""Gradient accumulation: token-count normalisation and the update-counting schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from grulm_edu.chars import CharTokenizer
from grulm_edu.data import make_batches
from grulm_edu.model import ModelConfig, init_params
from grulm_edu.training import (
    TrainConfig,
    fit,
    init_state,
    make_optimizer,
    make_train_step,
    micro_batch_loss_weight,
)


def test_unequal_micro_batches_use_token_weights():
    """Per-token loss 0.5 (w - t)^2 at w = 0; micro-batches with targets [4] and [0, 0, 0].

    Full batch of 4 tokens: loss (8 + 0 + 0 + 0) / 4 = 2.0, gradient mean(w - t) = -4 / 4 = -1.0.
    The mean of the two micro-batch means would give loss (8 + 0) / 2 = 4.0 and gradient -2.0.
    """
    micro_batches = [jnp.array([4.0]), jnp.array([0.0, 0.0, 0.0])]
    weight = micro_batch_loss_weight([len(t) for t in micro_batches])

    def summed_loss(w, targets):
        return jnp.sum(0.5 * (w - targets) ** 2)

    accumulate = optax.MultiSteps(optax.sgd(1.0), every_k_schedule=2)
    w = jnp.array(0.0)
    state = accumulate.init(w)
    reported = 0.0
    for targets in micro_batches:
        loss, grad = jax.value_and_grad(lambda w: summed_loss(w, targets) * weight)(w)
        reported += float(loss) / 2  # MultiSteps averages, so average the losses the same way
        updates, state = accumulate.update(grad, state, w)
        w = optax.apply_updates(w, updates)
    # SGD with rate 1 moves w by minus the accumulated gradient.
    assert float(w) == pytest.approx(1.0)
    assert reported == pytest.approx(2.0)
    with pytest.raises(ValueError, match="token_counts"):
        micro_batch_loss_weight([])


def test_schedule_counts_updates_not_micro_batches():
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=2, decay_steps=10, end_value=0.1)
    accumulate = optax.MultiSteps(optax.sgd(schedule), every_k_schedule=4)
    w = jnp.array(0.0)
    state = accumulate.init(w)
    applied_rates = []
    for micro in range(12):
        updates, state = accumulate.update(jnp.array(-1.0), state, w)  # gradient -1: the update equals the rate
        if micro % 4 == 3:
            applied_rates.append(float(updates))
        else:
            assert float(updates) == 0.0
    np.testing.assert_allclose(applied_rates, [0.0, 0.5, 1.0], atol=1e-7)


@pytest.fixture(scope="module")
def batches():
    text = "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 20
    tokenizer = CharTokenizer.from_text(text)
    ids = tokenizer.encode(text)
    return make_batches(ids, batch_size=8, seq_len=12), tokenizer.vocab_size


def test_k_micro_batches_equal_one_big_batch(batches, key):
    train, vocab = batches
    params = init_params(key, ModelConfig(vocab, embed_size=6, hidden_size=10))
    big = TrainConfig(batch_size=8, seq_len=12, num_steps=10, warmup_steps=1)
    small = TrainConfig(batch_size=2, seq_len=12, num_steps=10, warmup_steps=1, accumulation_steps=4)

    big_opt = make_optimizer(big)
    big_state, big_metrics = make_train_step(big, big_opt)(
        init_state(params, big_opt), jnp.asarray(train.tokens[0]), jnp.asarray(train.mask[0]), key
    )

    small_opt = make_optimizer(small)
    step = make_train_step(small, small_opt)
    state = init_state(params, small_opt)
    weight = jnp.float32(micro_batch_loss_weight([train.mask[0][i : i + 2].sum() for i in range(0, 8, 2)]))
    for i in range(0, 8, 2):
        state, metrics = step(state, jnp.asarray(train.tokens[0][i : i + 2]), jnp.asarray(train.mask[0][i : i + 2]), key, weight)
        assert bool(metrics["applied"]) == (i == 6)

    for a, b in zip(jax.tree_util.tree_leaves(big_state.params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(metrics["grad_norm"], big_metrics["grad_norm"], rtol=1e-5)
    assert int(state.updates) == 1
    assert int(state.step) == 4


def test_fit_with_accumulation_logs_updates(batches, key):
    train, vocab = batches
    params = init_params(key, ModelConfig(vocab, embed_size=6, hidden_size=10))
    config = TrainConfig(batch_size=8, seq_len=12, num_steps=6, warmup_steps=2, accumulation_steps=3, log_interval=3)
    state, history = fit(params, train, None, config)
    assert int(state.updates) == 6
    assert int(state.step) == 18
    assert history.step.tolist() == [1, 2, 3, 4, 5, 6]
    expected_lr = [float(optax.warmup_cosine_decay_schedule(0.0, 3e-3, 2, 6, 3e-4)(u)) for u in range(6)]
    np.testing.assert_allclose(history.lr, expected_lr, rtol=1e-5)
